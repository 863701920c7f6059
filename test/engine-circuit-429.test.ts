import t from 'tap';
import { startRedis } from './helpers/redis.js';
import { startEngineEnv } from './helpers/engine.js';

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
  const platforms = (await env.admin.get('/v1/platforms')).body.items;
  t.equal(platforms.find((p: { id: string }) => p.id === 'p-12345').circuit, 'closed', 'circuit never opened');

  // A real fault still opens it.
  env.sandbox.get('p-12345').setFault({ fault: '5xx', times: 2 });
  await env.submit();
  await env.submit();
  await new Promise<void>((resolve, reject) => {
    const end = Date.now() + 10_000;
    const tick = async () => {
      const items = (await env.admin.get('/v1/platforms')).body.items;
      if (items.find((p: { id: string }) => p.id === 'p-12345').circuit !== 'closed') return resolve();
      if (Date.now() > end) return reject(new Error('circuit did not open on 5xx'));
      setTimeout(tick, 20);
    };
    void tick();
  });
  t.pass('two 5xx open the circuit');
});

t.test('stop redis', async () => {
  await redis.stop();
});
