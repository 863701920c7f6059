/**
 * Redis Cluster with real processes: 3 masters + 3 replicas (Debian's redis-server,
 * `--cluster-enabled yes`, `redis-cli --cluster create`) on free loopback ports; fenliu (role
 * `all`, config `redis.cluster`) takes a steady stream of alerts and delivers them to a loopback
 * receiver. Every script and MULTI fenliu runs must stay in one slot (Redis refuses the others
 * with CROSSSLOT), so the run itself checks the key layout. Then the master serving bucket 0 is
 * SIGKILLed mid-run; its replica takes over without a fenliu restart.
 *
 * Run twice: log-first ingest, and write-through (`engine.ingestWriteThrough`), where no entry may
 * reach an ingest log.
 *
 * Printed (`# fault {...}`): seconds from the kill to the first 202 of a request sent after it,
 * alerts acknowledged and then missing, deliveries lost (asserted 0) and sent twice. Afterwards
 * the audit relay has moved every bucket's events to the archiver's stream, and retention
 * removes every alert from every shard.
 */
import t from 'tap';
import { Cluster, type Redis } from 'ioredis';
import { auditStreamKey } from '../../src/audit/events.js';
import { bucketTag, keys as redisKeys } from '../../src/store/keys.js';
import { each, zcardAll, zMembersByScore } from '../../src/store/fanout.js';
import { sweepRetention } from '../../src/store/retention.js';
import { startCluster } from '../helpers/cluster.js';
import { logEntriesAdded } from '../helpers/ingest-log.js';
import { KEYS, LogCapture, alert, api, startTestFenliu } from '../helpers/fenliu.js';
import { Receiver, faultConfig, settle, sleep, until, type inspector } from '../faults/harness.js';

interface Attempt {
  sentAt: number;
  ms: number;
  status: number | string;
  /** The problem's code and detail, for an answer outside 202/200/503 (the failure message shows it). */
  problem?: string;
}

// Both ingest modes: log-first (the dispatcher materialises and relays), and write-through (the
// ingest script writes the deliveries and the API relays the events).
for (const writeThrough of [false, true]) t.test(`Cluster: the delivery path on 3 shards; SIGKILL a master under load (${writeThrough ? 'write-through' : 'log-first'} ingest)`, async (t) => {
  const c = await startCluster({ masters: 3, replicas: 1 });
  let f: Awaited<ReturnType<typeof startTestFenliu>> | undefined;
  const r = new Cluster(c.nodes, { clusterRetryStrategy: () => 100, redisOptions: { maxRetriesPerRequest: null } });
  r.on('error', () => undefined);
  const receiver = await new Receiver().listen();
  t.teardown(async () => {
    await f?.stop();
    r.disconnect();
    await receiver.close();
    await c.stop();
  });
  const prefix = writeThrough ? 'hacw' : 'hac';
  const doc = faultConfig(receiver.url, { redis: { prefix, cluster: c.nodes }, log: { level: 'silent' } });
  doc.engine.ingestWriteThrough = writeThrough;
  // Errors only: a 500 in the run is shown with the error behind it.
  const logs = new LogCapture();
  f = await startTestFenliu({ cfg: doc, role: 'all', logStream: logs, logLevel: 'error' });
  const k = redisKeys(prefix);
  const rr = r as unknown as Redis;
  const ins = {
    r: rr,
    k,
    state: (id: string) => rr.hget(k.delivery(id), 'state'),
    async states(ids: string[]) {
      const got = await Promise.all(ids.map((id) => rr.hget(k.delivery(id), 'state')));
      return new Map(ids.map((id, i) => [id, got[i]]));
    },
    close: () => r.disconnect(),
  } as unknown as ReturnType<typeof inspector>;

  // A 110 system: 4 loops, each retries its alert (same idempotency key) until 202/200.
  const attempts: Attempt[] = [];
  const acked = new Map<string, string[]>();
  let running = true;
  let seq = 0;
  const loops = Array.from({ length: 4 }, async () => {
    while (running) {
      const id = `HAC-${++seq}`;
      for (;;) {
        const sentAt = Date.now();
        let a: Attempt;
        try {
          const res = await api(f!.url, KEYS.sourceA).post('/v1/alerts', alert(id, { category: 'utility.water-leak' }));
          a = { sentAt, ms: Date.now() - sentAt, status: res.status };
          if (![200, 202, 503].includes(res.status)) a.problem = `${res.body?.code}: ${res.body?.detail}`;
          if (res.status === 202 || res.status === 200) acked.set(res.body.id, res.body.deliveries.map((d: { id: string }) => d.id));
        } catch (err) {
          a = { sentAt, ms: Date.now() - sentAt, status: (err as { code?: string }).code ?? 'error' };
        }
        attempts.push(a);
        if (a.status === 202 || a.status === 200) break;
        await sleep(100);
      }
      await sleep(10);
    }
  });

  await until('steady ingest (60 alerts acknowledged)', () => acked.size >= 60, 60_000);
  // Everything so far went through: every bucket's scripts ran on its own shard.
  const before = await settle('cluster before the kill', ins, receiver, [...acked.values()].flat(), 60_000);
  t.equal(before.lost, 0, 'every delivery before the kill reached the receiver');

  const slot0 = await r.cluster('KEYSLOT', bucketTag(0));
  const ackedBefore = acked.size;
  const killedAt = Date.now();
  const oldPort = await c.killMasterOf(Number(slot0));
  const newPort = await c.waitForFailover(Number(slot0), oldPort, 60_000);
  const promotedAt = Date.now();
  const firstOk = await until('202 again after the failover', () => attempts.find((a) => a.sentAt > killedAt && (a.status === 202 || a.status === 200)), 60_000);
  await sleep(1_500);
  running = false;
  await Promise.all(loops);

  const statuses: Record<string, number> = {};
  for (const a of attempts) statuses[String(a.status)] = (statuses[String(a.status)] ?? 0) + 1;
  t.same(Object.keys(statuses).filter((x) => !['200', '202', '503'].includes(x)), [], `every answer was 202, 200 (replay) or 503: ${JSON.stringify(statuses)} ${JSON.stringify([...new Set(attempts.flatMap((a) => a.problem ?? []))])} ${statuses['500'] ? logs.lines.filter((l) => l.includes('"level":50')).join('\n').slice(0, 4_000) : ''}`);

  const ackedIds = [...acked.keys()];
  const present = await Promise.all(ackedIds.map((id) => rr.exists(k.alert(id))));
  const missing = ackedIds.filter((_, i) => present[i] !== 1);
  const deliveryIds = ackedIds.filter((id) => !missing.includes(id)).flatMap((id) => acked.get(id)!);
  const tally = await settle(`cluster failover, ${writeThrough ? 'write-through' : 'log-first'}`, ins, receiver, deliveryIds, 90_000, {
    recoverySec: Number(((firstOk!.sentAt + firstOk!.ms - killedAt) / 1000).toFixed(2)),
    promotedAfterSec: Number(((promotedAt - killedAt) / 1000).toFixed(2)),
    ackedBeforeKill: ackedBefore,
    acked: acked.size,
    ackedThenMissing: missing.length,
    refused503: attempts.filter((a) => a.sentAt >= killedAt && a.status === 503).length,
    newMaster: newPort !== oldPort,
  });
  t.equal(tally.lost, 0, 'no delivery of a stored alert was lost');
  if (writeThrough) t.equal(await logEntriesAdded(rr, k), 0, 'write-through: nothing went through an ingest log');
  t.ok(tally.maxConcurrentPerKey <= 1, 'no delivery was sent twice at the same time');
  t.comment(`acknowledged and then missing (no waitReplicas): ${missing.length}; sent twice: ${tally.duplicated}`);

  // Audit: every bucket's events reach the one stream the archiver reads (relay, exactly once).
  await until('audit relayed', async () => (await Promise.all(k.bucketList.map((b) => rr.xlen(k.bucketAudit(b))))).every((n) => n === 0), 30_000);
  const events = (await rr.xrange(auditStreamKey(prefix), '-', '+')).length;
  t.ok(events > 0 || (await rr.exists(`${prefix}:{audit}:head`)) === 1, `audit events in the archiver's stream or archived (${events} in the stream)`);

  // Retention on every shard: everything older than now goes.
  const stored = await zMembersByScore(rr, each(k.bucketList, k.alerts), '-inf', '+inf');
  t.ok(stored.length >= ackedIds.length - missing.length, 'every surviving alert is indexed');
  const swept = await sweepRetention(rr, k, prefix, Date.now() + 1);
  t.equal(swept.alerts, stored.length, 'retention removed every alert');
  t.equal(await zcardAll(rr, each(k.bucketList, k.alerts)), 0, 'no alert left in any bucket');
});
