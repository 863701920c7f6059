/**
 * Inbound formats: picks the format of a POST /v1/alerts body, normalises it into alert.v1 and
 * hands it to the same IngestService.submit a native alert goes through (same validation,
 * routing, police-only refusal, idempotency, batched write). Errors come back pointing into the
 * document as sent. CAP Update and Cancel go through the lifecycle's update and cancel.
 */
import { ConfigError } from '../config/load.js';
import type { SourceConfig } from '../config/types.js';
import { ProblemError } from '../errors.js';
import type { IngestResult } from '../ingest/ingest.js';
import { validateAlert } from '../ingest/validate.js';
import type { Principal } from '../plugins/app/auth.js';
import { cancelAlert, updateAlert } from '../routes/lifecycle.js';
import type { Runtime } from '../runtime.js';
import { getAlertRecord, type AlertRecord, type AlertView } from '../store/records.js';
import { normaliseCap, parseCap } from './cap.js';
import { categoryTables } from './categories.js';
import { assertNotTooDeep, mapErrors, normaliseWhitespace, remapProblem, type InboundFormat, type Normalised } from './common.js';
import { isPoliceOnly } from '../routing/route.js';
import { isEido, normaliseEido } from './eido.js';
import { mappingProblems, normaliseVendor } from './vendor.js';

export type BodyFormat = 'fenliu' | InboundFormat;

export const EIDO_MEDIA_TYPE = 'application/emergency.eido+json';
/** Only CAP's own media type: generic XML stays a 415, since fenliu reads no other XML. */
export const CAP_MEDIA_TYPES = ['application/cap+xml'];
export const VENDOR_MEDIA_TYPE = /^application\/vnd\.([a-z0-9][a-z0-9._-]{0,63})\+json$/;

export type InboundOutcome =
  | { kind: 'ingest'; format: InboundFormat; result: IngestResult; /** A CAP Update whose original fenliu does not hold: taken as a new alert. */ updateOf?: string[] }
  /** A CAP Cancel naming nothing this source sent (or nothing still kept): there is nothing to withdraw. */
  | { kind: 'unmatched-cancel'; format: InboundFormat; references: string[] }
  | { kind: 'followed'; format: InboundFormat; action: 'update' | 'cancel'; alertId: string; view: AlertView | undefined };

/** The media type of a Content-Type header, lower-cased, without parameters. */
export function mediaType(header: string | string[] | undefined): string {
  const h = Array.isArray(header) ? header[0] : header;
  return (h ?? '').split(';')[0].trim().toLowerCase();
}

export class InboundService {
  private readonly sources: Map<string, SourceConfig>;
  readonly maxDepth: number;

  constructor(private readonly rt: Runtime) {
    this.sources = new Map(rt.cfg.sources.map((s) => [s.id, s]));
    this.maxDepth = rt.cfg.inbound?.maxDepth ?? 64;
    // A broken mapping stops the boot with the offending key, like any config error.
    const problems = rt.cfg.sources.flatMap((s, i) => {
      const m = s.inbound?.mapping;
      if (m !== undefined) return mappingProblems(m, `/sources/${i}/inbound/mapping`);
      if (s.inbound?.format === 'vendor') return [{ path: `/sources/${i}/inbound/mapping`, message: 'is required when format is vendor' }];
      return [];
    });
    if (problems.length) throw new ConfigError(`config: ${problems.map((p) => `${p.path} ${p.message}`).join('; ')}`, problems);
  }

  /** Which format a body is, from its media type, the source's settings and (for JSON) its content. */
  detect(principal: Principal, media: string, body: unknown): BodyFormat {
    if (CAP_MEDIA_TYPES.includes(media)) return 'cap';
    if (media === EIDO_MEDIA_TYPE) return 'eido';
    if (VENDOR_MEDIA_TYPE.test(media)) return 'vendor';
    const own = principal.ownerId ? this.sources.get(principal.ownerId) : undefined;
    const fmt = own?.inbound?.format ?? 'fenliu';
    if (fmt === 'vendor' && principal.kind === 'source') return 'vendor';
    if (fmt === 'eido' || isEido(body)) return 'eido';
    return 'fenliu';
  }

  /** The JSON nesting guard for every alert body (native ones too): a clear 400, never a stack overflow. */
  checkDepth(body: unknown): void {
    if (typeof body !== 'string') assertNotTooDeep(body, this.maxDepth);
  }

  async submit(principal: Principal, format: InboundFormat, media: string, body: unknown, idempotencyHeader: string | undefined): Promise<InboundOutcome> {
    const source = this.sourceFor(principal, format, media);
    const n = this.normalise(format, source, body);
    const police = typeof n.alert.category === 'string' ? this.rt.cfg.policeOnly.find((p) => isPoliceOnly(p, n.alert.category)) : undefined;
    if (n.issues.length && police && n.action.kind !== 'cancel') {
      // The police keep it whatever else is wrong with it: say that, not what the gateway would need to divert it.
      // Audited and counted like any police-only refusal (statistics: refusedPoliceOnly).
      const a = n.alert;
      this.rt.ingest.refuse(principal, 'FENLIU_ERR_POLICE_ONLY', { category: a.category, sourceAlertId: a.source?.alertId, source: source.id, region: a.location?.regionCode });
      throw new ProblemError('FENLIU_ERR_POLICE_ONLY', `Category ${n.alert.category} matches the police-only rule ${police}: the police keep this alert (非必要不分流)`, {
        errors: [{ pointer: n.pointers['/category'] ?? n.root, message: `is police-only (${police})`, field: '/category' }],
        extra: { format },
      });
    }
    if (n.issues.length) {
      // Report everything at once: the normaliser's findings plus what the schema says about the rest.
      const v = validateAlert(structuredClone(n.alert));
      const covered = new Set(n.issues.map((i) => i.field).filter(Boolean));
      const schemaErrors = v.ok ? [] : mapErrors(v.errors.filter((e) => !covered.has(e.pointer)), n);
      const errors = [...n.issues, ...schemaErrors];
      this.rt.ingest.refuse(principal, 'FENLIU_ERR_VALIDATION', { format, pointers: errors.map((e) => e.pointer) });
      throw new ProblemError('FENLIU_ERR_VALIDATION', `${errors.length} problem(s) in the ${label(format)} document`, { errors, extra: { format } });
    }
    const action = n.action;
    const rec = action.kind === 'create' ? undefined : await this.referenced(source.id, action.references);
    if (action.kind !== 'create' && !rec && action.kind === 'cancel') return { kind: 'unmatched-cancel', format, references: action.references };
    if (action.kind === 'create' || !rec) {
      // An Update is a complete message (CAP 1.2 §3.2.1 msgType): when fenliu does not hold what it
      // updates (sent before fenliu, or past retention), it is a new alert that records its references.
      let result: IngestResult;
      try {
        result = await this.rt.ingest.submit(principal, n.alert, idempotencyHeader);
      } catch (err) {
        throw remapProblem(err, n);
      }
      await this.remember(source.id, n, result.record.id);
      return { kind: 'ingest', format, result, ...(action.kind === 'update' ? { updateOf: action.references } : {}) };
    }
    let view: AlertView | undefined;
    if (action.kind === 'cancel') view = await cancelAlert(this.rt, principal, rec, action.reason ?? 'cancelled by the 110 system');
    else {
      // An update keeps the identity of the alert it updates; its own identifier stays in extensions.
      const alert = { ...n.alert, source: { ...n.alert.source, alertId: rec.alert.source.alertId } };
      const pointers = { ...n.pointers, '/source/alertId': action.pointer, '/source': action.pointer };
      try {
        view = await updateAlert(this.rt, principal, rec, alert);
      } catch (err) {
        throw remapProblem(err, { ...n, pointers });
      }
    }
    await this.remember(source.id, n, rec.id);
    return { kind: 'followed', format, action: action.kind, alertId: rec.id, view };
  }

  /** Normalises without submitting: for tests, `fenliu send`, and integrators checking a mapping. */
  normalise(format: InboundFormat, source: SourceConfig, body: unknown): Normalised {
    const n = this.normaliseRaw(format, source, body);
    normaliseWhitespace(n.alert);
    return n;
  }

  private normaliseRaw(format: InboundFormat, source: SourceConfig, body: unknown): Normalised {
    const tables = categoryTables(this.rt.cfg, source);
    const regionCode = source.inbound?.regionCode;
    switch (format) {
      case 'eido':
        return normaliseEido(body, { sourceId: source.id, table: tables.eido, regionCode, maxDepth: this.maxDepth });
      case 'cap': {
        if (typeof body !== 'string') throw new ProblemError('FENLIU_ERR_BAD_REQUEST', 'A CAP body is XML text');
        const doc = parseCap(body, this.maxDepth);
        return normaliseCap(doc, { sourceId: source.id, table: tables.cap, regionCode, geocodeNames: source.inbound?.geocodeNames, maxDepth: this.maxDepth });
      }
      case 'vendor':
        return normaliseVendor(body, source.inbound!.mapping!, source.id);
    }
  }

  /** Only a source key may send other formats: the source comes from the key, never from the document. */
  private sourceFor(principal: Principal, format: InboundFormat, media: string): SourceConfig {
    const source = principal.kind === 'source' && principal.ownerId ? this.sources.get(principal.ownerId) : undefined;
    if (!source) {
      throw new ProblemError('FENLIU_ERR_NOT_A_SOURCE', `${label(format)} documents are accepted from source keys only (the source is the key's)`);
    }
    if (format === 'vendor') {
      const named = VENDOR_MEDIA_TYPE.exec(media)?.[1];
      if (named && named !== source.id) {
        throw new ProblemError('FENLIU_ERR_UNSUPPORTED_MEDIA_TYPE', `${media} names source ${named}, but this key belongs to ${source.id}; send application/vnd.${source.id}+json`);
      }
      if (!source.inbound?.mapping) {
        throw new ProblemError('FENLIU_ERR_UNSUPPORTED_MEDIA_TYPE', `Source ${source.id} has no vendor mapping (sources[].inbound.mapping); send fenliu alert JSON, EIDO or CAP`);
      }
    }
    return source;
  }

  private refKey(sourceId: string, messageId: string): string {
    return `${this.rt.cfg.redis.prefix}:inbound:ref:${sourceId}:${messageId}`;
  }

  /** Indexes the sender's message id (and alert id) so a later CAP Update/Cancel can name it. */
  private async remember(sourceId: string, n: Normalised, alertId: string): Promise<void> {
    const ids = new Set([n.messageId, n.action.kind === 'create' ? (n.alert.source?.alertId as string | undefined) : undefined].filter((x): x is string => !!x));
    if (!ids.size) return;
    // Same lifetime as a case could reasonably be followed up: 30 days. Keys of several slots
    // (Redis Cluster): sent together, not as one MULTI.
    await Promise.all([...ids].map((id) => this.rt.redis.set(this.refKey(sourceId, id), alertId, 'EX', 30 * 86_400, 'NX')));
  }

  /** The alert a CAP `references` list names: the latest reference that resolves wins. */
  private async referenced(sourceId: string, identifiers: string[]): Promise<AlertRecord | undefined> {
    for (const id of [...identifiers].reverse()) {
      let alertId = await this.rt.redis.get(this.refKey(sourceId, id));
      // Alerts sent as fenliu JSON without an Idempotency-Key are found by their alertId.
      if (!alertId) alertId = (await this.rt.redis.get(this.rt.keys.idem(sourceId, id)))?.split(' ')[0] ?? null;
      if (!alertId) continue;
      const rec = await getAlertRecord(this.rt.redis, this.rt.keys, alertId);
      if (rec && rec.sourceId === sourceId) return rec;
    }
    return undefined;
  }
}

function label(format: InboundFormat): string {
  return format === 'eido' ? 'EIDO' : format === 'cap' ? 'CAP' : 'vendor JSON';
}
