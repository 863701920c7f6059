import t from 'tap';
import { useRedis } from './helpers/redis.js';
import { KEYS, alert, api, logged, materialise, startTestFenliu, type TestFenliu } from './helpers/fenliu.js';
import { RedisInspector } from './helpers/inspect.js';

/** Polls a condition (an observable state, not a fixed delay) until it holds or the bound passes. */
async function until(what: string, cond: () => Promise<boolean>, boundMs = 15_000): Promise<void> {
  const deadline = Date.now() + boundMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

t.test('a Redis that does not answer (hung): /readyz says 503 within about a second, not after the command timeout', async (t) => {
  const redis = await useRedis(t);
  const f = await startTestFenliu({ redisUrl: redis.url });
  t.teardown(() => f.stop());
  t.equal((await api(f.url).get('/readyz')).status, 200, 'ready while Redis answers');
  const resume = redis.pause();
  t.teardown(resume);
  const started = Date.now();
  const ready = await api(f.url).get('/readyz');
  const ms = Date.now() - started;
  t.equal(ready.status, 503, '/readyz is 503');
  t.match(ready.body.checks.redis, /unreachable: no answer within 1000 ms/);
  t.ok(ms < 2_500, `answered in ${ms} ms (the command timeout is 5 s)`);
  resume();
  await until('/readyz to recover', async () => (await api(f.url).get('/readyz')).status === 200);
});

t.test('Redis down → 503 (never 202/500); back → 202 without restarting fenliu; a gateway restart keeps records and jobs', async (t) => {
  const redis = await useRedis(t, { appendonly: true });
  let f: TestFenliu = await startTestFenliu({ redisUrl: redis.url });
  t.teardown(() => f.stop());
  const a = () => api(f.url, KEYS.sourceA);

  const before = await a().post('/v1/alerts', alert('OUT-1'));
  t.equal(before.status, 202, 'accepted before the outage');

  // A crash, not a polite shutdown.
  await redis.kill();
  const during = await Promise.all([
    ...Array.from({ length: 5 }, (_, i) => a().post('/v1/alerts', alert(`OUT-DOWN-${i}`))),
    a().post('/v1/alerts', alert('OUT-1')),
  ]);
  for (const [i, res] of during.entries()) {
    t.equal(res.status, 503, `request ${i} during the outage: 503`);
    t.equal(res.body?.code, 'FENLIU_ERR_UNAVAILABLE');
    t.match(String(res.headers['content-type']), /problem\+json/);
    t.ok(Number(res.headers['retry-after']) > 0, 'Retry-After');
  }
  // Later requests too, once the client has noticed the connection is gone.
  const later = await a().post('/v1/alerts', alert('OUT-DOWN-9'));
  t.equal(later.status, 503);
  const read = await a().get(`/v1/alerts/${before.body.id}`);
  t.equal(read.status, 503, 'reads answer 503 too, not 500');
  const ready = await api(f.url).get('/readyz');
  t.equal(ready.status, 503, '/readyz is 503');
  t.equal(ready.body.status, 'unavailable');
  t.match(ready.body.checks.redis, /unreachable/);
  t.equal((await api(f.url).get('/healthz')).status, 200, '/healthz: the process is alive');

  await redis.restart();
  await until('/readyz to recover', async () => (await api(f.url).get('/readyz')).status === 200);
  const after = await a().post('/v1/alerts', alert('OUT-2'));
  t.equal(after.status, 202, 'accepted again without restarting fenliu');
  const down0 = await a().post('/v1/alerts', alert('OUT-DOWN-0'));
  t.equal(down0.status, 202, 'an alert refused with 503 left nothing behind: its retry is a fresh 202');
  const kept = await a().get(`/v1/alerts/${before.body.id}`);
  t.equal(kept.status, 200, 'the alert accepted before the crash survived it (AOF)');
  t.equal(kept.body.alert.source.alertId, 'OUT-1');

  // Gateway restart: a new instance on the same Redis reads everything back.
  await f.stop();
  f = await startTestFenliu({ redisUrl: redis.url });
  const ins = new RedisInspector(redis.url);
  t.teardown(() => ins.close());
  // The ingest log survived both restarts: a worker's dispatcher (none in this api role) materialises all three.
  t.equal(await materialise(f), logged(f, 3), 'the three accepted alerts are materialised from the log (or were written through)');
  for (const res of [before, after, down0]) {
    const got = await a().get(`/v1/alerts/${res.body.id}`);
    t.equal(got.status, 200, `${res.body.id} readable after the gateway restart`);
    t.same(got.body.deliveries.map((d: any) => [d.id, d.state]), res.body.deliveries.map((d: any) => [d.id, 'queued']));
    for (const d of res.body.deliveries) {
      const job = await ins.job(d.platformId, d.id);
      t.equal(job?.data.alertId, res.body.id, `job ${d.id} still queued`);
    }
  }
  const alerts = await ins.alertIds();
  t.equal(alerts.length, 3, 'exactly the three accepted alerts are stored');
  let jobs = 0;
  for (const p of ['p-12345', 'p-grid', 'p-cityops']) jobs += (await ins.jobs(p)).length;
  t.equal(jobs, 6, 'one job per delivery (3 alerts × 2 targets), no more');
  t.equal((await a().post('/v1/alerts', alert('OUT-1'))).status, 200, 'idempotency survives both restarts');
});
