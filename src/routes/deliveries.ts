import type { FastifyInstance } from 'fastify';
import { ProblemError } from '../errors.js';
import { transition } from '../lifecycle/transition.js';
import { jobPriority, type DeliveryJobData } from '../delivery/queues.js';
import { getAlertRecord, getDeliveries, parseDelivery, type DeliveryRecord } from '../store/records.js';
import { each, zByRank, zByScore, zcardAll } from '../store/fanout.js';
import { bucketOf } from '../store/keys.js';
import type { Runtime } from '../runtime.js';
import type { Principal } from '../plugins/app/auth.js';
import { canRead } from './alerts.js';
import { addAudit } from '../audit/events.js';
import { operatorActionEvent, replayEvent } from '../audit/operator.js';
import type { DeliveryEngine } from '../delivery/engine.js';
import { Circuit } from '../delivery/circuit.js';
import { platformSettings } from '../delivery/platforms.js';

const reasonBody = {
  type: 'object',
  required: ['reason'],
  additionalProperties: false,
  properties: { reason: { type: 'string', minLength: 1, maxLength: 1000 } },
} as const;

/**
 * Puts a failed delivery back in its queue: state failed → queued, dead letter removed, a new job
 * (a fresh job id: the old one may still be waiting, as a retry of the failed send), and an audit event naming
 * the operator and the reason.
 */
export async function retryDelivery(rt: Runtime, d: DeliveryRecord, actor: Principal, reason: string, action = 'retry'): Promise<boolean> {
  const k = rt.keys;
  const t = await transition(rt.redis, k, rt.cfg.redis.prefix, {
    deliveryId: d.id,
    to: 'queued',
    source: 'operator',
    from: ['failed'],
    note: reason,
    // Attempt numbers go on counting (the log keeps #1, #2 … across retries); the budget restarts here.
    set: { retryFrom: d.attempts },
    unset: ['lastError', 'failedAt'],
    audit: { alertId: d.alertId, platformId: d.platformId, actor: { kind: 'operator', id: actor.keyId, keyId: actor.keyId }, reason, data: { action: 'retry' } },
  });
  if (!t.ok) return false;
  await rt.audit(operatorActionEvent(actor, action, { alertId: d.alertId, deliveryId: d.id, platformId: d.platformId }, reason));
  const n = await rt.redis.hincrby(k.delivery(d.id), 'retries', 1);
  const data: DeliveryJobData = { alertId: d.alertId, deliveryId: d.id, platformId: d.platformId, kind: 'deliver' };
  // Before the job exists: a job that fails again at once must be able to dead-letter itself anew.
  await rt.redis.zrem(k.deadLetters(bucketOf(d.id), d.platformId), d.id);
  try {
    await rt.queues.add(data, { priority: jobPriority(d.priority), jobId: `${d.id}.r${n}` });
  } catch (err) {
    // No job, no delivery: put it back where it was (failed, still a dead letter) rather than
    // leave it queued with nothing to send it.
    await transition(rt.redis, k, rt.cfg.redis.prefix, {
      deliveryId: d.id,
      to: 'failed',
      source: 'operator',
      from: ['queued'],
      note: `retry could not be queued: ${(err as Error).message}`,
      set: { lastError: d.lastError, failedAt: new Date().toISOString() },
    }).catch(() => undefined);
    await rt.redis.zadd(k.deadLetters(bucketOf(d.id), d.platformId), Date.now(), d.id).catch(() => undefined);
    throw err;
  }
  return true;
}

/** A delivery about to be written to: one whose alert is still in the ingest log is materialised first. */
async function writableDelivery(rt: Runtime, id: string): Promise<DeliveryRecord | undefined> {
  const d = parseDelivery(await rt.redis.hgetall(rt.keys.delivery(id)));
  if (d || !(await rt.materialiser.delivery(id))) return d;
  return parseDelivery(await rt.redis.hgetall(rt.keys.delivery(id)));
}

export function deliveryRoutes(engine?: DeliveryEngine) {
  return async function routes(app: FastifyInstance) {
    const rt = app.fenliu;
    const k = rt.keys;

    app.get<{ Params: { id: string } }>('/v1/deliveries/:id', { preValidation: app.requireScope('alerts:read', 'audit:read') }, async (req) => {
      // getDeliveries: a delivery whose alert is still in the ingest log is shown as it will be written.
      const [d] = await getDeliveries(rt.redis, k, [req.params.id]);
      const rec = d && (await getAlertRecord(rt.redis, k, d.alertId));
      if (!d || !rec || !canRead(req.principal, rec)) throw new ProblemError('FENLIU_ERR_NOT_FOUND', `No delivery ${req.params.id}`);
      const [attempts, history] = await Promise.all([rt.redis.lrange(k.attempts(d.id), 0, -1), rt.redis.lrange(k.history(d.id), 0, -1)]);
      if (!history.length) history.push(JSON.stringify({ at: d.createdAt, to: d.state, source: 'ingest' }));
      return { ...d, attemptLog: attempts.map((a) => JSON.parse(a)), history: history.map((h) => JSON.parse(h)) };
    });

    app.post<{ Params: { id: string }; Body: { reason: string } }>(
      '/v1/deliveries/:id/retry',
      { preValidation: app.requireScope('admin'), schema: { body: reasonBody } },
      async (req, reply) => {
        const d = await writableDelivery(rt, req.params.id);
        if (!d) throw new ProblemError('FENLIU_ERR_NOT_FOUND', `No delivery ${req.params.id}`);
        if (d.state !== 'failed') throw new ProblemError('FENLIU_ERR_CONFLICT', `Delivery ${d.id} is ${d.state}; only failed deliveries can be retried`);
        if (!(await retryDelivery(rt, d, req.principal!, req.body.reason))) throw new ProblemError('FENLIU_ERR_CONFLICT', `Delivery ${d.id} changed state meanwhile`);
        reply.code(202);
        return parseDelivery(await rt.redis.hgetall(k.delivery(d.id)));
      },
    );

    app.post<{ Params: { id: string }; Body: { reason: string; replayId?: string } }>(
      '/v1/deliveries/:id/redeliver',
      { preValidation: app.requireScope('admin'), schema: { body: { ...reasonBody, properties: { ...reasonBody.properties, replayId: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } } } } },
      async (req, reply) => {
        const d = await writableDelivery(rt, req.params.id);
        if (!d) throw new ProblemError('FENLIU_ERR_NOT_FOUND', `No delivery ${req.params.id}`);
        // Sent again as it is, whatever its state; the delivery id stays the idempotency key, so
        // the platform can recognise the copy.
        const n = await rt.redis.hincrby(k.delivery(d.id), 'redeliveries', 1);
        const p = req.principal!;
        const target = { alertId: d.alertId, deliveryId: d.id, platformId: d.platformId };
        const m = rt.redis.multi();
        addAudit(m, rt.cfg.redis.prefix, operatorActionEvent(p, 'redeliver', target, req.body.reason, req.body.replayId ? { replayId: req.body.replayId } : {}));
        // One replay.delivery per delivery sent again; replayId ties it to its run's replay.started.
        addAudit(m, rt.cfg.redis.prefix, replayEvent('replay.delivery', { replayId: req.body.replayId ?? `single-${d.id}-${n}`, mode: 'redeliver', actor: { kind: p.kind, id: p.ownerId ?? p.keyId, keyId: p.keyId }, reason: req.body.reason, ...target }));
        await m.exec();
        await rt.queues.add({ alertId: d.alertId, deliveryId: d.id, platformId: d.platformId, kind: 'redeliver', reason: req.body.reason }, { priority: jobPriority(d.priority), jobId: `${d.id}.redeliver.${n}` });
        reply.code(202);
        return d;
      },
    );

    app.get('/v1/platforms', { preValidation: app.requireScope('alerts:read', 'audit:read', 'admin') }, async () => {
      const now = Date.now();
      const items = await Promise.all(
        rt.cfg.platforms.map(async (p) => {
          // The engine's own circuit object where this process runs one; the same Redis hash otherwise.
          const circuit = engine?.circuits.get(p.id) ?? new Circuit(rt.redis, rt.cfg.redis.prefix, p.id, platformSettings(p).circuitBreaker);
          const [counts, dead, cb, lastErr, lastDelivered, oldest] = await Promise.all([
            rt.queues.counts(p.id),
            zcardAll(rt.redis, each(k.bucketList, (b) => k.deadLetters(b, p.id))),
            circuit.state(now),
            newestLastError(rt, p.id),
            zByScore(rt.redis, each(k.bucketList, (b) => k.flowDelivered(b, p.id)), '+inf', '-inf', 1, true),
            rt.queues.oldest(p.id),
          ]);
          const lastFailure = lastErr.at
            ? {
                at: lastErr.at,
                errorClass: lastErr.errorClass,
                ...(lastErr.status ? { status: Number(lastErr.status) } : {}),
                message: lastErr.message,
                ...(lastErr.deliveryId ? { deliveryId: lastErr.deliveryId } : {}),
              }
            : undefined;
          // Before the engine recorded last errors (an older deployment's data), the newest dead letter says most.
          const lastDead = lastFailure ? undefined : (await zByRank(rt.redis, each(k.bucketList, (b) => k.deadLetters(b, p.id)), 0, 0, true))[0];
          const deadError = lastDead ? parseDelivery(await rt.redis.hgetall(k.delivery(lastDead)))?.lastError : undefined;
          const depth = counts.waiting + counts.delayed + counts.active;
          return {
            id: p.id,
            name: p.name,
            adapter: p.adapter,
            circuit: cb.state,
            circuitFailures: cb.failures,
            circuitThreshold: circuit.opts.failureThreshold,
            ...(cb.openUntil ? { circuitOpenUntil: new Date(cb.openUntil).toISOString() } : {}),
            // prioritized and failed were BullMQ's: urgent jobs wait with the others now, and failed deliveries are dead letters.
            queue: { ...counts, prioritized: 0, failed: 0 },
            queueDepth: depth,
            ...(oldest !== undefined ? { oldestWaitingAt: new Date(oldest).toISOString(), oldestWaitingAgeMs: Math.max(0, now - oldest) } : {}),
            deadLetters: dead,
            lastError: lastFailure ? `${lastFailure.errorClass}: ${lastFailure.message}` : deadError,
            ...(lastFailure ? { lastFailure } : {}),
            ...(lastDelivered[1] ? { lastDeliveredAt: new Date(Number(lastDelivered[1])).toISOString() } : {}),
          };
        }),
      );
      return { items };
    });

    app.get<{ Params: { id: string }; Querystring: { cursor?: string; limit?: number } }>(
      '/v1/platforms/:id/dead-letters',
      {
        preValidation: app.requireScope('admin', 'audit:read'),
        schema: { querystring: { type: 'object', properties: { cursor: { type: 'string', pattern: '^[0-9]+$' }, limit: { type: 'integer', minimum: 1, maximum: 200, default: 50 } } } },
      },
      async (req) => {
        if (!rt.cfg.platforms.some((p) => p.id === req.params.id)) throw new ProblemError('FENLIU_ERR_NOT_FOUND', `No platform ${req.params.id}`);
        const limit = req.query.limit ?? 50;
        const offset = Number(req.query.cursor ?? 0);
        const ids = await zByRank(rt.redis, each(k.bucketList, (b) => k.deadLetters(b, req.params.id)), offset, offset + limit - 1, true);
        const items = await getDeliveries(rt.redis, k, ids);
        return { items, nextCursor: ids.length === limit ? String(offset + limit) : null };
      },
    );

    app.post<{ Params: { id: string }; Body: { reason: string } }>(
      '/v1/platforms/:id/dead-letters/retry',
      { preValidation: app.requireScope('admin'), schema: { body: reasonBody } },
      async (req, reply) => {
        if (!rt.cfg.platforms.some((p) => p.id === req.params.id)) throw new ProblemError('FENLIU_ERR_NOT_FOUND', `No platform ${req.params.id}`);
        const ids = await zByRank(rt.redis, each(k.bucketList, (b) => k.deadLetters(b, req.params.id)), 0, Number.MAX_SAFE_INTEGER - 1);
        let retried = 0;
        for (const d of await getDeliveries(rt.redis, k, ids)) {
          if (d.state === 'failed' && (await retryDelivery(rt, d, req.principal!, req.body.reason, 'dead-letters.retry'))) retried++;
        }
        reply.code(202);
        return { retried };
      },
    );
  };
}

/** The platform's last failed attempt: one hash per key-layout bucket (written with the attempt), the newest of them. */
async function newestLastError(rt: Runtime, platformId: string): Promise<Record<string, string>> {
  const all = await Promise.all(rt.keys.bucketList.map((b) => rt.redis.hgetall(rt.keys.platformLastError(b, platformId))));
  return all.reduce((a, h) => (h.at && (!a.at || h.at > a.at) ? h : a), {} as Record<string, string>);
}
