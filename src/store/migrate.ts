import { Queue, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { enqueue, type DeliveryJobData } from '../delivery/work.js';
import { auditHeadKey, auditStreamKey } from '../audit/events.js';
import { auditCheckpointKey } from '../audit/checkpoint-log.js';
import { bucketOf, deliveryQueueName, keys, type Keys } from './keys.js';
import type { AlertRecord } from './records.js';

/** Redis key holding the key-layout version (absent: the single-node layout before buckets). */
export const layoutKey = (prefix: string) => `${prefix}:layout`;
export const LAYOUT_VERSION = '2';

/**
 * Converts data written in the layout before hash-tag buckets (one Redis, no `{…}` in key names)
 * to the bucket layout of src/store/keys.ts, at start: keys are renamed (one Redis: no slot
 * limits), index entries are re-added to their bucket with their scores, jobs waiting in the old
 * queues are put in the delivery work sets (same job ids, src/delivery/work.ts) and the old queues removed. Runs once (a
 * marker key, and a lock against a second process starting at the same time); every step is
 * idempotent, so a conversion cut short is finished by the next start. Stop every process of the
 * old version first. Returns the number of alerts converted.
 */
export async function migrateLayout(redis: Redis, prefix: string, platformIds: string[]): Promise<number> {
  if ((await redis.get(layoutKey(prefix))) === LAYOUT_VERSION) return 0;
  const old = `${prefix}:alerts`;
  // One key per EXISTS: they are in different slots on Redis Cluster.
  const found = await Promise.all([old, `${prefix}:audit`, `${prefix}:q:lifecycle:meta`].map((key) => redis.exists(key)));
  if (!found.some((n) => n > 0)) {
    await redis.set(layoutKey(prefix), LAYOUT_VERSION);
    return 0;
  }
  const lock = `${prefix}:layout:migrating`;
  if ((await redis.set(lock, String(process.pid), 'PX', 600_000, 'NX')) !== 'OK') throw new Error('another process is converting the key layout; start again when it is done');
  try {
    const k = keys(prefix);
    const moved = await moveAlerts(redis, k, prefix);
    await moveGlobals(redis, k, prefix, platformIds);
    await moveQueues(redis, k, prefix, platformIds);
    await redis.set(layoutKey(prefix), LAYOUT_VERSION);
    return moved;
  } finally {
    await redis.del(lock);
  }
}

/** RENAME that tolerates a source already moved (a conversion resumed). */
async function mv(redis: Redis, from: string, to: string): Promise<void> {
  if (from !== to && (await redis.exists(from))) await redis.rename(from, to);
}

async function moveAlerts(redis: Redis, k: Keys, prefix: string): Promise<number> {
  const old = `${prefix}:alerts`;
  const o = (s: string) => `${prefix}:${s}`;
  let n = 0;
  for (;;) {
    const page = await redis.zrange(old, '0', '499', 'WITHSCORES');
    if (!page.length) return n;
    for (let i = 0; i < page.length; i += 2) {
      const id = page[i];
      const score = page[i + 1];
      const b = bucketOf(id);
      const raw = (await redis.get(o(`alert:${id}`))) ?? (await redis.get(k.alert(id)));
      const rec = raw ? (JSON.parse(raw) as AlertRecord) : undefined;
      for (const s of ['', ':dlv', ':platforms', ':aux', ':versions', ':repeats']) await mv(redis, o(`alert:${id}${s}`), `${k.alert(id)}${s}`);
      if (rec) {
        await redis.zadd(k.alertsBySource(b, rec.sourceId), score, id);
        await redis.zrem(o(`alerts:src:${rec.sourceId}`), id);
        await mv(redis, o(`idem:${rec.sourceId}:${rec.idempotencyKey}`), k.idem(rec.sourceId, rec.idempotencyKey));
        const later = await redis.lrange(k.alertDeliveries(id), 0, -1);
        for (const d of [...rec.deliveryIds, ...later]) {
          await mv(redis, o(`dlv:${d}`), k.delivery(d));
          await mv(redis, o(`dlv:${d}:history`), k.history(d));
          await mv(redis, o(`dlv:${d}:attempts`), k.attempts(d));
          const platformId = await redis.hget(k.delivery(d), 'platformId');
          const pairs: [string, string][] = [[o('sla:due'), k.slaDue(b)], [o('overdue'), k.overdue(b)]];
          if (platformId) pairs.push([o(`flow:delivered:${platformId}`), k.flowDelivered(b, platformId)], [o(`open:${platformId}`), k.open(b, platformId)], [o(`dead:${platformId}`), k.deadLetters(b, platformId)]);
          for (const [from, to] of pairs) {
            const sc = await redis.zscore(from, d);
            if (sc !== null) await redis.multi().zadd(to, sc, d).zrem(from, d).exec();
          }
        }
      }
      await redis.multi().zadd(k.alerts(b), score, id).zrem(old, id).exec();
      n++;
    }
  }
}

async function moveGlobals(redis: Redis, k: Keys, prefix: string, platformIds: string[]): Promise<void> {
  const o = (s: string) => `${prefix}:${s}`;
  // Remote tickets: each entry goes to the bucket of the delivery it names.
  for (const p of platformIds) {
    const all = await redis.hgetall(o(`ticket:${p}`));
    for (const [ticket, d] of Object.entries(all)) await redis.hset(k.ticket(bucketOf(d), p), ticket, d);
    await redis.del(o(`ticket:${p}`));
    // The last failed attempt: one hash per bucket now; the platforms view reads the newest.
    await mv(redis, o(`platform:${p}:lasterror`), k.platformLastError(0, p));
  }
  // Counters: summed over buckets when read, so they may all start in bucket 0.
  const stats = await redis.hgetall(o('stats'));
  for (const [f, v] of Object.entries(stats)) await redis.hincrby(k.stats(0), f, Number(v));
  await redis.del(o('stats'));
  await mv(redis, o('refusals'), k.refusals);
  for (const kind of ['phone', 'place']) {
    let cursor = '0';
    do {
      const [next, found] = await redis.scan(cursor, 'MATCH', o(`repeat:${kind}:*`), 'COUNT', 500);
      cursor = next;
      for (const key of found) {
        const hash = key.slice(o(`repeat:${kind}:`).length);
        await mv(redis, key, kind === 'phone' ? k.repeatPhone(hash) : k.repeatPlace(hash));
      }
    } while (cursor !== '0');
  }
  // The audit stream keeps its entries and the archiver its anchor (stream ids do not change).
  if (!(await redis.exists(auditStreamKey(prefix)))) await mv(redis, o('audit'), auditStreamKey(prefix));
  await mv(redis, o('audit:head'), auditHeadKey(prefix));
  await mv(redis, o('audit:checkpoint'), auditCheckpointKey(prefix));
  await redis.del(o('audit:lock'));
}

async function moveQueues(redis: Redis, k: Keys, prefix: string, platformIds: string[]): Promise<void> {
  for (const p of platformIds) {
    const oldQ = new Queue(deliveryQueueName(p), { connection: redis, prefix: `${prefix}:q` });
    try {
      await moveJobs(redis, k, p, oldQ);
      await oldQ.obliterate({ force: true });
    } finally {
      await oldQ.close();
    }
  }
  // The lifecycle queue holds only schedulers and timers the workers set up again at start.
  const oldLc = new Queue('lifecycle', { connection: redis, prefix: `${prefix}:q` });
  await oldLc.obliterate({ force: true }).finally(() => oldLc.close());
}

/** States a BullMQ delivery job may wait in (`waiting` includes a paused queue's), or run in: an active job is sent again (at least once). */
const JOB_STATES = ['waiting', 'prioritized', 'delayed', 'active', 'waiting-children'] as const;

/** Puts a BullMQ queue's pending jobs in the work sets: delay → due time, priority 1 → urgent, same job id. */
async function moveJobs(redis: Redis, k: Keys, platformId: string, q: Queue): Promise<number> {
  const jobs = (await q.getJobs([...JOB_STATES], 0, -1)).filter(Boolean) as Job<DeliveryJobData>[];
  let n = 0;
  for (const j of jobs) {
    const data = { ...j.data, platformId };
    if (!data.deliveryId) continue;
    const id = String(j.id);
    // Every fenliu job id starts with its delivery id; one that does not (hand-made) gets one that does.
    const jobId = id.startsWith(data.deliveryId) && bucketOf(id) === bucketOf(data.deliveryId) ? id : `${data.deliveryId}.m${id}`;
    await enqueue(redis, k, { jobId, data, urgent: (j.priority || j.opts.priority) === 1, dueMs: j.timestamp + (j.delay ?? 0) });
    n++;
  }
  return n;
}

/**
 * Whether a BullMQ worker serves the queue now. Its connections are named, so CLIENT LIST shows
 * them. Where Redis refuses CLIENT LIST (managed services such as GCP Memorystore; BullMQ then
 * answers with a placeholder), the sign is the queue's `stalled-check` key, which every running
 * worker sets again each `stalledInterval` (default 30 s) and which lapses as long after its
 * last: a queue whose worker stopped is moved by a later sweep.
 */
async function servedByWorker(redis: Redis, q: Queue, base: string): Promise<boolean> {
  const workers = await q.getWorkers();
  const listed = workers.filter((w) => w.name && !/does not support client list/.test(w.name));
  if (listed.length) return true;
  if (listed.length === workers.length) return false;
  return (await redis.exists(`${base}:stalled-check`)) === 1;
}

/**
 * From the BullMQ delivery queues to fenliu's work sets (src/delivery/work.ts), at a worker's
 * start and in every retention sweep (src/lifecycle/worker.ts): the jobs still pending in a
 * platform's old queue are put in its work sets, then the old queue is removed; each delivery an
 * outbox still lists (a dispatcher died before adding its job) gets its job if it is still
 * queued, and the outboxes go. Idempotent (enqueue is, by job id); a platform without an old
 * queue costs one EXISTS; a queue a worker of the earlier version still serves is left to it.
 * Returns the jobs moved.
 */
export async function migrateDeliveryQueues(redis: Redis, k: Keys, platformIds: string[]): Promise<number> {
  let moved = 0;
  for (const p of platformIds) {
    const prefix = k.queuePrefixOf(p);
    const base = `${prefix}:${deliveryQueueName(p)}`;
    // One call: all of a queue's keys share its hash tag.
    if (!(await redis.exists(`${base}:meta`, `${base}:id`, `${base}:wait`, `${base}:prioritized`, `${base}:delayed`, `${base}:active`, `${base}:paused`))) continue;
    const q = new Queue(deliveryQueueName(p), { connection: redis, prefix });
    q.on('error', () => undefined);
    try {
      // A worker of the earlier version still serves this queue (a rolling upgrade): its jobs,
      // the one it is sending included, stay with it; a later sweep moves what is left once it is
      // gone.
      if (await servedByWorker(redis, q, base)) continue;
      moved += await moveJobs(redis, k, p, q);
      await q.obliterate({ force: true });
    } finally {
      await q.close();
    }
  }
  for (const b of k.bucketList) {
    for (;;) {
      const ids = await redis.zrange(k.outbox(b), '0', '499');
      if (!ids.length) break;
      for (const id of ids) {
        const [platformId, alertId, priority, state] = await redis.hmget(k.delivery(id), 'platformId', 'alertId', 'priority', 'state');
        // A platform this process does not have keeps its job in its work set for one that does.
        if (platformId && alertId && state === 'queued') {
          if (await enqueue(redis, k, { jobId: id, data: { alertId, deliveryId: id, platformId, kind: 'deliver' }, urgent: priority === 'urgent' })) moved++;
        }
      }
      await redis.zrem(k.outbox(b), ...ids);
    }
  }
  return moved;
}
