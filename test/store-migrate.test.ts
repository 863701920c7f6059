/**
 * Conversion at start from the layout before hash-tag buckets: data written as the previous
 * version wrote it (one Redis, no `{…}` in key names) is found in the bucket layout afterwards —
 * records, idempotency claim, indexes with their scores, remote tickets, counters, repeat keys,
 * the audit stream and its anchor, and a job waiting in the old queue — and a second start
 * changes nothing. And the step from the BullMQ delivery queues to fenliu's work sets, with
 * jobs written by BullMQ itself, and outbox leftovers.
 */
import t from 'tap';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { useRedis } from './helpers/redis.js';
import { auditHeadKey, auditStreamKey } from '../src/audit/events.js';
import { bucketOf, deliveryQueueName, keys } from '../src/store/keys.js';
import { layoutKey, migrateDeliveryQueues, migrateLayout } from '../src/store/migrate.js';
import { listJobs } from '../src/delivery/work.js';
import { auditCheckpointKey } from '../src/audit/checkpoint-log.js';
import { getAlertView } from '../src/store/records.js';
import { until } from './helpers/engine.js';

t.test('old single-node data is converted to the bucket layout at start, once', async (t) => {
  const redis = await useRedis(t);
  const r = new Redis(redis.url);
  t.teardown(() => r.disconnect());
  const P = 'old';
  const o = (s: string) => `${P}:${s}`;
  const id = 'alt_0000000000abcdefghjkmnpqrs';
  const d = `dlv_${id.slice(4)}.p1`;
  const rec = { id, receivedAt: '2026-11-29T08:00:00.000Z', sourceId: 's1', idempotencyKey: 'K-1', bodyHash: 'h', alert: { source: { system: 's1', alertId: 'K-1' } }, route: { ruleId: 'default', targets: ['p1'], fallback: [] }, deliveryIds: [d] };
  const at = Date.parse(rec.receivedAt);
  // As the previous version left it.
  await r.set(o(`alert:${id}`), JSON.stringify(rec));
  await r.set(o('idem:s1:K-1'), `${id} h`);
  await r.zadd(o('alerts'), at, id);
  await r.zadd(o('alerts:src:s1'), at, id);
  await r.hset(o(`dlv:${d}`), 'id', d, 'alertId', id, 'platformId', 'p1', 'state', 'delivered', 'priority', 'normal', 'createdAt', rec.receivedAt, 'updatedAt', rec.receivedAt, 'attempts', '1', 'remoteTicketId', 'T-9');
  await r.rpush(o(`dlv:${d}:history`), JSON.stringify({ to: 'queued' }), JSON.stringify({ to: 'delivered' }));
  await r.rpush(o(`dlv:${d}:attempts`), JSON.stringify({ n: 1 }));
  await r.zadd(o('sla:due'), at + 3_600_000, d);
  await r.zadd(o('open:p1'), at + 5, d);
  await r.zadd(o('flow:delivered:p1'), at + 5, d);
  await r.hset(o('ticket:p1'), 'T-9', d);
  await r.hset(o('stats'), 'repeats', '3');
  await r.set(o('repeat:place:abc'), id);
  await r.xadd(o('audit'), '*', 'e', JSON.stringify({ type: 'alert.received', at: rec.receivedAt, alertId: id }));
  await r.set(o('audit:head'), JSON.stringify({ seq: 0 }));
  await r.hset(o('platform:p1:lasterror'), 'at', rec.receivedAt, 'deliveryId', d);
  await r.set(o('audit:checkpoint'), JSON.stringify({ size: 1 }));
  const oldQ = new Queue(deliveryQueueName('p1'), { connection: r, prefix: o('q') });
  await oldQ.add('urge', { alertId: id, deliveryId: d, platformId: 'p1', kind: 'urge' }, { jobId: `${d}.urge.x` });
  await oldQ.close();

  t.equal(await migrateLayout(r, P, ['p1']), 1, 'one alert converted');
  const k = keys(P);
  const b = bucketOf(id);
  const view = await getAlertView(r, k, id);
  t.match(view, { id, deliveries: [{ id: d, state: 'delivered', remoteTicketId: 'T-9' }] }, 'the alert and its delivery are read from the new keys');
  t.equal(await r.get(k.idem('s1', 'K-1')), `${id} h`, 'idempotency claim');
  t.equal(Number(await r.zscore(k.alerts(b), id)), at, 'time index, same score');
  t.equal(Number(await r.zscore(k.alertsBySource(b, 's1'), id)), at, 'source index');
  t.equal(Number(await r.zscore(k.slaDue(b), d)), at + 3_600_000, 'SLA timer');
  t.equal(Number(await r.zscore(k.open(b, 'p1'), d)), at + 5, 'poll index');
  t.equal(Number(await r.zscore(k.flowDelivered(b, 'p1'), d)), at + 5, 'flow index');
  t.equal(await r.hget(k.ticket(b, 'p1'), 'T-9'), d, 'remote ticket');
  t.equal(await r.llen(k.history(d)), 2, 'history');
  t.equal(await r.llen(k.attempts(d)), 1, 'attempt log');
  t.equal(await r.hget(k.stats(0), 'repeats'), '3', 'counters');
  t.equal(await r.get(k.repeatPlace('abc')), id, 'repeat-call key');
  t.equal(await r.xlen(auditStreamKey(P)), 1, 'audit stream');
  t.ok(await r.exists(auditHeadKey(P)), 'archiver anchor');
  t.equal(await r.hget(k.platformLastError(0, 'p1'), 'deliveryId'), d, 'last failed attempt');
  t.ok(await r.exists(auditCheckpointKey(P)), 'published checkpoint');
  t.match(
    (await listJobs(r, k, 'p1')).find((j) => j.id === `${d}.urge.x`),
    { name: 'urge', data: { kind: 'urge', deliveryId: d } },
    'the waiting job is in the work sets',
  );
  const leftovers = (await r.keys('*')).filter((key) => key.startsWith(`${P}:`) && !key.includes('{'));
  t.same(leftovers.sort(), [layoutKey(P)], 'nothing left under the old names');
  t.equal(await r.get(layoutKey(P)), '2');
  t.equal(await migrateLayout(r, P, ['p1']), 0, 'a second start converts nothing');
});

t.test('BullMQ delivery jobs and outbox leftovers move to the work sets, once', async (t) => {
  const redis = await useRedis(t);
  const r = new Redis(redis.url, { maxRetriesPerRequest: null });
  t.teardown(() => r.disconnect());
  const P = 'bq';
  const k = keys(P);
  const ids = ['alt_0000000000000000000000001', 'alt_0000000000000000000000002', 'alt_0000000000000000000000003', 'alt_0000000000000000000000004'];
  const d = ids.map((id) => `dlv_${id.slice(4)}.p1`);
  const q = new Queue(deliveryQueueName('p1'), { connection: r, prefix: k.queuePrefixOf('p1') });
  const data = (i: number, kind = 'deliver') => ({ alertId: ids[i], deliveryId: d[i], platformId: 'p1', kind });
  const before = Date.now();
  await q.add('deliver', data(0), { jobId: d[0], priority: 10 });
  await q.add('deliver', data(1), { jobId: d[1], priority: 1 });
  await q.add('deliver', data(2), { jobId: `${d[2]}.r1`, priority: 10, delay: 60_000 });
  await q.add('cancel', { ...data(0, 'cancel'), reason: 'withdrawn' }, { jobId: `${d[0]}.cancel`, priority: 1 });
  await q.close();
  // A delivery whose job a dispatcher never added, and one whose state moved on.
  await r.hset(k.delivery(d[3]), 'id', d[3], 'alertId', ids[3], 'platformId', 'p1', 'state', 'queued', 'priority', 'urgent');
  await r.zadd(k.outbox(bucketOf(d[3])), 1, d[3]);
  await r.hset(k.delivery(d[2]), 'id', d[2], 'alertId', ids[2], 'platformId', 'p1', 'state', 'delivered');
  await r.zadd(k.outbox(bucketOf(d[2])), 1, d[2]);

  t.equal(await migrateDeliveryQueues(r, k, ['p1']), 5, 'four jobs and one outbox entry');
  const jobs = new Map((await listJobs(r, k, 'p1')).map((j) => [j.id, j]));
  t.match(jobs.get(d[0]), { name: 'deliver', priority: 10, data: data(0) }, 'a normal first delivery');
  t.match(jobs.get(d[1]), { priority: 1 }, 'an urgent one');
  t.ok(jobs.get(`${d[2]}.r1`)!.dueMs >= before + 60_000, 'a delayed retry keeps its due time');
  t.match(jobs.get(`${d[0]}.cancel`), { name: 'cancel', priority: 1, data: { kind: 'cancel', reason: 'withdrawn' } }, 'a follow-up with its data');
  t.match(jobs.get(d[3]), { priority: 1, data: { deliveryId: d[3], alertId: ids[3] } }, 'the outbox leftover still queued');
  t.equal(jobs.size, 5, 'nothing for the delivery that moved on');
  t.equal((await r.keys(`*${deliveryQueueName('p1')}*`)).length, 0, 'the old queue is gone');
  t.equal((await r.keys(`${P}:*outbox*`)).length, 0, 'and the outboxes');
  t.equal(await migrateDeliveryQueues(r, k, ['p1']), 0, 'a second start moves nothing');
});

t.test('a BullMQ queue an earlier version still serves is left to it, and moved once its worker is gone', async (t) => {
  const redis = await useRedis(t);
  const r = new Redis(redis.url, { maxRetriesPerRequest: null });
  t.teardown(() => r.disconnect());
  const k = keys('bw');
  const prefix = k.queuePrefixOf('p1');
  const q = new Queue(deliveryQueueName('p1'), { connection: r, prefix });
  const id = 'dlv_0000000000000000000000009.p1';
  await q.add('deliver', { alertId: 'alt_0000000000000000000000009', deliveryId: id, platformId: 'p1', kind: 'deliver' }, { jobId: id, delay: 60_000 });
  await q.close();
  // The earlier version's worker (its job is delayed, so it stays in the queue meanwhile).
  const old = new Worker(deliveryQueueName('p1'), async () => undefined, { connection: r, prefix });
  await old.waitUntilReady();
  t.equal(await migrateDeliveryQueues(r, k, ['p1']), 0, 'nothing moved while a worker serves the queue');
  t.equal((await listJobs(r, k, 'p1')).length, 0, 'no job in the work sets');
  t.ok(await r.exists(`${prefix}:${deliveryQueueName('p1')}:delayed`), 'the old queue is still there');
  await old.close();
  t.equal(await migrateDeliveryQueues(r, k, ['p1']), 1, 'moved once the worker is gone');
  t.same((await listJobs(r, k, 'p1')).map((j) => j.id), [id]);
});

// Managed services (GCP Memorystore among them) refuse CLIENT LIST, so the earlier version's
// workers cannot be listed: its stalled-jobs check, which each worker repeats while it runs, is
// then the sign that one serves the queue.
t.test('where Redis refuses CLIENT, a queue whose worker still checks for stalled jobs is left to it', async (t) => {
  const redis = await useRedis(t, { args: ['--rename-command', 'CLIENT', ''] });
  const r = new Redis(redis.url, { maxRetriesPerRequest: null });
  t.teardown(() => r.disconnect());
  await t.rejects(r.client('LIST'), /unknown command/i, 'this Redis refuses CLIENT');
  const k = keys('bw');
  const prefix = k.queuePrefixOf('p1');
  const base = `${prefix}:${deliveryQueueName('p1')}`;
  const q = new Queue(deliveryQueueName('p1'), { connection: r, prefix });
  const id = 'dlv_0000000000000000000000008.p1';
  await q.add('deliver', { alertId: 'alt_0000000000000000000000008', deliveryId: id, platformId: 'p1', kind: 'deliver' }, { jobId: id, delay: 60_000 });
  await q.close();
  const old = new Worker(deliveryQueueName('p1'), async () => undefined, { connection: r, prefix, stalledInterval: 1_000 });
  old.on('error', () => undefined);
  await old.waitUntilReady();
  await until(async () => (await r.exists(`${base}:stalled-check`)) === 1, 10_000, 'the worker checked for stalled jobs');
  t.equal(await migrateDeliveryQueues(r, k, ['p1']), 0, 'nothing moved while the worker runs');
  t.equal((await listJobs(r, k, 'p1')).length, 0, 'no job in the work sets');
  t.ok(await r.exists(`${base}:delayed`), 'the old queue is still there');
  await old.close();
  // Its last check lapses within one stalledInterval of its end.
  await until(async () => (await r.exists(`${base}:stalled-check`)) === 0, 10_000, 'the last check lapsed');
  t.equal(await migrateDeliveryQueues(r, k, ['p1']), 1, 'moved once the worker is gone');
  t.same((await listJobs(r, k, 'p1')).map((j) => j.id), [id]);
});
