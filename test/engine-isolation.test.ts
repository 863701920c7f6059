/**
 * One queue per platform: a hanging platform does not slow another; the circuit breaker stops
 * traffic to a failing platform and probes it after the cool-down; urgent alerts overtake.
 */
import t from 'tap';
import { startRedis } from './helpers/redis.js';
import { api, KEYS, startEngineEnv, until } from './helpers/engine.js';

const redis = await startRedis();

t.test('a hanging platform does not slow deliveries to another', async (t) => {
  const HANG_MS = 8000;
  const e = await startEngineEnv(t, {
    redis,
    platforms: [
      { id: 'stuck', kind: 'hotline-12345', concurrency: 2, timeouts: { connectMs: 1000, headersMs: HANG_MS, bodyMs: 1000 }, circuitBreaker: { failureThreshold: 100, cooldownMs: 1000 } },
      { id: 'fine', kind: 'grid-governance', concurrency: 2 },
    ],
  });
  e.sandbox.get('stuck').setFault('hang');
  const started = Date.now();
  const subs = [];
  for (let i = 0; i < 6; i++) subs.push(await e.submit());
  await e.sandbox.get('stuck').waitFor(2, 2000);
  for (const s of subs) await e.waitForState(s.deliveries.fine, 'delivered', 3000);
  const took = Date.now() - started;
  t.ok(took < HANG_MS / 2, `all 6 deliveries to the healthy platform done in ${took} ms (hang timeout ${HANG_MS} ms)`);
  const stuckAttempts = await Promise.all(subs.map((s) => e.r.llen(e.k.attempts(s.deliveries.stuck))));
  t.same(stuckAttempts, [0, 0, 0, 0, 0, 0], 'done before any attempt to the stuck platform even ended');
  const states = await Promise.all(subs.map((s) => e.r.hget(e.k.delivery(s.deliveries.stuck), 'state')));
  t.ok(states.every((s) => s === 'queued' || s === 'sending'), 'the stuck platform is still stuck');
  t.equal(e.sandbox.get('stuck').received.length, 2, 'the stuck platform holds only its own concurrency (2)');
});

t.test('circuit breaker: opens after N failures, no traffic while open, a probe closes it', async (t) => {
  const COOLDOWN = 1500;
  const e = await startEngineEnv(t, {
    redis,
    platforms: [
      {
        id: 'p1',
        kind: 'city-ops',
        retry: { delaysMs: [30, 30, 30, 30, 30, 30, 30, 30], jitter: 'none' },
        circuitBreaker: { failureThreshold: 3, cooldownMs: COOLDOWN },
      },
      { id: 'p2', kind: 'grid-governance' },
    ],
  });
  const sb = e.sandbox.get('p1');
  sb.setFault({ fault: '5xx', status: 500 });
  const { deliveries } = await e.submit();
  await sb.waitFor(3, 3000);
  const platforms = async () => (await e.admin.get('/v1/platforms')).body.items as any[];
  const opened = await until(async () => (await platforms()).find((p) => p.id === 'p1')?.circuit === 'open', 3000, 'circuit open');
  t.ok(opened, 'GET /v1/platforms: p1 open');
  const openedAt = Number(await e.r.hget(`${e.f.cfg.redis.prefix}:circuit:p1`, 'openedAt'));
  t.ok(openedAt > 0);
  t.equal((await platforms()).find((p) => p.id === 'p2')?.circuit, 'closed', 'other platforms unaffected');
  const ready = await api(e.url).get('/readyz');
  t.equal(ready.status, 200, 'a failing platform does not make fenliu unready');
  t.same(ready.body.checks.circuits, { p1: 'open', p2: 'closed' }, '/readyz shows the circuits');
  const atOpen = sb.received.length;
  t.equal(atOpen, 3, 'exactly threshold requests before opening');
  const d = await e.delivery(deliveries.p1);
  t.equal(d.state, 'queued', 'still queued, not failed');

  // Fix the platform during the cool-down: nothing may reach it until the cool-down ends.
  sb.setFault('none');
  const got = await sb.waitFor(atOpen + 1, COOLDOWN + 3000);
  const probeAt = Date.parse(got[atOpen].at);
  t.ok(probeAt >= openedAt + COOLDOWN - 20, `first request after opening came ${probeAt - openedAt} ms later (cool-down ${COOLDOWN} ms)`);
  const done = await e.waitForState(deliveries.p1, 'delivered', 3000);
  t.equal(done.attempts, 4, 'the probe is the 4th attempt; delays while open are not attempts');
  t.equal(sb.received.length, atOpen + 1);
  await until(async () => (await platforms()).find((p) => p.id === 'p1')?.circuit === 'closed', 2000, 'circuit closed');
  t.pass('the probe closed the circuit');
  t.same((await api(e.url).get('/readyz')).body.checks.circuits, { p1: 'closed', p2: 'closed' });
});

t.test('circuit state is visible from an API-only process too', async (t) => {
  const e = await startEngineEnv(t, {
    redis,
    platforms: [{ id: 'p1', kind: 'city-ops', retry: { delaysMs: [30, 30, 30, 30], jitter: 'none' }, circuitBreaker: { failureThreshold: 2, cooldownMs: 5000 } }],
  });
  e.sandbox.get('p1').setFault('5xx');
  await e.submit();
  await e.sandbox.get('p1').waitFor(2, 3000);
  const { startTestFenliu } = await import('./helpers/fenliu.js');
  const apiOnly = await startTestFenliu({ redisUrl: e.redis!.url, cfg: e.doc, role: 'api' });
  t.teardown(() => apiOnly.stop());
  await until(async () => (await api(apiOnly.url, KEYS.admin).get('/v1/platforms')).body.items[0].circuit === 'open', 2000, 'open via API role');
  t.same((await api(apiOnly.url).get('/readyz')).body.checks.circuits, { p1: 'open' });
});

t.test('priority lanes: an urgent alert queued after normal ones is delivered before them', async (t) => {
  const e = await startEngineEnv(t, {
    redis,
    platforms: [{ id: 'p1', kind: 'hotline-12345', concurrency: 1, timeouts: { connectMs: 1000, headersMs: 2500, bodyMs: 1000 } }],
  });
  const sb = e.sandbox.get('p1');
  // The first request hangs, holding the only slot while a backlog builds up behind it.
  sb.setFault({ fault: 'hang', times: 1 });
  const blocker = (await e.submit()).deliveries.p1;
  await sb.waitFor(1, 2000);
  const normals: string[] = [];
  for (let i = 0; i < 3; i++) normals.push((await e.submit()).deliveries.p1);
  const urgent = (await e.submit({ priority: 'urgent', category: 'utility.water-leak' })).deliveries.p1;
  for (const id of [blocker, urgent, ...normals]) await e.waitForState(id, 'delivered', 5000);
  const order = sb.received.map((r) => r.headers['idempotency-key']);
  t.equal(order[0], blocker, 'the blocker went first (and hung)');
  const at = (id: string) => order.indexOf(id);
  t.equal(at(urgent), 1, `urgent is the next one sent (order: ${order.map((o) => (o === urgent ? 'U' : o === blocker ? 'B' : 'N')).join(' ')})`);
  for (const n of normals) t.ok(at(urgent) < at(n), 'urgent before each earlier normal');
  t.ok(at(normals[0]) < at(normals[1]) && at(normals[1]) < at(normals[2]), 'normals keep their order');
});

t.test('stop redis', async () => redis.stop());
