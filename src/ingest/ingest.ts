import { hash } from 'node:crypto';
import type { Alert } from '../../adapters/sdk.js';
import type { AuditEvent } from '../audit/events.js';
import type { Config } from '../config/types.js';
import { ProblemError } from '../errors.js';
import type { Principal } from '../plugins/app/auth.js';
import { routeAlert } from '../routing/route.js';
import { newId } from '../store/ids.js';
import { newDelivery } from '../store/ingest-log.js';
import type { Keys } from '../store/keys.js';
import type { AlertRecord, DeliveryRecord } from '../store/records.js';
import { canonicalJson, validateAlert } from './validate.js';
import { bus } from '../events.js';
import { deadlines, slaFor } from '../lifecycle/service.js';
import type { Deadlines } from '../store/ingest-log.js';
import type { RepeatMatch, RepeatMatcher } from '../lifecycle/repeat.js';
import type { IngestWriter, PendingAlert, WriteOutcome } from './writer.js';

export type IngestResult =
  | { kind: 'created'; record: AlertRecord; deliveries: DeliveryRecord[] }
  | { kind: 'duplicate'; record: AlertRecord };

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,128}$/;

/**
 * The ingest decision, in order: validate, check the key's source binding, route, then store.
 * Everything before the write is pure and cheap; the write is batched by IngestWriter.
 */
export class IngestService {
  constructor(
    private readonly cfg: Config,
    private readonly keys: Keys,
    private readonly writer: IngestWriter,
    private readonly onRefused: (ev: AuditEvent) => void = () => undefined,
    private readonly repeat?: RepeatMatcher,
    private readonly onRepeat: (repeat: AlertRecord, caseId: string) => Promise<void> = async () => undefined,
  ) {}

  async submit(principal: Principal, body: unknown, idempotencyHeader: string | undefined): Promise<IngestResult> {
    const v = validateAlert(body);
    if (!v.ok) {
      this.refuse(principal, 'FENLIU_ERR_VALIDATION', { pointers: v.errors.map((e) => e.pointer) });
      throw new ProblemError('FENLIU_ERR_VALIDATION', `${v.errors.length} field(s) do not match the alert schema`, { errors: v.errors });
    }
    const alert = v.alert;
    if (principal.kind !== 'operator' && principal.ownerId !== alert.source.system) {
      throw new ProblemError('FENLIU_ERR_SOURCE_MISMATCH', `This key submits for ${principal.ownerId ?? 'no source'}, not ${alert.source.system}`, {
        errors: [{ pointer: '/source/system', message: 'is not the source this key is bound to' }],
      });
    }
    if (principal.kind === 'operator' && !this.cfg.sources.some((s) => s.id === alert.source.system)) {
      throw new ProblemError('FENLIU_ERR_VALIDATION', 'Unknown source system', { errors: [{ pointer: '/source/system', message: 'is not a configured source' }] });
    }
    const routed = routeAlert(alert, this.cfg.routes, this.cfg.policeOnly);
    if (!routed.ok) {
      this.refuse(principal, routed.code, { category: alert.category, sourceAlertId: alert.source.alertId, source: alert.source.system, region: alert.location.regionCode });
      if (routed.code === 'FENLIU_ERR_POLICE_ONLY') {
        throw new ProblemError(routed.code, `Category ${alert.category} matches the police-only rule ${routed.pattern}: the police keep this alert (非必要不分流)`, {
          errors: [{ pointer: '/category', message: `is police-only (${routed.pattern})` }],
        });
      }
      throw new ProblemError(routed.code, `No route matches category ${alert.category} in region ${alert.location.regionCode}, and there is no default route`, {
        errors: [{ pointer: '/category', message: 'matches no route' }, { pointer: '/location/regionCode', message: 'matches no route' }],
      });
    }
    if (idempotencyHeader !== undefined && !IDEMPOTENCY_KEY.test(idempotencyHeader)) {
      throw new ProblemError('FENLIU_ERR_BAD_REQUEST', 'Idempotency-Key must be 1 to 128 visible ASCII characters', { errors: [{ pointer: '/headers/idempotency-key', message: 'is invalid' }] });
    }
    const idemKey = this.keys.idem(alert.source.system, idempotencyHeader ?? alert.source.alertId);
    // In its idempotency key's bucket: the claim and the alert are written by one script (one slot).
    // Made before the write: the repeat-call claims name it.
    const bucket = this.keys.idemBucket(alert.source.system, idempotencyHeader ?? alert.source.alertId);
    const id = newId('alt', Date.now(), bucket);
    // Nearly every alert is new, and nearly every new alert repeats no open case: the batch script
    // checks its idempotency key and, where one call may (a single Redis), claims its repeat-call
    // keys with the record when both are free. Only a held key (a copy, a repeat, a race) sends it
    // down the matcher's path below.
    const fast = this.repeat?.fastKeys(alert, bucket);
    if (!this.repeat || fast) {
      const item = this.build(alert, principal, routed.decision, idemKey, idempotencyHeader, id);
      item.repeat = fast;
      let outcome: WriteOutcome;
      try {
        outcome = await this.writer.submit(item);
      } catch (err) {
        if (fast) await this.repeat!.abandon(id, fast).catch(() => undefined);
        throw err;
      }
      if (outcome.kind !== 'repeat-held') return this.accepted(alert, routed.decision, settle(outcome));
    }
    // One coalesced MGET says whether its idempotency key is held, while its repeat-call keys are
    // claimed (src/lifecycle/repeat.ts); a copy gives its claims back.
    const rep = this.repeat?.begin(alert, id, fast);
    let outcome: WriteOutcome;
    let match: RepeatMatch | undefined;
    try {
      const [claim] = await this.writer.lookup([idemKey]);
      if (!claim) match = await rep?.match();
      const item = this.build(alert, principal, routed.decision, idemKey, idempotencyHeader, id, match);
      outcome = claim ? await this.writer.existing(claim, item) : await this.writer.submit(item);
    } catch (err) {
      // Stored or not (a 503 for replicas comes after the write): the matcher asks Redis.
      await rep?.done(undefined);
      throw err;
    }
    // Settled before the answer: a copy's claims are gone when its 200 is sent.
    await rep?.done(outcome.kind === 'created');
    const repeatOf = match?.caseId;
    const result = settle(outcome);
    if (result.kind === 'created' && repeatOf) await this.onRepeat(result.record, repeatOf);
    return this.accepted(alert, routed.decision, result);
  }

  private accepted(alert: Alert, decision: AlertRecord['route'], result: IngestResult): IngestResult {
    bus.emitEvent('alert.accepted', { sourceId: alert.source.system, category: alert.category, regionCode: alert.location.regionCode, deliveries: decision.targets.length, duplicate: result.kind === 'duplicate' });
    return result;
  }

  private build(alert: Alert, principal: Principal, decision: AlertRecord['route'], idemKey: string, idemHeader: string | undefined, id: string, match?: RepeatMatch): PendingAlert {
    const repeatOf = match?.caseId;
    const now = Date.now();
    const receivedAt = new Date(now).toISOString();
    const sourceId = alert.source.system;
    const idempotencyKey = idemHeader ?? alert.source.alertId;
    // The canonical form is hashed and also stored: one serialisation of the alert, not two.
    const alertJson = canonicalJson(alert);
    const bodyHash = hash('sha256', alertJson, 'hex');
    // A repeat call opens no ticket: the platforms holding the case get an urge instead.
    const deliveries: DeliveryRecord[] = (repeatOf ? [] : decision.targets).map((platformId) =>
      newDelivery(id, platformId, alert.priority ?? 'normal', receivedAt, this.deadlines(decision.ruleId, platformId, now)),
    );
    const record: AlertRecord = {
      id,
      receivedAt,
      sourceId,
      idempotencyKey,
      bodyHash,
      keyId: principal.keyId,
      alert,
      route: decision,
      deliveryIds: deliveries.map((d) => d.id),
      ...(match ? { repeatOf, repeatMatch: { key: match.key, on: match.on, crossSource: match.crossSource } } : {}),
    };
    // Its audit events (alert.received holding the route; for a repeat call alert.received and
    // alert.repeat) are written by the dispatcher from the record and this actor (src/ingest/dispatcher.ts).
    const actor = { kind: principal.kind, id: principal.ownerId ?? principal.keyId, keyId: principal.keyId } as const;
    return { record, deliveries, idemKey, alertJson, actor };
  }

  /** SLA offsets (ms) per route and platform: the config is fixed for the life of this service. */
  private readonly slaOffsets = new Map<string, { offsets: [keyof Deadlines, number][]; at: number; last: Deadlines }>();

  /** `deadlines(slaFor(...))` for a delivery created at `now`, without parsing durations and dates per alert. */
  private deadlines(ruleId: string, platformId: string, now: number): Deadlines {
    const tag = `${ruleId}\n${platformId}`;
    let sla = this.slaOffsets.get(tag);
    if (!sla) {
      // The offsets are what `deadlines` adds to a creation time: computed from time 0.
      const at0 = deadlines(slaFor(this.cfg, ruleId, platformId), new Date(0).toISOString());
      sla = { offsets: (Object.keys(at0) as (keyof Deadlines)[]).map((k) => [k, Date.parse(at0[k]!)]), at: NaN, last: {} };
      this.slaOffsets.set(tag, sla);
    }
    // Alerts of one millisecond (several, under load) share their deadlines: read-only, copied into each delivery.
    if (sla.at === now) return sla.last;
    const out: Deadlines = {};
    for (const [k, ms] of sla.offsets) out[k] = new Date(now + ms).toISOString();
    sla.at = now;
    sla.last = out;
    return out;
  }

  /** Audits (and counts, for police-only and no-route) an alert refused before it was stored. */
  refuse(principal: Principal, code: string, data: Record<string, unknown>): void {
    bus.emitEvent('alert.refused', { sourceId: principal.ownerId, code });
    this.onRefused({ type: 'alert.refused', at: new Date().toISOString(), sourceId: principal.ownerId, actor: { kind: principal.kind, id: principal.ownerId ?? principal.keyId, keyId: principal.keyId }, data: { code, ...data } });
  }
}

function settle(o: WriteOutcome): IngestResult {
  switch (o.kind) {
    case 'created':
    case 'duplicate':
      return o;
    case 'conflict':
      throw new ProblemError('FENLIU_ERR_IDEMPOTENCY_CONFLICT', `Alert ${o.existingId} was stored under this idempotency key with a different body`, { extra: { existingId: o.existingId }, headers: { location: `/v1/alerts/${o.existingId}` } });
    case 'in-progress':
    // Only a write that claimed repeat keys can find one held, and it is retried without: never here.
    case 'repeat-held':
      throw new ProblemError('FENLIU_ERR_IDEMPOTENCY_IN_PROGRESS', 'Another request with this idempotency key is being stored; retry shortly', { headers: { 'retry-after': '1' } });
  }
}
