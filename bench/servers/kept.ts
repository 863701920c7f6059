/**
 * Not a target baseline: the naive server (naive.ts) made to keep, plainly, the promises fenliu's
 * 202 makes, so the system row can say what those promises cost apart from how fenliu keeps them
 * (`npm run bench -- --only s --baselines kept`). Per alert, as fenliu's API:
 * - the source's key checked against its stored SHA-256, in constant time;
 * - the alert validated (the same Ajv schema);
 * - idempotency decided exactly: SET NX on (source, the source's alert id); a repeat answers 200;
 * - the alert kept for reads and retention, listed by time and by source, its intervention
 *   deadline set, its caller looked up and noted for repeat-call matching, and an
 *   `alert.received` audit event (the alert in it) appended to a stream that kept-worker.ts
 *   archives with a hash chain: one MULTI;
 * - its delivery queued with BullMQ (`queue.add`, the job kept after completion as the delivery's
 *   record), then 202;
 * - one access log line.
 * Redis persistence is the bench's (AOF, as fenliu's stack).
 * Two promises it keeps less well than fenliu, where a crash falls between two round trips:
 * - between the SET NX and the MULTI, a claim is left without a record, so the source's retry
 *   answers 200 for an alert never stored;
 * - between the MULTI and `queue.add`, the alert is kept but its delivery never queued, and the
 *   retry answers 200 too.
 * fenliu's ingest script claims and records in one step, and its deliveries come from the ingest
 * log it appends in that step. With KEPT_ATOMIC=1 (`--baselines kept-atomic`) the claim and the
 * writes are one script here too, which closes the first gap; the second stays (a BullMQ job is a
 * script of BullMQ's own). test/bench-kept.test.ts checks both ways.
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import Fastify from 'fastify';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { alertValidator } from '../../src/ingest/validate.js';
import { SOURCE_KEY } from '../lib.js';

const DAY = 86_400;
const ATOMIC = process.env.KEPT_ATOMIC === '1';
// KEPT_ATOMIC: the claim and the MULTI's writes in one step. Returns {1, repeat-of} or {0, the id kept}.
const ACCEPT = `
if not redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], 'NX') then return {0, redis.call('GET', KEYS[1])} end
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[5], ARGV[6])
redis.call('XADD', KEYS[6], '*', 'e', ARGV[7])
local repeatOf = redis.call('GET', KEYS[7])
redis.call('SET', KEYS[7], ARGV[1], 'EX', ARGV[8])
return {1, repeatOf}
`;
const validate = alertValidator();
const keyHash = createHash('sha256').update(SOURCE_KEY).digest();
const redis = new Redis(process.env.REDIS_URL!, { maxRetriesPerRequest: null });
// Defined once and sent by its SHA: the script's text does not travel with every request.
redis.defineCommand('keptAccept', { numberOfKeys: 7, lua: ACCEPT });
const accept = (keys: string[], args: (string | number)[]) => (redis as unknown as { keptAccept(...a: (string | number)[]): Promise<[number, string | null]> }).keptAccept(...keys, ...args);
const queue = new Queue('kept', { connection: redis, prefix: 'kept' });
await queue.waitUntilReady();
const app = Fastify({ logger: { level: 'info' }, disableRequestLogging: true });
app.addHook('onResponse', async (req, reply) => req.log.info({ method: req.method, url: req.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'access'));

type Alert = { source: { system: string; alertId: string }; caller?: { phone?: string }; location: { address: string } };

app.post('/v1/alerts', async (req, reply) => {
  const given = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
  if (!timingSafeEqual(createHash('sha256').update(given).digest(), keyHash)) return reply.code(401).send({ code: 'unauthorized' });
  if (!validate(req.body)) return reply.code(400).send({ errors: validate.errors });
  const alert = req.body as Alert;
  const id = randomUUID();
  const deliveryId = randomUUID();
  const now = Date.now();
  const idemKey = `kept:idem:${alert.source.system}:${alert.source.alertId}`;
  const record = JSON.stringify({ id, receivedAt: new Date(now).toISOString(), route: ['p-hook'], deliveries: [deliveryId], alert });
  const callerKey = `kept:repeat:${createHash('sha256').update(alert.caller?.phone ?? alert.location.address).digest('hex')}`;
  const event = JSON.stringify({ type: 'alert.received', at: new Date(now).toISOString(), alertId: id, data: { route: ['p-hook'], deliveries: [deliveryId], alert } });
  let repeatOf: string | null;
  if (ATOMIC) {
    const keys = [idemKey, `kept:alert:${id}`, 'kept:alerts:t', `kept:alerts:src:${alert.source.system}`, 'kept:sla:due', 'kept:audit', callerKey];
    const [stored, other] = await accept(keys, [id, 30 * DAY, record, now, now + 12 * 3600_000, deliveryId, event, DAY]);
    if (stored === 0) {
      reply.code(200);
      return { id: other, status: 'duplicate' };
    }
    repeatOf = other;
  } else {
    const prior = await redis.set(idemKey, id, 'EX', 30 * DAY, 'NX');
    if (prior === null) {
      reply.code(200);
      return { id: await redis.get(idemKey), status: 'duplicate' };
    }
    [, , , , , [, repeatOf]] = (await redis
      .multi()
      .set(`kept:alert:${id}`, record, 'EX', 30 * DAY)
      .zadd('kept:alerts:t', now, id)
      .zadd(`kept:alerts:src:${alert.source.system}`, now, id)
      .zadd('kept:sla:due', now + 12 * 3600_000, deliveryId)
      .xadd('kept:audit', '*', 'e', event)
      .getex(callerKey)
      .set(callerKey, id, 'EX', DAY)
      .exec())! as [unknown, unknown, unknown, unknown, unknown, [Error | null, string | null]];
  }
  await queue.add('deliver', { alertId: id, deliveryId, platform: 'p-hook', repeatOf: repeatOf ?? null, acceptedAt: now }, { jobId: deliveryId, removeOnComplete: { age: 30 * DAY }, attempts: 5, backoff: { type: 'exponential', delay: 1000 } });
  reply.code(202);
  return { id, status: 'queued', deliveries: [{ id: deliveryId, platform: 'p-hook', status: 'queued' }] };
});
const url = await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) });
process.stdout.write(`READY ${url}\n`);
process.on('SIGTERM', () => void app.close().then(() => queue.close()).then(() => process.exit(0)));
