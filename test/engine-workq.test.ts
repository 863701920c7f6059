/**
 * The engine on fenliu's work sets, end to end: a platform's rate limit is one window shared by
 * every worker process, each process keeps at most `concurrency` attempts in flight, a job whose
 * lease expired more than maxStalled times is given up as a dead letter, and a lease is renewed
 * while its attempt runs.
 */
import t from 'tap';
import { startRedis } from './helpers/redis.js';
import { startEngineEnv, until, workerChildren } from './helpers/engine.js';
import { bucketOf } from '../src/store/keys.js';

const redis = await startRedis();

t.test('rate limit: one window shared by two worker processes', async (t) => {
  const e = await startEngineEnv(t, {
    redis,
    platforms: [{ id: 'p1', kind: 'hotline-12345', rateLimit: { max: 2, durationMs: 1000 }, concurrency: 8 }],
  });
  // A second worker process on the same data and platform.
  await workerChildren(t, e.doc, redis.url)();
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) ids.push((await e.submit()).deliveries.p1);
  for (const id of ids) await e.waitForState(id, 'delivered', 10_000);
  const at = e.sandbox.get('p1').received.map((r) => Date.parse(r.at)).sort((a, b) => a - b);
  t.equal(at.length, 6);
  // Two per window of a second, whoever sends: six sends span at least two window starts.
  t.ok(at[5] - at[0] >= 1000, `six sends with max 2 per second took ${at[5] - at[0]} ms`);
  for (let i = 0; i + 4 < at.length; i++) t.ok(at[i + 4] - at[i] >= 1000, 'never five within a second (two windows hold four)');
});

t.test('concurrency: at most `concurrency` attempts in flight per process', async (t) => {
  const e = await startEngineEnv(t, {
    redis,
    platforms: [{ id: 'p1', kind: 'hotline-12345', concurrency: 2, timeouts: { connectMs: 1000, headersMs: 5_000, bodyMs: 1000 } }],
  });
  const sb = e.sandbox.get('p1');
  sb.setFault({ fault: 'hang', times: 10 });
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push((await e.submit()).deliveries.p1);
  await sb.waitFor(2, 5_000);
  const states = async () => Promise.all(ids.map((id) => e.r.hget(e.k.delivery(id), 'state')));
  // Give the engine every chance to overshoot: further takes are kicked by each new alert.
  await e.submit();
  await until(async () => (await e.f.rt.queues.counts('p1')).waiting === 4, 2_000, 'the sixth job waiting too');
  t.equal(sb.received.length, 2, 'two requests out, the rest wait');
  t.equal((await states()).filter((s) => s === 'sending').length, 2, 'two deliveries sending');
  const working = await Promise.all(e.k.bucketList.map((b) => e.r.zcard(e.k.working(b, 'p1'))));
  t.equal(working.reduce((a, x) => a + x, 0), 2, 'two leases held');
});

t.test('a job whose lease keeps expiring is given up: the delivery is dead-lettered', async (t) => {
  const e = await startEngineEnv(t, {
    redis,
    role: 'api',
    engine: { stalledIntervalMs: 200 },
    platforms: [{ id: 'p1', kind: 'hotline-12345' }],
  });
  const { deliveries } = await e.submit();
  const id = deliveries.p1;
  const b = bucketOf(id);
  // No dispatcher in an API process: the alert is written out on demand, as a write on it would.
  await e.f.rt.materialiser.delivery(id);
  await until(async () => (await e.r.zscore(e.k.work(b, 'p1', false), id)) !== null, 5_000, 'the job in its work set');
  // As a worker that died holding it for the tenth time would leave it: an expired lease, ten stalls.
  await e.r.multi().zrem(e.k.work(b, 'p1', false), id).zadd(e.k.working(b, 'p1'), 1, id).hset(e.k.jobs(b), `${id}#s`, 10).exec();
  await workerChildren(t, e.doc, redis.url)();
  const d = await e.waitForState(id, 'failed', 10_000);
  t.match(d.lastError, /stalled more than 10 times/);
  t.equal(Number(await e.r.zscore(e.k.deadLetters(b, 'p1'), id)) > 0, true, 'a dead letter');
  t.equal(await e.r.hlen(e.k.jobs(b)), 0, 'its job fields are gone');
  t.equal(e.sandbox.get('p1').received.length, 0, 'never sent');
});

t.test('a lease is renewed while its attempt runs: an attempt longer than the lease is not taken over', async (t) => {
  const e = await startEngineEnv(t, {
    redis,
    engine: { lockDurationMs: 600, stalledIntervalMs: 200 },
    platforms: [{ id: 'p1', kind: 'hotline-12345', timeouts: { connectMs: 1000, headersMs: 5_000, bodyMs: 5_000 } }],
  });
  // Another worker process looking for expired leases all along.
  await workerChildren(t, e.doc, redis.url)();
  const sb = e.sandbox.get('p1');
  sb.setFault({ fault: 'slow-body', slowBodyMs: 2_000, times: 1 });
  const id = (await e.submit()).deliveries.p1;
  const d = await e.waitForState(id, 'delivered', 10_000);
  t.equal(d.attempts, 1, 'one attempt');
  t.ok(d.attemptLog[0].durationMs >= 1_500, `lasting ${d.attemptLog[0].durationMs} ms, over two leases long`);
  t.equal(sb.received.length, 1, 'sent once');
});

t.test('stop redis', async () => redis.stop());
