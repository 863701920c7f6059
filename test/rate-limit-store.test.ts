import t from 'tap';
import { Redis } from 'ioredis';
import { coalescingRedisStore } from '../src/plugins/app/rate-limit-store.js';
import { startRedis } from './helpers/redis.js';

type Res = { current: number; ttl: number };

function incrMany(store: { incr(k: string, cb: (e: Error | null, r?: Res) => void, w: number): void }, key: string, n: number, window = 5_000): Promise<(Res | Error)[]> {
  return Promise.all(
    Array.from({ length: n }, () => new Promise<Res | Error>((resolve) => store.incr(key, (err, res) => resolve(err ?? res!), window))),
  );
}

t.test('coalesced counting gives every request its own place in the window, across processes', async (t) => {
  const redis = await startRedis();
  // Two connections stand for two API processes sharing one Redis.
  // No offline queue: with Redis down, a command fails at once, as fenliu's fail-fast connection does.
  const a = new Redis(redis.url, { maxRetriesPerRequest: 0, enableOfflineQueue: false });
  const b = new Redis(redis.url, { maxRetriesPerRequest: 0, enableOfflineQueue: false });
  a.on('error', () => undefined);
  b.on('error', () => undefined);
  await Promise.all([a, b].map((c) => new Promise((resolve) => c.once('ready', resolve))));
  t.teardown(async () => {
    a.disconnect();
    b.disconnect();
    await redis.kill();
  });
  const StoreA = coalescingRedisStore(a, 'rl:');
  const StoreB = coalescingRedisStore(b, 'rl:');
  const sa = new StoreA();
  const sb = new StoreB().child({ routeInfo: { method: 'POST', url: '/x' } });
  const sb2 = new StoreB().child({ routeInfo: { method: 'POST', url: '/x' } });

  const [one, two, other] = await Promise.all([incrMany(sa, 'k', 30), incrMany(new StoreB(), 'k', 20), incrMany(sb, 'k', 5)]);
  const currents = [...one, ...two].map((r) => (r as Res).current).sort((x, y) => x - y);
  t.same(currents, Array.from({ length: 50 }, (_, i) => i + 1), 'each of 50 concurrent requests from two processes counted once, no two alike');
  t.ok([...one, ...two].every((r) => (r as Res).ttl > 0 && (r as Res).ttl <= 5_000), 'ttl within the window');
  t.same(other.map((r) => (r as Res).current), [1, 2, 3, 4, 5], 'a route child counts under its own key');
  t.equal(await a.pttl('rl:k') > 0, true, 'the window expires');

  const more = await incrMany(sb2, 'k', 3);
  t.same(more.map((r) => (r as Res).current), [6, 7, 8], 'a later turn continues the count');

  await redis.stop();
  const failed = await incrMany(sa, 'k', 2);
  t.ok(failed.every((r) => r instanceof Error), 'a Redis failure reaches every waiting request (the plugin then skips the limit)');
});
