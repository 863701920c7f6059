/**
 * Write-through ingest (`engine.ingestWriteThrough`) on Redis Cluster (3 masters, real
 * processes). The ingest script runs once per bucket there (one slot each), writes each alert's
 * deliveries, jobs and `alert.received` into the bucket's own keys, and the API process relays
 * the bucket's audit stream to the archiver's right after (src/store/audit-relay.ts): no ingest
 * log, no dispatcher, and no worker is needed for the events to reach the one stream. The script's
 * PUBLISH wakes a worker on another node whose poll is 30 s.
 */
import t from 'tap';
import { Cluster, type Redis } from 'ioredis';
import { auditStreamKey } from '../../src/audit/events.js';
import { decodeStreamEntry } from '../../src/audit/format.js';
import { bucketOf, keys as redisKeys } from '../../src/store/keys.js';
import { startCluster } from '../helpers/cluster.js';
import { logEntriesAdded } from '../helpers/ingest-log.js';
import { KEYS, alert, api, startTestFenliu } from '../helpers/fenliu.js';
import { Receiver, faultConfig, until } from '../faults/harness.js';

const c = await startCluster({ masters: 3, replicas: 0 });
t.teardown(() => c.stop());

t.test('Cluster: write-through ingest writes deliveries, jobs and events per bucket, relays the events, and wakes a worker', async (t) => {
  const receiver = await new Receiver().listen();
  const r = new Cluster(c.nodes) as unknown as Redis;
  const prefix = 'hwt';
  const k = redisKeys(prefix);
  const doc = faultConfig(receiver.url, { redis: { prefix, cluster: c.nodes }, engine: { ingestWriteThrough: true, pollMs: 30_000 }, log: { level: 'silent' } });
  const apiProc = await startTestFenliu({ cfg: doc, role: 'api' });
  t.teardown(async () => {
    await apiProc.stop();
    r.disconnect();
    await receiver.close();
  });

  // No worker yet: whatever is in Redis now, the API process wrote.
  const N = 40;
  const res = await Promise.all(Array.from({ length: N }, (_, i) => api(apiProc.url, KEYS.sourceA).post('/v1/alerts', alert(`HWT-${i}`, { category: 'utility.water-leak' }))));
  t.same(res.map((x) => x.status), res.map(() => 202), 'every alert accepted');
  const alertIds = res.map((x) => x.body.id as string);
  const deliveryIds = res.flatMap((x) => (x.body.deliveries as { id: string }[]).map((d) => d.id));
  t.ok(new Set(alertIds.map(bucketOf)).size >= 3, `the alerts span buckets on several shards (${new Set(alertIds.map(bucketOf)).size} buckets)`);

  t.equal(await logEntriesAdded(r, k), 0, 'nothing went through an ingest log');
  const states = await Promise.all(deliveryIds.map((id) => r.hget(k.delivery(id), 'state')));
  t.same(states, deliveryIds.map(() => 'queued'), 'every delivery is written, queued');
  const jobs = await Promise.all(deliveryIds.map((id) => r.zscore(k.work(bucketOf(id), 'p1', false), id)));
  t.ok(jobs.every((s) => s !== null), 'every delivery has its job in its bucket’s work set');
  const histories = await Promise.all(deliveryIds.map((id) => r.lrange(k.history(id), 0, -1)));
  t.ok(histories.every((h) => h.length === 1 && JSON.parse(h[0]).source === 'ingest'), 'one ingest history entry per delivery');

  // The API relayed its buckets' events: they reach the archiver's stream with no worker running.
  await until('every bucket audit stream relayed', async () => (await Promise.all(k.bucketList.map((b) => r.xlen(k.bucketAudit(b))))).every((n) => n === 0), 15_000);
  const events = (await r.xrange(auditStreamKey(prefix), '-', '+')).map(([id, f]) => decodeStreamEntry(id, f));
  const received = events.filter((e) => e.type === 'alert.received');
  t.equal(received.length, N, 'one alert.received per alert in the one stream');
  t.same(new Set(received.map((e) => e.alertId)), new Set(alertIds), 'for every alert');
  t.ok(received.every((e) => (e.data as { alert?: { source?: { alertId?: string } } }).alert?.source?.alertId?.startsWith('HWT-')), 'each event holds its alert');

  // A worker with a 30 s poll: after its first look, only the ingest script's PUBLISH brings it back sooner.
  const worker = await startTestFenliu({ cfg: doc, role: 'worker' });
  t.teardown(() => worker.stop());
  await until('the first 40 delivered', () => receiver.total >= N, 30_000);
  const before = receiver.total;
  const sent = Date.now();
  const more = await Promise.all(Array.from({ length: 10 }, (_, i) => api(apiProc.url, KEYS.sourceA).post('/v1/alerts', alert(`HWT-late-${i}`, { category: 'utility.water-leak' }))));
  t.same(more.map((x) => x.status), more.map(() => 202), 'ten more accepted');
  const late = more.flatMap((x) => (x.body.deliveries as { id: string }[]).map((d) => d.id));
  await until('the ten delivered', async () => (await Promise.all(late.map((id) => r.hget(k.delivery(id), 'state')))).every((s) => s === 'delivered'), 10_000);
  t.ok(Date.now() - sent < 10_000, `delivered ${Date.now() - sent} ms after the POSTs (the worker's poll is 30 s)`);
  t.equal(receiver.total - before, 10, 'each sent once');
  t.equal(await logEntriesAdded(r, k), 0, 'still nothing in an ingest log');
});
