import t from 'tap';
import { startRedis } from './helpers/redis.js';
import { faultsDuringSuccess, startEngineEnv, until } from './helpers/engine.js';

const redis = await startRedis();

t.test('429 with Retry-After is pacing, not failure: the circuit stays closed', async (t) => {
  const env = await startEngineEnv(t, {
    redis,
    platforms: [{ id: 'p-12345', kind: 'hotline-12345', circuitBreaker: { failureThreshold: 2, cooldownMs: 60_000 }, retry: { delaysMs: [50, 50, 50, 50], jitter: 'none', maxRetryAfterMs: 100 } }],
  });
  env.sandbox.get('p-12345').setFault({ fault: '429', times: 3, retryAfterSeconds: 1 });
  const { deliveries } = await env.submit();
  const d = await env.waitForState(deliveries['p-12345'], 'delivered', 10_000);
  t.equal(d.attempts, 4, 'three 429s, then delivered');
  const circuitOf = async () => (await env.admin.get('/v1/platforms')).body.items.find((p: { id: string }) => p.id === 'p-12345').circuit;
  t.equal(await circuitOf(), 'closed', 'circuit never opened');

  // A real fault still opens it. The fault lasts: with only two 5xx answers, a retry answered 200
  // after them may end after the second failure and close the circuit again, rightly (the
  // platform's last answer was a success), which is a race this test must not depend on.
  env.sandbox.get('p-12345').setFault({ fault: '5xx' });
  await env.submit();
  await env.submit();
  await until(async () => (await circuitOf()) === 'open', 20_000, 'the circuit to open on 5xx');
  t.pass('5xx answers open the circuit');
});

// The circuit counts consecutive transport faults. An attempt whose claim found the circuit
// clean may end after others failed; its success must still count as the success between them.
t.test('a success that ends after failures resets the count, though its claim found the circuit clean', async (t) => {
  const env = await startEngineEnv(t, {
    redis,
    prefix: 'cc',
    platforms: [{ id: 'p-12345', kind: 'hotline-12345', circuitBreaker: { failureThreshold: 3, cooldownMs: 60_000 }, retry: { delaysMs: [60_000], jitter: 'none' }, timeouts: { connectMs: 1000, headersMs: 2000, bodyMs: 5000 } }],
  });
  const sb = env.sandbox.get('p-12345');
  const circuitKey = 'cc:circuit:p-12345';
  // A success still trickling in while two others fail.
  sb.setFault({ fault: 'slow-body', times: 1, slowBodyMs: 1_500 });
  const slow = await env.submit();
  await until(() => sb.received.length === 1, 10_000, 'the slow request arrived');
  sb.setFault({ fault: '5xx', times: 2 });
  const [f1, f2] = [await env.submit(), await env.submit()];
  await until(async () => (await env.delivery(f1.deliveries['p-12345'])).lastError && (await env.delivery(f2.deliveries['p-12345'])).lastError, 10_000, 'both failed');
  t.equal(await env.r.hget(circuitKey, 'failures'), '2', 'two failures counted');
  await env.waitForState(slow.deliveries['p-12345'], 'delivered', 10_000);
  t.equal(await env.r.exists(circuitKey), 0, 'the success after them reset the count');
  // One more failure: the first of a new run, not the third.
  sb.setFault({ fault: '5xx', times: 1 });
  const f3 = await env.submit();
  await until(async () => (await env.delivery(f3.deliveries['p-12345'])).lastError, 10_000, 'the third failed');
  t.equal(await env.r.hget(circuitKey, 'failures'), '1', 'one failure counted');
  t.notOk(await env.r.hget(circuitKey, 'openedAt'), 'the circuit is closed');
});

// On a standalone Redis every success resets, so faults another worker process counts while an
// attempt is in flight do not survive its success either. (Counted here as that process's script
// counts them: HINCRBY on the circuit.)
t.test('a success resets faults another process counted while it was in flight', async (t) => {
  const env = await startEngineEnv(t, {
    redis,
    prefix: 'cp',
    platforms: [{ id: 'p-12345', kind: 'hotline-12345', circuitBreaker: { failureThreshold: 3, cooldownMs: 60_000 }, timeouts: { connectMs: 1000, headersMs: 2000, bodyMs: 5000 } }],
  });
  await faultsDuringSuccess(env, 'cp:circuit:p-12345');
  t.equal(await env.r.exists('cp:circuit:p-12345'), 0, 'the success reset the count');
});

t.test('stop redis', async () => {
  await redis.stop();
});
