import type { FastifyInstance, FastifyRequest, FastifySchema } from 'fastify';
import { hasScope, type Principal } from '../plugins/app/auth.js';
import { ProblemError } from '../errors.js';
import { allDeliveryIds, alertView, getAlertRecord, getAlertView, getDeliveries, type AlertRecord, type DeliveryRecord } from '../store/records.js';
import { each, zByScore } from '../store/fanout.js';
import { deriveAlertState, isDeliveryState } from '../lifecycle/states.js';
import type { IngestResult } from '../ingest/ingest.js';
import { CAP_MEDIA_TYPES, EIDO_MEDIA_TYPE, InboundService, mediaType, VENDOR_MEDIA_TYPE } from '../inbound/service.js';

/** The 202/200 answer to a submission: enough to follow the alert, without echoing personal data. */
function receipt(rec: AlertRecord, deliveries: DeliveryRecord[], auditCheckpoint?: { size: number; root: string }) {
  return {
    id: rec.id,
    status: deriveAlertState(deliveries.map((d) => d.state)),
    receivedAt: rec.receivedAt,
    source: { system: rec.sourceId, alertId: rec.alert.source.alertId },
    route: { ruleId: rec.route.ruleId, targets: rec.route.targets },
    deliveries: deliveries.map((d) => ({ id: d.id, platformId: d.platformId, state: d.state, remoteTicketId: d.remoteTicketId })),
    links: { self: `/v1/alerts/${rec.id}` },
    // the latest signed audit checkpoint: every source holds anchors (docs/audit.md)
    ...(auditCheckpoint ? { auditCheckpoint } : {}),
  };
}

const STR = { type: 'string' } as const;
/** Shape of receipt(): compiled once into a serialiser for the 202 answer. Keep it in step with receipt(). */
const RECEIPT_SCHEMA = {
  type: 'object',
  properties: {
    id: STR,
    status: STR,
    receivedAt: STR,
    source: { type: 'object', properties: { system: STR, alertId: STR } },
    route: { type: 'object', properties: { ruleId: STR, targets: { type: 'array', items: STR } } },
    deliveries: { type: 'array', items: { type: 'object', properties: { id: STR, platformId: STR, state: STR, remoteTicketId: STR } } },
    links: { type: 'object', properties: { self: STR } },
    inbound: { type: 'object', properties: { format: STR, action: STR, references: { type: 'array', items: STR } } },
    auditCheckpoint: { type: 'object', properties: { size: { type: 'integer' }, root: STR } },
  },
} as const;

/**
 * May this principal read this alert? Its own source may; audit:read and admin may read all; an
 * operator key with alerts:read may read all, with personal data masked (console session plugin).
 */
export function canRead(p: Principal | null, rec: AlertRecord): boolean {
  if (!p) return false;
  if (hasScope(p, 'audit:read')) return true;
  if (p.kind === 'operator') return p.scopes.has('alerts:read');
  return p.kind === 'source' && p.ownerId === rec.sourceId && p.scopes.has('alerts:read');
}

interface ListQuery {
  source?: string;
  category?: string;
  state?: string;
  since?: string;
  until?: string;
  cursor?: string;
  limit?: number;
}

export default async function alertRoutes(app: FastifyInstance) {
  const rt = app.fenliu;
  const sourceLimits = new Map(rt.cfg.sources.map((s) => [s.id, s.rateLimit]));
  // Alerts are JSON only: without Fastify's default text/plain parser, any other content type
  // is refused with 415 before the body is read (this plugin is encapsulated: other routes keep it).
  app.removeContentTypeParser('text/plain');
  // Other inbound formats (docs/integrators.md): EIDO and vendor JSON parse like JSON; CAP stays
  // text until the handler, after authentication, parses it with DTDs and entities off.
  const inbound = new InboundService(rt);
  const jsonParser = app.getDefaultJsonParser('error', 'error');
  // Standards documents may be larger than a native alert: CAP embeds media (inbound.bodyLimitBytes).
  const documentLimit = Math.max(rt.cfg.inbound?.bodyLimitBytes ?? 2_097_152, rt.cfg.server.bodyLimitBytes);
  app.addContentTypeParser(EIDO_MEDIA_TYPE, { parseAs: 'string', bodyLimit: documentLimit }, jsonParser);
  app.addContentTypeParser(VENDOR_MEDIA_TYPE, { parseAs: 'string' }, jsonParser);
  app.addContentTypeParser(CAP_MEDIA_TYPES, { parseAs: 'string', bodyLimit: documentLimit }, (_req, body, done) => done(null, body));

  app.post(
    '/v1/alerts',
    {
      preValidation: app.requireScope('alerts:write'),
      // The 202 receipt is serialised by a compiled fast-json-stringify function (performance).
      schema: { response: { 202: RECEIPT_SCHEMA } } as FastifySchema,
      config: {
        rateLimit: {
          keyGenerator: (req: FastifyRequest) => (req.principal ? `${req.principal.ownerId ?? req.principal.keyId}` : req.ip),
          // Plain functions: the plugin awaits their value either way, an async one costs a promise more.
          max: (req: FastifyRequest) => sourceLimits.get(req.principal?.ownerId ?? '')?.max ?? 1000,
          timeWindow: (req: FastifyRequest) => (sourceLimits.get(req.principal?.ownerId ?? '')?.perSeconds ?? 1) * 1000,
        },
      },
    },
    async (req, reply) => {
      // Only a 110 system sends alerts: an operator or admin key may act on them, never create one.
      if (req.principal!.kind !== 'source') {
        throw new ProblemError('FENLIU_ERR_NOT_A_SOURCE', 'Alerts are submitted with a source key (a 110 system\'s key); this key belongs to no source');
      }
      const idem = req.headers['idempotency-key'];
      const idemKey = Array.isArray(idem) ? idem[0] : idem;
      inbound.checkDepth(req.body);
      const media = mediaType(req.headers['content-type']);
      const format = inbound.detect(req.principal!, media, req.body);
      let result: IngestResult;
      if (format === 'fenliu') result = await rt.ingest.submit(req.principal!, req.body, idemKey);
      else {
        const out = await inbound.submit(req.principal!, format, media, req.body, idemKey);
        if (out.kind === 'unmatched-cancel') {
          // Nothing this source sent (and fenliu still keeps) is named: nothing to withdraw, nothing stored.
          reply.code(200);
          return { status: 'nothing-to-cancel', inbound: { format: out.format, action: 'cancel', references: out.references }, detail: 'No alert that this source sent is named by the references; nothing was cancelled' };
        }
        if (out.kind === 'followed') {
          // CAP Update/Cancel: the alert it follows up, as GET /v1/alerts/:id shows it.
          reply.code(200).header('location', `/v1/alerts/${out.alertId}`);
          return { ...out.view, inbound: { format: out.format, action: out.action } };
        }
        result = out.result;
        if (out.updateOf && result.kind === 'created' && !result.record.repeatOf) {
          // A CAP Update whose original fenliu does not hold: a new alert, and the answer says so.
          reply.code(202).header('location', `/v1/alerts/${result.record.id}`);
          return { ...receipt(result.record, result.deliveries), inbound: { format: out.format, action: 'update-as-new', references: out.updateOf } };
        }
      }
      if (result.kind === 'created' && result.record.repeatOf) {
        // Linked to an open case: no new ticket, so 200 and a pointer to the case.
        const caseId = result.record.repeatOf;
        reply.code(200).header('location', `/v1/alerts/${caseId}`);
        return { ...receipt(result.record, [], rt.auditCheckpoint?.()), status: 'linked', repeatOf: caseId, repeatMatch: result.record.repeatMatch, links: { self: `/v1/alerts/${result.record.id}`, case: `/v1/alerts/${caseId}` } };
      }
      if (result.kind === 'created') {
        reply.code(202).header('location', `/v1/alerts/${result.record.id}`);
        return receipt(result.record, result.deliveries, rt.auditCheckpoint?.());
      }
      const deliveries = await getDeliveries(rt.redis, rt.keys, result.record.deliveryIds, [result.record]);
      if (result.record.repeatOf) {
        reply.code(200).header('idempotent-replayed', 'true');
        return { ...receipt(result.record, [], rt.auditCheckpoint?.()), status: 'linked', repeatOf: result.record.repeatOf, repeatMatch: result.record.repeatMatch, links: { self: `/v1/alerts/${result.record.id}`, case: `/v1/alerts/${result.record.repeatOf}` } };
      }
      reply.code(200).header('location', `/v1/alerts/${result.record.id}`).header('idempotent-replayed', 'true');
      return receipt(result.record, deliveries, rt.auditCheckpoint?.());
    },
  );

  app.get<{ Params: { id: string } }>('/v1/alerts/:id', { preValidation: app.requireScope('alerts:read', 'audit:read') }, async (req) => {
    const view = await getAlertView(rt.redis, rt.keys, req.params.id);
    // Another source's alert is as invisible as a missing one.
    if (!view || !canRead(req.principal, { sourceId: view.sourceId } as AlertRecord)) throw new ProblemError('FENLIU_ERR_NOT_FOUND', `No alert ${req.params.id}`);
    return view;
  });

  app.get<{ Querystring: ListQuery }>(
    '/v1/alerts',
    {
      preValidation: app.requireScope('alerts:read', 'audit:read'),
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            source: { type: 'string' },
            category: { type: 'string' },
            state: { type: 'string' },
            since: { type: 'string', format: 'date-time' },
            until: { type: 'string', format: 'date-time' },
            cursor: { type: 'string', pattern: '^[0-9]+:[A-Za-z0-9_]+$' },
            limit: { type: 'integer', minimum: 1, maximum: 200, default: 50 },
          },
        },
      },
    },
    async (req) => {
      const q = req.query;
      const p = req.principal!;
      let source = q.source;
      // Operator keys (duty officers) list every alert, personal data masked; a source key lists its own.
      if (!hasScope(p, 'audit:read') && !(p.kind === 'operator' && p.scopes.has('alerts:read'))) {
        if (p.kind !== 'source') throw new ProblemError('FENLIU_ERR_FORBIDDEN', 'Listing alerts needs a source key (its own alerts), an operator key with alerts:read, or audit:read');
        if (source && source !== p.ownerId) throw new ProblemError('FENLIU_ERR_FORBIDDEN', 'A source key lists only its own alerts');
        source = p.ownerId;
      }
      if (q.state && !isDeliveryState(q.state) && !['delivering', 'failed', 'queued', 'delivered', 'in_progress', 'resolved', 'closed', 'cancelled', 'returned'].includes(q.state)) {
        throw new ProblemError('FENLIU_ERR_BAD_REQUEST', `Unknown state ${q.state}`, { errors: [{ pointer: '/querystring/state', message: 'is not a known state' }] });
      }
      const key = each(rt.keys.bucketList, (b) => (source ? rt.keys.alertsBySource(b, source) : rt.keys.alerts(b)));
      const limit = q.limit ?? 50;
      const min = q.since ? Date.parse(q.since) : -Infinity;
      let max: number | string = q.until ? Date.parse(q.until) : Infinity;
      let after: string | undefined;
      if (q.cursor) {
        const [score, id] = q.cursor.split(':');
        max = Number(score);
        after = id;
      }
      const items: ReturnType<typeof alertView>[] = [];
      let scanned = 0;
      let nextCursor: string | undefined;
      // Newest first; filters on category and state are applied while scanning, bounded per page.
      outer: while (items.length < limit && scanned < 5_000) {
        const chunk = await zByScore(rt.redis, key, max, min, 200, true);
        if (!chunk.length) break;
        const ids: [string, number][] = [];
        for (let i = 0; i < chunk.length; i += 2) ids.push([chunk[i], Number(chunk[i + 1])]);
        let progressed = false;
        for (const [id, score] of ids) {
          if (after !== undefined) {
            // Same-millisecond alerts: skip up to and including the cursor's id (ids sort by time).
            if (score === Number(max) && id >= after) continue;
          }
          progressed = true;
          scanned++;
          const rec = await getAlertRecord(rt.redis, rt.keys, id);
          max = score;
          after = id;
          if (!rec) continue;
          if (q.category && rec.alert.category !== q.category && !rec.alert.category.startsWith(`${q.category}.`)) continue;
          const view = alertView(rec, await getDeliveries(rt.redis, rt.keys, await allDeliveryIds(rt.redis, rt.keys, rec), [rec]));
          if (q.state && view.status !== q.state && !view.deliveries.some((d) => d.state === q.state)) continue;
          items.push(view);
          if (items.length >= limit) {
            nextCursor = `${score}:${id}`;
            break outer;
          }
        }
        if (!progressed) break;
      }
      return { items, nextCursor: nextCursor ?? null };
    },
  );
}
