import type { FastifyInstance } from 'fastify';
import { Job } from 'bullmq';
import { ProblemError } from '../errors.js';
import { transition } from '../lifecycle/transition.js';
import { DEFAULT_JOB_OPTIONS, jobPriority, type DeliveryJobData } from '../delivery/queues.js';
import { getAlertRecord, getDeliveries, parseDelivery, type DeliveryRecord } from '../store/records.js';
import type { Runtime } from '../runtime.js';
import type { Principal } from '../plugins/app/auth.js';
import { canRead } from './alerts.js';
import { addAudit } from '../audit/events.js';
import { operatorActionEvent, replayEvent } from '../audit/operator.js';
import type { DeliveryEngine } from '../delivery/engine.js';

const reasonBody = {
  type: 'object',
  required: ['reason'],
  additionalProperties: false,
  properties: { reason: { type: 'string', minLength: 1, maxLength: 1000 } },
} as const;

/**
 * Puts a failed delivery back in its queue: state failed → queued, dead letter removed, a new job
 * (a fresh job id, because the old job may still be kept by BullMQ), and an audit event naming
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
    set: { attempts: "0" },
    unset: ['lastError', 'failedAt'],
    audit: { alertId: d.alertId, platformId: d.platformId, actor: { kind: 'operator', id: actor.keyId, keyId: actor.keyId }, reason, data: { action: 'retry' } },
  });
  if (!t.ok) return false;
  await rt.audit(operatorActionEvent(actor, action, { alertId: d.alertId, deliveryId: d.id, platformId: d.platformId }, reason));
  const n = await rt.redis.hincrby(k.delivery(d.id), 'retries', 1);
  const queue = rt.queues.get(d.platformId);
  const data: DeliveryJobData = { alertId: d.alertId, deliveryId: d.id, platformId: d.platformId, kind: 'deliver' };
  // Before the job exists: a job that fails again at once must be able to dead-letter itself anew.
  await rt.redis.zrem(k.deadLetters(d.platformId), d.id);
  try {
    await queue.add('deliver', data, { ...DEFAULT_JOB_OPTIONS, priority: jobPriority(d.priority), jobId: `${d.id}.r${n}` });
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
    await rt.redis.zadd(k.deadLetters(d.platformId), Date.now(), d.id).catch(() => undefined);
    throw err;
  }
  return true;
}

export function deliveryRoutes(engine?: DeliveryEngine) {
  return async function routes(app: FastifyInstance) {
    const rt = app.fenliu;
    const k = rt.keys;

    app.get<{ Params: { id: string } }>('/v1/deliveries/:id', { preHandler: app.requireScope('alerts:read', 'audit:read') }, async (req) => {
      const d = parseDelivery(await rt.redis.hgetall(k.delivery(req.params.id)));
      const rec = d && (await getAlertRecord(rt.redis, k, d.alertId));
      if (!d || !rec || !canRead(req.principal, rec)) throw new ProblemError('FENLIU_ERR_NOT_FOUND', `No delivery ${req.params.id}`);
      const [attempts, history] = await Promise.all([rt.redis.lrange(k.attempts(d.id), 0, -1), rt.redis.lrange(k.history(d.id), 0, -1)]);
      return { ...d, attemptLog: attempts.map((a) => JSON.parse(a)), history: history.map((h) => JSON.parse(h)) };
    });

    app.post<{ Params: { id: string }; Body: { reason: string } }>(
      '/v1/deliveries/:id/retry',
      { preHandler: app.requireScope('admin'), schema: { body: reasonBody } },
      async (req, reply) => {
        const d = parseDelivery(await rt.redis.hgetall(k.delivery(req.params.id)));
        if (!d) throw new ProblemError('FENLIU_ERR_NOT_FOUND', `No delivery ${req.params.id}`);
        if (d.state !== 'failed') throw new ProblemError('FENLIU_ERR_CONFLICT', `Delivery ${d.id} is ${d.state}; only failed deliveries can be retried`);
        if (!(await retryDelivery(rt, d, req.principal!, req.body.reason))) throw new ProblemError('FENLIU_ERR_CONFLICT', `Delivery ${d.id} changed state meanwhile`);
        reply.code(202);
        return parseDelivery(await rt.redis.hgetall(k.delivery(d.id)));
      },
    );

    app.post<{ Params: { id: string }; Body: { reason: string; replayId?: string } }>(
      '/v1/deliveries/:id/redeliver',
      { preHandler: app.requireScope('admin'), schema: { body: { ...reasonBody, properties: { ...reasonBody.properties, replayId: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } } } } },
      async (req, reply) => {
        const d = parseDelivery(await rt.redis.hgetall(k.delivery(req.params.id)));
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
        await rt.queues.get(d.platformId).add('redeliver', { alertId: d.alertId, deliveryId: d.id, platformId: d.platformId, kind: 'redeliver', reason: req.body.reason }, { ...DEFAULT_JOB_OPTIONS, priority: jobPriority(d.priority), jobId: `${d.id}.redeliver.${n}` });
        reply.code(202);
        return d;
      },
    );

    app.get('/v1/platforms', { preHandler: app.requireScope('alerts:read', 'audit:read', 'admin') }, async () => {
      const items = await Promise.all(
        rt.cfg.platforms.map(async (p) => {
          const queue = rt.queues.get(p.id);
          const [counts, dead, circuit] = await Promise.all([
            queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'failed'),
            rt.redis.zcard(k.deadLetters(p.id)),
            engine?.circuits.get(p.id)?.state() ?? circuitState(rt, p.id),
          ]);
          const last = await rt.redis.zrevrange(k.deadLetters(p.id), 0, 0);
          const lastDead = last[0] ? parseDelivery(await rt.redis.hgetall(k.delivery(last[0]))) : undefined;
          return { id: p.id, name: p.name, adapter: p.adapter, circuit: circuit.state, queue: counts, deadLetters: dead, lastError: lastDead?.lastError };
        }),
      );
      return { items };
    });

    app.get<{ Params: { id: string }; Querystring: { cursor?: string; limit?: number } }>(
      '/v1/platforms/:id/dead-letters',
      {
        preHandler: app.requireScope('admin', 'audit:read'),
        schema: { querystring: { type: 'object', properties: { cursor: { type: 'string', pattern: '^[0-9]+$' }, limit: { type: 'integer', minimum: 1, maximum: 200, default: 50 } } } },
      },
      async (req) => {
        if (!rt.cfg.platforms.some((p) => p.id === req.params.id)) throw new ProblemError('FENLIU_ERR_NOT_FOUND', `No platform ${req.params.id}`);
        const limit = req.query.limit ?? 50;
        const offset = Number(req.query.cursor ?? 0);
        const ids = await rt.redis.zrevrange(k.deadLetters(req.params.id), offset, offset + limit - 1);
        const items = await getDeliveries(rt.redis, k, ids);
        return { items, nextCursor: ids.length === limit ? String(offset + limit) : null };
      },
    );

    app.post<{ Params: { id: string }; Body: { reason: string } }>(
      '/v1/platforms/:id/dead-letters/retry',
      { preHandler: app.requireScope('admin'), schema: { body: reasonBody } },
      async (req, reply) => {
        if (!rt.cfg.platforms.some((p) => p.id === req.params.id)) throw new ProblemError('FENLIU_ERR_NOT_FOUND', `No platform ${req.params.id}`);
        const ids = await rt.redis.zrange(k.deadLetters(req.params.id), '0', '-1');
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

/** Circuit state read straight from Redis, for API-only processes that run no engine. */
async function circuitState(rt: Runtime, platformId: string): Promise<{ state: string }> {
  const openedAt = await rt.redis.hget(`${rt.cfg.redis.prefix}:circuit:${platformId}`, 'openedAt');
  if (!openedAt) return { state: 'closed' };
  const p = rt.cfg.platforms.find((x) => x.id === platformId) as { circuitBreaker?: { cooldownMs?: number } } | undefined;
  const cooldown = p?.circuitBreaker?.cooldownMs ?? 30_000;
  return { state: Date.now() < Number(openedAt) + cooldown ? 'open' : 'half-open' };
}

export type { Job };
