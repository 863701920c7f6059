/**
 * Redis Sentinel failover under load, with real processes: 1 master, 2 replicas and 3 sentinels
 * (Debian's redis-server) on free loopback ports; fenliu (role `all`, config `redis.sentinels`)
 * takes a steady stream of alerts from a simulated 110 system and delivers them to a loopback
 * receiver; the master is SIGKILLed. Without a fenliu restart, ingest answers 202 again once a
 * replica is promoted; meanwhile it answers 503 + Retry-After (never 500, never a hang) and
 * /readyz is 503.
 *
 * Printed per run (`# ha {...}`): seconds from the kill to the first 202 of a request sent after
 * it; alerts acknowledged (202, or 200 for an idempotent retry) and then missing on the new master
 * (asserted 0 with `redis.waitReplicas: 1`; printed without it); deliveries lost (asserted 0) and
 * sent twice (printed; receivers dedupe on the Idempotency-Key). A third run starts `fenliu serve`
 * as a child process whose config file alone names the sentinels (`# ha serve {...}`).
 */
import t, { type Test } from 'tap';
import { Redis } from 'ioredis';
import { keys as redisKeys } from '../../src/store/keys.js';
import { startSentinelTopology } from '../helpers/sentinel.js';
import { KEYS, alert, api, startTestFenliu } from '../helpers/fenliu.js';
import { Receiver, faultConfig, serve, settle, sleep, until, writeConfig, type inspector } from '../faults/harness.js';
import { each, zMembersByScore } from '../../src/store/fanout.js';

interface Attempt {
  sentAt: number;
  ms: number;
  status: number | string;
  retryAfter?: string;
  code?: string;
}

/**
 * A 110 system: `workers` loops each send a new alert, and on anything but 202/200 retry the same
 * alert (same alertId, so the same idempotency key) every 100 ms, as the interface asks them to.
 */
function load(base: string, prefix: string, workers = 4) {
  const attempts: Attempt[] = [];
  /** fenliu alert id → its delivery ids, for every alert answered 202 or 200. */
  const acked = new Map<string, string[]>();
  let running = true;
  let seq = 0;
  const loops = Array.from({ length: workers }, async () => {
    while (running) {
      const id = `${prefix}-${++seq}`;
      for (;;) {
        const sentAt = Date.now();
        let a: Attempt;
        try {
          const res = await api(base, KEYS.sourceA).post('/v1/alerts', alert(id, { category: 'utility.water-leak' }));
          a = { sentAt, ms: Date.now() - sentAt, status: res.status, retryAfter: res.headers['retry-after'] as string | undefined, code: res.body?.code };
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
  return {
    attempts,
    acked,
    /** Stops sending new alerts; alerts in hand are retried until answered. */
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

async function failover(t: Test, waitReplicas: number, writeThrough = false) {
  const top = await startSentinelTopology({ replicas: 2, sentinels: 3 });
  let f: Awaited<ReturnType<typeof startTestFenliu>> | undefined;
  let r: Redis | undefined;
  const receiver = await new Receiver().listen();
  // One teardown, in order: fenliu before the Redis processes it is connected to.
  t.teardown(async () => {
    await f?.stop();
    r?.disconnect();
    await receiver.close();
    await top.stop();
  });
  const prefix = `ha${waitReplicas}${writeThrough ? 'w' : ''}`;
  const doc = faultConfig(receiver.url, { redis: { prefix, sentinels: top.sentinels, name: top.name, waitReplicas, waitTimeoutMs: 1_000 }, log: { level: 'silent' } });
  doc.engine.ingestWriteThrough = writeThrough;
  f = await startTestFenliu({ cfg: doc, role: 'all' });
  // The test's own view of Redis, through the sentinels like fenliu's.
  r = new Redis({ sentinels: top.sentinels, name: top.name, maxRetriesPerRequest: null, retryStrategy: () => 100 });
  r.on('error', () => undefined);
  const k = redisKeys(prefix);
  const ins = {
    r,
    k,
    state: (id: string) => r.hget(k.delivery(id), 'state'),
    async states(ids: string[]) {
      const p = r.pipeline();
      for (const id of ids) p.hget(k.delivery(id), 'state');
      const res = (await p.exec()) ?? [];
      return new Map(ids.map((id, i) => [id, (res[i]?.[1] as string | null) ?? null]));
    },
    close: () => r.disconnect(),
  } as ReturnType<typeof inspector>;

  const s = load(f.url, `HA${waitReplicas}`);
  await until('steady ingest (50 alerts acknowledged)', () => s.acked.size >= 50, 30_000);
  // The write-loss window, made visible: replication lags behind the acknowledgements. On loopback
  // a replica is never more than a fraction of a millisecond behind, so the test opens the window
  // a real network (or a busy replica) opens: both replicas are frozen (SIGSTOP) and a backlog of
  // replication traffic larger than the kernel's socket buffers (32 MB) sits in the master's
  // output buffer; what is acknowledged then exists on the master only.
  const stalledAt = Date.now();
  for (const rep of top.replicas) rep.child.kill('SIGSTOP');
  const junk = Buffer.alloc(8 << 20, 0x78);
  for (let i = 0; i < 4; i++) await r.set(`${prefix}:ha-backlog:${i}`, junk);
  const windowFrom = s.acked.size;
  await until('alerts acknowledged in the window (or 1.5 s)', () => s.acked.size >= windowFrom + 20 || Date.now() - stalledAt >= 1_500, 5_000);
  const ackedBefore = s.acked.size;
  const killedAt = Date.now();
  const oldPort = await top.killMaster();
  // killMaster asks the sentinels for the master before it kills it, so the old master can still
  // answer requests sent after killedAt (a 202 30 ms later, once in CI). Recovery counts from its exit.
  const goneAt = Date.now();
  for (const rep of top.replicas) rep.child.kill('SIGCONT');
  // /readyz while the master is gone, and ingest's first 202 after it.
  const ready: { at: number; status: number }[] = [];
  const probing = (async () => {
    while (Date.now() - killedAt < 30_000) {
      const res = await api(f.url).get('/readyz');
      ready.push({ at: Date.now(), status: res.status });
      if (res.status === 200 && s.attempts.some((a) => a.sentAt > goneAt && (a.status === 202 || a.status === 200))) break;
      await sleep(100);
    }
  })();
  const newPort = await top.waitForNewMaster(oldPort);
  const promotedAt = Date.now();
  const firstOk: Attempt = (await until(
    '202 again after the failover',
    () => s.attempts.find((a) => a.sentAt > goneAt && (a.status === 202 || a.status === 200)),
    30_000,
  ))!;
  await probing;
  // Keep the load on a little after recovery, then let every alert in hand be answered.
  await sleep(1_500);
  await s.stop();

  const after = s.attempts.filter((a) => a.sentAt >= killedAt);
  const statuses: Record<string, number> = {};
  for (const a of s.attempts) statuses[String(a.status)] = (statuses[String(a.status)] ?? 0) + 1;
  const codes = [...new Set(s.attempts.filter((a) => a.status === 503).map((a) => a.code))];
  t.same(Object.keys(statuses).filter((x) => !['200', '202', '503'].includes(x)), [], `every answer was 202, 200 (replay) or 503: ${JSON.stringify(statuses)}`);
  t.ok(after.filter((a) => a.status === 503).every((a) => a.retryAfter), '503s carry Retry-After');
  const slowest = Math.max(...s.attempts.map((a) => a.ms));
  t.ok(slowest <= 6_000, `no request hung past the 5 s command timeout (slowest ${slowest} ms)`);
  t.ok(ready.some((x) => x.status === 503 && x.at < firstOk.sentAt + firstOk.ms), '/readyz was 503 while no master was reachable');
  t.equal(ready.at(-1)?.status, 200, '/readyz ready again after the failover');

  // Acknowledged, then missing on the promoted master: the write-loss window.
  const ackedIds = [...s.acked.keys()];
  const present = await r.pipeline(ackedIds.map((id) => ['exists', k.alert(id)])).exec();
  const missing = ackedIds.filter((_, i) => present?.[i]?.[1] !== 1);
  // Stored without an answer (a 503 whose write happened): every one was retried by the loop
  // until it got 200 with the same id, so all stored alerts are acknowledged now.
  const stored = await zMembersByScore(r, each(k.bucketList, k.alerts), '-inf', '+inf');
  const unanswered = stored.filter((id) => !s.acked.has(id));
  t.equal(unanswered.length, 0, 'every stored alert was answered in the end (retries found it by its idempotency key)');

  const deliveryIds = ackedIds.filter((id) => !missing.includes(id)).flatMap((id) => s.acked.get(id)!);
  const tally = await settle(`sentinel waitReplicas=${waitReplicas}${writeThrough ? ', write-through' : ''}`, ins, receiver, deliveryIds, 60_000, {
    recoverySec: Number(((firstOk.sentAt + firstOk.ms - goneAt) / 1000).toFixed(2)),
    promotedAfterSec: Number(((promotedAt - killedAt) / 1000).toFixed(2)),
    ackedBeforeKill: ackedBefore,
    ackedWhileReplicasLagged: ackedBefore - windowFrom,
    acked: s.acked.size,
    ackedThenMissing: missing.length,
    refused503: after.filter((a) => a.status === 503).length,
    codes503: codes,
    replayed200: statuses['200'] ?? 0,
    slowestMs: slowest,
    newMaster: newPort !== oldPort,
  });
  t.equal(tally.lost, 0, 'no delivery of a stored alert was lost');
  t.ok(tally.maxConcurrentPerKey <= 1, 'no delivery was sent twice at the same time');
  return { missing: missing.length, tally };
}

t.test('Sentinel: SIGKILL the master under load, waitReplicas: 1', async (t) => {
  const { missing } = await failover(t, 1);
  t.equal(missing, 0, 'no alert acknowledged under waitReplicas: 1 was lost with the old master');
});

t.test('Sentinel: SIGKILL the master under load, waitReplicas: 1, write-through ingest (the deliveries and jobs replicated with the record)', async (t) => {
  const { missing } = await failover(t, 1, true);
  t.equal(missing, 0, 'no alert acknowledged under waitReplicas: 1 was lost with the old master');
});

t.test('Sentinel: SIGKILL the master under load, waitReplicas: 0', async (t) => {
  const { missing } = await failover(t, 0);
  t.comment(`acknowledged and then missing without waitReplicas: ${missing}`);
  t.pass('figures printed');
});

t.test('fenliu serve (a child process) with redis.sentinels in its config file follows a failover', async (t) => {
  const top = await startSentinelTopology({ replicas: 2, sentinels: 3 });
  const receiver = await new Receiver().listen();
  t.teardown(async () => {
    await receiver.close();
    await top.stop();
  });
  const file = writeConfig(faultConfig(receiver.url, { redis: { prefix: 'haserve', sentinels: top.sentinels, name: top.name, waitReplicas: 1 } }));
  // No REDIS_URL: the config file alone names the sentinels.
  const child = await serve(t, file, 'all', '');
  const src = api(child.url!, KEYS.sourceA);
  t.equal((await src.post('/v1/alerts', alert('SERVE-0'))).status, 202, 'acknowledged through the master the sentinels named');
  const killedAt = Date.now();
  await top.killMaster();
  const seen = new Map<number, number>();
  let n = 0;
  for (;;) {
    const res = await src.post('/v1/alerts', alert(`SERVE-${++n}`));
    seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
    if (res.status === 202) break;
    if (Date.now() - killedAt > 30_000) break;
    await sleep(100);
  }
  const recoverySec = (Date.now() - killedAt) / 1000;
  process.stdout.write(`# ha serve ${JSON.stringify({ recoverySec, statuses: Object.fromEntries(seen) })}\n`);
  t.ok(seen.get(202) === 1 && recoverySec < 30, `202 again ${recoverySec.toFixed(2)} s after the kill, without a restart`);
  t.same([...seen.keys()].filter((s) => s !== 202 && s !== 503), [], 'only 503 meanwhile');
  t.equal(child.child.exitCode, null, 'the process never exited');
});
