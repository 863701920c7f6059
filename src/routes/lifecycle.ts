import { createHmac, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { StatusEvent } from '../../adapters/sdk.js';
import { addAudit } from '../audit/events.js';
import { relayAudit } from '../store/audit-relay.js';
import { bucketOf } from '../store/keys.js';
import { operatorActionEvent } from '../audit/operator.js';
import type { Platform } from '../delivery/platforms.js';
import { webhookKey } from '../delivery/webhook-secret.js';
import { jobPriority } from '../delivery/queues.js';
import { ProblemError } from '../errors.js';
import { canonicalJson, validateAlert } from '../ingest/validate.js';
import { FINAL_STATES } from '../lifecycle/states.js';
import { isPoliceOnly } from '../routing/route.js';
import { hasScope, type Principal } from '../plugins/app/auth.js';
import { allDeliveryIds, getAlertRecord, getAlertView, getDeliveries, type AlertRecord } from '../store/records.js';
import type { Runtime } from '../runtime.js';
import { createHash } from 'node:crypto';

/** Verifies a Standard Webhooks signature (v1, HMAC-SHA256 over id.timestamp.body) in constant time. */
export function verifySignature(secret: string, id: string, timestamp: string, body: string, header: string): boolean {
  const key = webhookKey(secret);
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest();
  for (const part of header.split(' ')) {
    const [version, sig] = part.split(',');
    if (version !== 'v1' || !sig) continue;
    const got = Buffer.from(sig, 'base64');
    if (got.length === expected.length && timingSafeEqual(got, expected)) return true;
  }
  return false;
}

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Status callbacks, cancel and update: what moves a case after its first delivery. */
export function lifecycleRoutes(platforms: Map<string, Platform>) {
  return async function routes(app: FastifyInstance) {
    const rt = app.fenliu;
    const lc = rt.lifecycle;
    const k = rt.keys;

    // Callbacks are signed over their exact bytes, so this context keeps bodies as text.
    await app.register(async (raw) => {
      raw.removeAllContentTypeParsers();
      raw.addContentTypeParser('*', { parseAs: 'string', bodyLimit: rt.cfg.server.bodyLimitBytes }, (_req, body, done) => done(null, body));

      raw.post<{ Params: { id: string }; Body: string }>('/v1/platforms/:id/events', async (req, reply) => {
        const p = platforms.get(req.params.id);
        if (!p || p.cfg.feedbackFor) throw new ProblemError('FENLIU_ERR_NOT_FOUND', `No platform ${req.params.id}`);
        if (!p.adapter.parseCallback) throw new ProblemError('FENLIU_ERR_NOT_FOUND', `Platform ${p.id} (adapter ${p.adapter.id}) takes no callbacks; its status is polled`);
        const seenKey = await authenticateCallback(rt, p, req);
        // A message that could not be taken in (unreadable, not yet deliverable, an internal
        // error) is forgotten again, so the platform's retry with the same webhook-id is not a replay.
        const forget = () => (seenKey ? rt.redis.del(seenKey).catch(() => 0) : 0);
        const body = typeof req.body === 'string' ? req.body : '';
        let events: StatusEvent[];
        try {
          events = p.adapter.parseCallback({ headers: req.headers as Record<string, string>, body, contentType: header(req, 'content-type') }, { platform: { id: p.id, config: p.cfg.options }, now: new Date().toISOString() });
        } catch (err) {
          await forget();
          throw new ProblemError('FENLIU_ERR_BAD_REQUEST', `The callback body cannot be read: ${(err as Error).message}`);
        }
        const results = [];
        try {
          for (const ev of events) results.push({ eventId: ev.eventId, state: ev.state, ...(await lc.handleEvent(p.id, ev, 'callback')) });
        } catch (err) {
          await forget();
          throw err;
        }
        if (results.some((r) => r.reason === 'early')) {
          await forget();
          throw new ProblemError('FENLIU_ERR_CONFLICT', 'The delivery is still being sent; retry this callback in a moment', { headers: { 'retry-after': '1' }, extra: { results } });
        }
        const illegal = results.filter((r) => r.reason === 'illegal');
        if (illegal.length) {
          throw new ProblemError('FENLIU_ERR_ILLEGAL_TRANSITION', illegal.map((r) => `${r.deliveryId}: ${r.current} → ${r.state} is not allowed`).join('; '), { extra: { results } });
        }
        if (results.length && results.every((r) => r.reason === 'unknown-delivery')) {
          throw new ProblemError('FENLIU_ERR_NOT_FOUND', 'No delivery matches this callback (ticket id or delivery id unknown)', { extra: { results } });
        }
        reply.code(200);
        return { results };
      });
    });

    app.post<{ Params: { id: string }; Body: { reason: string } }>(
      '/v1/alerts/:id/cancel',
      {
        preValidation: app.requireScope('alerts:write'),
        schema: { body: { type: 'object', required: ['reason'], additionalProperties: false, properties: { reason: { type: 'string', minLength: 1, maxLength: 1000, pattern: '\\S' } } } },
      },
      async (req) => {
        const rec = await ownAlert(rt, req, req.params.id);
        return cancelAlert(rt, req.principal!, rec, req.body.reason);
      },
    );

    app.post<{ Params: { id: string }; Body: unknown }>('/v1/alerts/:id/update', { preValidation: app.requireScope('alerts:write') }, async (req) => {
      const rec = await ownAlert(rt, req, req.params.id);
      const { alert, reason } = updateBody(req.body);
      // A source updates its own alert; anyone else (an admin key) acts on a source's alert and must say why.
      if (req.principal!.kind !== 'source' && !reason) {
        throw new ProblemError('FENLIU_ERR_BAD_REQUEST', 'An operator updating a source\'s alert must give a reason: send {"reason": "…", "alert": {…}}', {
          errors: [{ pointer: '/reason', message: 'is required when an operator updates a source\'s alert' }],
        });
      }
      return updateAlert(rt, req.principal!, rec, alert, reason);
    });
  };
}

/**
 * Withdraws an alert (撤单): every primary delivery not yet final is cancelled, and platforms that
 * already hold it get a cancel follow-up. Shared by POST /v1/alerts/:id/cancel and CAP Cancel.
 */
export async function cancelAlert(rt: Runtime, p: Principal, rec: AlertRecord, reason: string) {
  const k = rt.keys;
  const actor = { kind: p.kind, id: p.ownerId ?? p.keyId, keyId: p.keyId } as const;
  // An alert still in the ingest log is written out first: its deliveries then exist to be cancelled.
  await rt.materialiser.alert(rec.id, rec);
  const ds = (await getDeliveries(rt.redis, k, await allDeliveryIds(rt.redis, k, rec))).filter((d) => (d.kind ?? 'primary') === 'primary');
  // A source withdrawing its own alert is on the log as delivery.state; an operator's is also an action.
  if (p.kind === 'operator') await rt.audit(operatorActionEvent(p, 'cancel', { alertId: rec.id }, reason));
  for (const d of ds) {
    if (FINAL_STATES.has(d.state)) continue;
    const wasSent = d.state !== 'queued';
    const t = await rt.lifecycle.apply({ deliveryId: d.id, to: 'cancelled', source: p.kind === 'operator' ? 'operator' : 'source', note: reason, audit: { alertId: rec.id, platformId: d.platformId, actor, reason } });
    if (t.ok && wasSent) {
      await rt.queues.add({ alertId: rec.id, deliveryId: d.id, platformId: d.platformId, kind: 'cancel', reason }, { priority: jobPriority('urgent'), jobId: `${d.id}.cancel` });
    }
  }
  return getAlertView(rt.redis, k, rec.id);
}

/**
 * A new version of an alert (补充): validated like a first submission, stored as the next version,
 * and sent as an update to platforms that already hold the case. Shared by
 * POST /v1/alerts/:id/update and CAP Update.
 */
export async function updateAlert(rt: Runtime, p: Principal, rec: AlertRecord, body: unknown, reason?: string) {
  const k = rt.keys;
  const v = validateAlert(body);
  if (!v.ok) throw new ProblemError('FENLIU_ERR_VALIDATION', `${v.errors.length} field(s) do not match the alert schema`, { errors: v.errors });
  if (v.alert.source.system !== rec.alert.source.system || v.alert.source.alertId !== rec.alert.source.alertId) {
    throw new ProblemError('FENLIU_ERR_VALIDATION', 'An update must keep source.system and source.alertId', { errors: [{ pointer: '/source', message: 'differs from the original alert' }] });
  }
  // A new version in a police-only category must not reach the platforms (非必要不分流): the
  // police take the case back by cancelling it, which an update cannot do on their behalf.
  const police = rt.cfg.policeOnly.find((pattern) => isPoliceOnly(pattern, v.alert.category));
  if (police) {
    throw new ProblemError('FENLIU_ERR_POLICE_ONLY', `Category ${v.alert.category} matches the police-only rule ${police}: the update is not sent; cancel the alert (POST /v1/alerts/${rec.id}/cancel) to take the case back`, {
      errors: [{ pointer: '/category', message: `is police-only (${police})` }],
    });
  }
  const hash = createHash('sha256').update(canonicalJson(v.alert)).digest('hex');
  const current = createHash('sha256').update(canonicalJson(rec.alert)).digest('hex');
  if (hash === current) return getAlertView(rt.redis, k, rec.id);
  // Before the record is rewritten: materialising cuts the first version's JSON from its head.
  await rt.materialiser.alert(rec.id, rec);
  const at = new Date().toISOString();
  // Materialised now: a record of an earlier version names its log entry, which is gone.
  const { log: _log, ...kept } = rec;
  const updated: AlertRecord = { ...kept, alert: v.alert, version: (rec.version ?? 1) + 1 };
  const m = rt.redis.multi();
  m.set(k.alert(rec.id), JSON.stringify(updated));
  m.rpush(`${k.alert(rec.id)}:versions`, JSON.stringify({ at, version: updated.version, alert: rec.alert }));
  addAudit(m, rt.cfg.redis.prefix, { type: 'alert.updated', at, alertId: rec.id, sourceId: rec.sourceId, actor: { kind: p.kind, id: p.ownerId ?? p.keyId, keyId: p.keyId }, data: { alert: v.alert, version: updated.version, ...(reason ? { reason } : {}) } }, bucketOf(rec.id));
  if (p.kind === 'operator') {
    addAudit(m, rt.cfg.redis.prefix, operatorActionEvent(p, 'update', { alertId: rec.id }, reason, { version: updated.version }), bucketOf(rec.id));
  }
  await m.exec();
  void relayAudit(rt.redis, rt.cfg.redis.prefix, bucketOf(rec.id)).catch(() => 0);
  const ds = (await getDeliveries(rt.redis, k, await allDeliveryIds(rt.redis, k, rec))).filter((d) => (d.kind ?? 'primary') === 'primary');
  for (const d of ds) {
    // Queued deliveries send the new version anyway; the others get an update notice.
    if (FINAL_STATES.has(d.state) || d.state === 'queued') continue;
    await rt.queues.add({ alertId: rec.id, deliveryId: d.id, platformId: d.platformId, kind: 'update' }, { priority: jobPriority(v.alert.priority), jobId: `${d.id}.update.${updated.version}` });
  }
  return getAlertView(rt.redis, k, rec.id);
}

/**
 * The update body: the new alert itself, or `{reason, alert}` (required form for operators). An
 * alert has no `alert` member, so the two cannot be confused.
 */
function updateBody(body: unknown): { alert: unknown; reason?: string } {
  if (body && typeof body === 'object' && !Array.isArray(body) && 'alert' in body && !('source' in body)) {
    const { alert, reason, ...rest } = body as Record<string, unknown>;
    if (Object.keys(rest).length) {
      throw new ProblemError('FENLIU_ERR_BAD_REQUEST', 'An update envelope has only reason and alert', { errors: Object.keys(rest).map((k) => ({ pointer: `/${k}`, message: 'is not allowed' })) });
    }
    if (reason !== undefined && (typeof reason !== 'string' || !reason.trim() || reason.length > 1000)) {
      throw new ProblemError('FENLIU_ERR_BAD_REQUEST', 'reason must be text of 1 to 1000 characters', { errors: [{ pointer: '/reason', message: 'must be 1 to 1000 characters' }] });
    }
    return { alert, reason: reason as string | undefined };
  }
  return { alert: body };
}

/** The alert, if the caller's source owns it (or the caller is admin); otherwise 404. */
async function ownAlert(rt: Runtime, req: FastifyRequest, id: string): Promise<AlertRecord> {
  const rec = await getAlertRecord(rt.redis, rt.keys, id);
  const p = req.principal;
  if (!rec || !p || !(hasScope(p, 'admin') || (p.kind === 'source' && p.ownerId === rec.sourceId))) throw new ProblemError('FENLIU_ERR_NOT_FOUND', `No alert ${id}`);
  return rec;
}

/**
 * A platform proves a callback is its own with a Standard Webhooks signature (when it has a
 * callback secret) or with its own API key (scope events:write). Each signed message is taken once.
 */
async function authenticateCallback(rt: Runtime, p: Platform, req: FastifyRequest): Promise<string | undefined> {
  const cb = (p.cfg as { callback?: { secret?: string; toleranceSeconds?: number } }).callback;
  if (cb?.secret) {
    const id = header(req, 'webhook-id');
    const ts = header(req, 'webhook-timestamp');
    const sig = header(req, 'webhook-signature');
    if (!id || !ts || !sig || !/^\d+$/.test(ts)) throw new ProblemError('FENLIU_ERR_BAD_SIGNATURE', 'Send webhook-id, webhook-timestamp and webhook-signature (Standard Webhooks)');
    const tolerance = cb.toleranceSeconds ?? 300;
    if (Math.abs(Date.now() / 1000 - Number(ts)) > tolerance) throw new ProblemError('FENLIU_ERR_BAD_SIGNATURE', `webhook-timestamp is more than ${tolerance} s away from now`);
    if (!verifySignature(cb.secret, id, ts, typeof req.body === 'string' ? req.body : '', sig)) throw new ProblemError('FENLIU_ERR_BAD_SIGNATURE', 'The signature does not match');
    // Replay protection: a message id is accepted once within the tolerance window (and a bit more).
    const seenKey = rt.keys.seenMessage(p.id, id);
    const fresh = await rt.redis.set(seenKey, '1', 'EX', tolerance * 2 + 60, 'NX');
    if (fresh !== 'OK') throw new ProblemError('FENLIU_ERR_REPLAYED', `Message ${id} was already received`);
    return seenKey;
  }
  const pr = req.principal;
  if (!pr) throw new ProblemError('FENLIU_ERR_UNAUTHENTICATED', 'Sign the callback or send the platform key');
  if (!(hasScope(pr, 'admin') || (pr.kind === 'platform' && pr.ownerId === p.id && pr.scopes.has('events:write')))) {
    throw new ProblemError('FENLIU_ERR_FORBIDDEN', 'This key may not post events for this platform');
  }
  return undefined;
}
