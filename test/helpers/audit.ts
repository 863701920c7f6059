/**
 * What most audit tests start with: a private redis-server, a client on it and a scratch
 * directory for the log, all gone in the test's teardown.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedis, type TestRedis } from './redis.js';

export async function redisAndDir(t: { teardown(fn: () => unknown): void }, dirPrefix: string): Promise<{ server: TestRedis; redis: Redis; dir: string }> {
  const server = await startRedis();
  const redis = new Redis(server.url);
  const dir = await mkdtemp(join(tmpdir(), dirPrefix));
  t.teardown(async () => {
    await redis.quit();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });
  return { server, redis, dir };
}
