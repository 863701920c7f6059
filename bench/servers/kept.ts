/**
 * Not a target baseline: the naive server (naive.ts) made to keep, plainly, the promises fenliu's
 * 202 makes, so the system row can say what those promises cost apart from how fenliu keeps them
 * (`npm run bench -- --only s --baselines kept`). Per alert, as fenliu's API:
 * - the source's key checked against its stored SHA-256, in constant time;
 * - the alert validated (the same Ajv schema);
 * - idempotency decided exactly: SET NX on (source, the source's alert id) holding the id and the
 *   SHA-256 of the alert's canonical JSON; a copy answers 200, another alert under the same id 409;
 * - repeat calls: two keyed hashes (place + category, phone + category family: fenliu's
 *   `hmacSha256` over the same normalised text) claimed with SET NX PX GET for the window; a held
 *   key links the alert to that case (200, stored, no delivery: fenliu's urge is not sent here);
 * - the alert kept for reads and retention, listed by time and by source; its delivery written as
 *   a hash (state `queued`, its three deadlines) with a history entry and its SLA timer; an
 *   `alert.received` audit event (the alert in it) appended to a stream that kept-worker.ts
 *   archives with a hash chain: one MULTI;
 * - its delivery queued with BullMQ (`queue.add`; the finished job removed, as fenliu removes its
 *   work item: the delivery hash is the record), then 202;
 * - a rate limit per key, counted in Redis (@fastify/rate-limit's Redis store: fenliu's counts once
 *   per key per event-loop turn), and a metrics counter;
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
import rateLimit from '@fastify/rate-limit';
import { Counter } from 'prom-client';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { alertValidator, canonicalJson } from '../../src/ingest/validate.js';
import { hmacSha256, repeatTexts } from '../../src/lifecycle/repeat.js';
import { DEFAULT_RETRY, maxAttempts } from '../../src/delivery/policy.js';
import { SOURCE_KEY, keptMeta } from '../lib.js';

const DAY = 86_400;
/** fenliu's retry horizon: the first attempt and one per delay of its default schedule (kept-worker.ts backs off along it). */
const ATTEMPTS = maxAttempts(DEFAULT_RETRY);
/** fenliu's defaults: repeat window 72 h; deadlines to acknowledge 30 min, to intervene 12 h, to resolve 3 days. */
const WINDOW_MS = 72 * 3600_000;
const ACK_MS = 30 * 60_000;
const INTERVENE_MS = 12 * 3600_000;
const RESOLVE_MS = 3 * DAY * 1000;
const ATOMIC = process.env.KEPT_ATOMIC === '1';
// KEPT_ATOMIC: the claim and the MULTI's writes in one step. Returns {1, repeat-of or false} or {0, the claim kept}.
// KEYS: idem, alert, by time, by source, SLA timers, audit, place, phone ('' none), delivery, history.
// ARGV: claim, ttl, record, now, ackBy ms, deliveryId, event, window ms, delivery hash fields (JSON array), history entry, alert id, event metadata.
const ACCEPT = `
if not redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], 'NX') then return {0, redis.call('GET', KEYS[1])} end
local id = ARGV[11]
local repeatOf = redis.call('SET', KEYS[7], id, 'NX', 'PX', ARGV[8], 'GET')
if not repeatOf and KEYS[8] ~= '' then repeatOf = redis.call('SET', KEYS[8], id, 'NX', 'PX', ARGV[8], 'GET') end
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], id)
redis.call('ZADD', KEYS[4], ARGV[4], id)
if not repeatOf then
  redis.call('HSET', KEYS[9], unpack(cjson.decode(ARGV[9])))
  redis.call('RPUSH', KEYS[10], ARGV[10])
  redis.call('ZADD', KEYS[5], ARGV[5], ARGV[6])
end
redis.call('XADD', KEYS[6], '*', 'e', ARGV[7], 'm', ARGV[12])
return {1, repeatOf}
`;
const validate = alertValidator();
const keyHash = createHash('sha256').update(SOURCE_KEY).digest();
const mac = hmacSha256(createHash('sha256').update('kept-repeat-secret').digest('hex'));
const redis = new Redis(process.env.REDIS_URL!, { maxRetriesPerRequest: null });
// Defined once and sent by its SHA: the script's text does not travel with every request.
redis.defineCommand('keptAccept', { numberOfKeys: 10, lua: ACCEPT });
const accept = (keys: string[], args: (string | number)[]) => (redis as unknown as { keptAccept(...a: (string | number)[]): Promise<[number, string | null]> }).keptAccept(...keys, ...args);
const queue = new Queue('kept', { connection: redis, prefix: 'kept' });
await queue.waitUntilReady();
const app = Fastify({ logger: { level: 'info' }, disableRequestLogging: true });
// A budget per key, counted in Redis (shared by all API processes), as fenliu's; never reached here.
await app.register(rateLimit, {
  max: 1_000_000,
  timeWindow: 1000,
  redis,
  keyGenerator: (req) => `key:${createHash('sha256').update(String(req.headers.authorization)).digest('hex').slice(0, 16)}`,
});
const accepted = new Counter({ name: 'kept_alerts_accepted_total', help: 'alerts accepted' });
app.addHook('onResponse', async (req, reply) => req.log.info({ method: req.method, url: req.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'access'));

type Alert = Parameters<typeof repeatTexts>[0];

/** The alert's repeat-call keys: fenliu's texts (RepeatMatcher.keysFor), under this pair's own secret and prefix. */
function repeatKeys(alert: Alert): { place: string; phone: string } {
  const t = repeatTexts(alert, alert.source.system);
  return { place: `kept:repeat:place:${mac(t.place).slice(0, 32)}`, phone: t.phone ? `kept:repeat:phone:${mac(t.phone).slice(0, 32)}` : '' };
}

app.post('/v1/alerts', async (req, reply) => {
  const given = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
  if (!timingSafeEqual(createHash('sha256').update(given).digest(), keyHash)) return reply.code(401).send({ code: 'unauthorized' });
  if (!validate(req.body)) return reply.code(400).send({ errors: validate.errors });
  const alert = req.body as Alert;
  const id = randomUUID();
  const deliveryId = randomUUID();
  const now = Date.now();
  const at = new Date(now).toISOString();
  const bodyHash = createHash('sha256').update(canonicalJson(alert)).digest('hex');
  const claim = `${id} ${bodyHash}`;
  const idemKey = `kept:idem:${alert.source.system}:${alert.source.alertId}`;
  const record = (repeatOf: string | null) => JSON.stringify({ id, receivedAt: at, bodyHash, route: ['p-hook'], deliveries: repeatOf ? [] : [deliveryId], ...(repeatOf ? { repeatOf } : {}), alert });
  const rk = repeatKeys(alert);
  const event = JSON.stringify({ type: 'alert.received', at, alertId: id, sourceId: alert.source.system, data: { route: ['p-hook'], deliveries: [deliveryId], alert } });
  // What the archiver's index needs, beside the event: it does not parse the event for it.
  const meta = keptMeta({ type: 'alert.received', at, alertId: id, sourceId: alert.source.system });
  const deliveryFields = ['state', 'queued', 'alertId', id, 'platform', 'p-hook', 'createdAt', at, 'updatedAt', at, 'ackBy', new Date(now + ACK_MS).toISOString(), 'interveneBy', new Date(now + INTERVENE_MS).toISOString(), 'resolveBy', new Date(now + RESOLVE_MS).toISOString()];
  const history = JSON.stringify({ at, to: 'queued', source: 'ingest' });
  const deliveryKey = `kept:delivery:${deliveryId}`;
  const historyKey = `kept:history:${deliveryId}`;
  const duplicate = (held: string) => {
    const [heldId, heldHash] = held.split(' ');
    if (heldHash !== bodyHash) return reply.code(409).send({ code: 'idempotency-conflict', existingId: heldId });
    return reply.code(200).send({ id: heldId, status: 'duplicate' });
  };
  let repeatOf: string | null;
  if (ATOMIC) {
    const keys = [idemKey, `kept:alert:${id}`, 'kept:alerts:t', `kept:alerts:src:${alert.source.system}`, 'kept:sla:due', 'kept:audit', rk.place, rk.phone, deliveryKey, historyKey];
    // The record is written before the repeat decision is known: a repeat's record names its case (below).
    const [stored, other] = await accept(keys, [claim, 30 * DAY, record(null), now, now + ACK_MS, deliveryId, event, WINDOW_MS, JSON.stringify(deliveryFields), history, id, meta]);
    if (stored === 0) return duplicate(other!);
    repeatOf = other || null;
    if (repeatOf) await redis.set(`kept:alert:${id}`, record(repeatOf), 'KEEPTTL');
  } else {
    if ((await redis.set(idemKey, claim, 'EX', 30 * DAY, 'NX')) === null) return duplicate((await redis.get(idemKey))!);
    const claims = redis.multi().set(rk.place, id, 'PX', WINDOW_MS, 'NX', 'GET');
    if (rk.phone) claims.set(rk.phone, id, 'PX', WINDOW_MS, 'NX', 'GET');
    const held = ((await claims.exec()) ?? []).map(([, v]) => v as string | null);
    repeatOf = held.find((v) => v) ?? null;
    const m = redis
      .multi()
      .set(`kept:alert:${id}`, record(repeatOf), 'EX', 30 * DAY)
      .zadd('kept:alerts:t', now, id)
      .zadd(`kept:alerts:src:${alert.source.system}`, now, id);
    if (!repeatOf) m.hset(deliveryKey, ...deliveryFields).rpush(historyKey, history).zadd('kept:sla:due', now + ACK_MS, deliveryId);
    await m.xadd('kept:audit', '*', 'e', event, 'm', meta).exec();
  }
  if (repeatOf) return reply.code(200).send({ id, status: 'linked', repeatOf });
  await queue.add('deliver', { alertId: id, deliveryId, platform: 'p-hook', acceptedAt: now }, { jobId: deliveryId, removeOnComplete: true, attempts: ATTEMPTS, backoff: { type: 'fenliu' } });
  accepted.inc();
  reply.code(202);
  return { id, status: 'queued', deliveries: [{ id: deliveryId, platform: 'p-hook', status: 'queued' }] };
});
const url = await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) });
process.stdout.write(`READY ${url}\n`);
process.on('SIGTERM', () => void app.close().then(() => queue.close()).then(() => process.exit(0)));
