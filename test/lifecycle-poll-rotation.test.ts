import t from 'tap';
import { startRedis } from './helpers/redis.js';
import { startLifecycleEnv, until } from './helpers/lifecycle.js';

const redis = await startRedis();

t.test('poll rounds rotate through more open deliveries than one batch', async (t) => {
  // A platform whose `open` means signed for (its status table says so), so each poll shows.
  const options = { apiKey: 'sandbox-key', defaultServiceCode: 'GENERAL', statusMap: { open: 'accepted' } };
  const env = await startLifecycleEnv(t, { redis, platforms: [{ id: 'o-rt', kind: 'open311', poll: { everyMs: 100, batchSize: 1 }, options }] });
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push((await env.submit({ category: 'assist.unlock' })).deliveries['o-rt']);
  for (const id of ids) await env.waitFor(id, ['delivered', 'accepted']);
  // New Open311 requests are "open": each poll that asks about one makes it accepted here. With one
  // delivery per round and no rotation, only the oldest would ever be asked about.
  await until(async () => {
    const states = await Promise.all(ids.map(async (id) => (await env.delivery(id)).state));
    return states.every((s) => s === 'accepted');
  }, 8_000, 'every delivery polled');
  const asked = new Set(env.sandbox.get('o-rt').received.filter((r) => r.method === 'GET').map((r) => r.path));
  t.ok(asked.size >= 3, `three different poll requests: ${[...asked].join(' ')}`);
});

t.test('stop redis', async () => {
  await redis.stop();
});
