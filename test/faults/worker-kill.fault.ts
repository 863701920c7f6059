/**
 * Worker processes SIGKILLed mid-attempt, again and again, while a backlog is delivered to a
 * slow platform: expired leases (engine.lockDurationMs / stalledIntervalMs, see
 * docs/reliability.md) hand each interrupted job to a surviving worker, so every delivery
 * completes; a killed attempt is re-sent with the same idempotency key, never concurrently.
 */
import t from 'tap';
import { startRedis } from '../helpers/redis.js';
import { KEYS, Receiver, alert, api, faultConfig, inspector, serve, settle, sleep, until, writeConfig, type Served } from './harness.js';
import { each, zcardAll } from '../../src/store/fanout.js';

t.test('SIGKILL workers mid-attempt, repeatedly', async (t) => {
  const redis = await startRedis({ appendonly: true });
  const receiver = await new Receiver().listen();
  // Each answer takes 400 ms, so a kill nearly always lands while attempts are in flight.
  receiver.behave = () => 'slow-ok';
  const file = writeConfig(faultConfig(receiver.url, { engine: { lockDurationMs: 2_000, stalledIntervalMs: 500 }, platform: { concurrency: 2 } }));
  const ins = inspector(redis.url);
  const workers: Served[] = [];
  t.teardown(async () => {
    ins.close();
    await receiver.close();
    await redis.stop();
  });
  const t0 = Date.now();
  // Start-up is slow on a loaded machine: the API and a pool of workers start together.
  const [apiProc, ...pool] = await Promise.all([serve(t, file, 'api', redis.url), ...Array.from({ length: 3 }, () => serve(t, file, 'worker', redis.url))]);
  workers.push(...pool);
  t.comment(`API and 3 workers up after ${Date.now() - t0} ms`);

  const N = 150;
  const ids: string[] = [];
  for (let i = 0; i < N; i += 25) {
    const batch = await Promise.all(Array.from({ length: Math.min(25, N - i) }, (_, j) => api(apiProc.url!, KEYS.sourceA).post('/v1/alerts', alert(`KILL-${i + j}`, { category: 'utility.water-leak' }))));
    for (const res of batch) {
      if (res.status !== 202) t.fail(`submit: ${res.status} ${res.text}`);
      else ids.push(res.body.deliveries[0].id);
    }
  }
  t.equal(ids.length, N, `${N} alerts accepted`);

  // Kill the oldest worker whenever deliveries are in flight; keep at least one alive.
  let kills = 0;
  let sendingAtKills = 0;
  const replacements: Promise<Served>[] = [];
  while (kills < 5) {
    const states = [...(await ins.states(ids)).values()];
    if (states.every((s) => s === 'delivered')) break;
    const sending = states.filter((s) => s === 'sending').length;
    if (sending && workers.length > 1) {
      const victim = workers.shift()!;
      victim.child.kill('SIGKILL');
      await victim.exited;
      kills++;
      sendingAtKills += sending;
      replacements.push(serve(t, file, 'worker', redis.url).then((w) => (workers.push(w), w)));
      await sleep(400);
    } else await sleep(50);
  }
  t.comment(`${kills} kills after ${Date.now() - t0} ms`);
  t.ok(kills >= 3, `${kills} workers SIGKILLed while deliveries were in flight`);

  const tally = await settle('worker-sigkill', ins, receiver, ids, 90_000, { kills, sendingAtKills });
  await Promise.allSettled(replacements);
  t.equal(tally.lost, 0, 'every delivery completed');
  t.ok(tally.maxConcurrentPerKey <= 1, 'a taken-over job is never sent while the killed attempt is still open');
  t.equal(await zcardAll(ins.r, each(ins.k.bucketList, (b) => ins.k.deadLetters(b, 'p1'))), 0, 'no dead letters: a crash is not a platform failure');
  // A taken-over job starts its attempt count again only if the killed one left no record.
  const attempts = await until('attempt logs', async () => {
    const p = ins.r.pipeline();
    for (const id of ids) p.llen(ins.k.attempts(id));
    return ((await p.exec()) ?? []).map(([, n]) => Number(n));
  });
  t.ok(attempts.every((n) => n >= 1), 'every delivery has its attempt log');
  t.comment(`settled after ${Date.now() - t0} ms`);
});
