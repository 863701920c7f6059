import type { Redis } from 'ioredis';

/**
 * Reads of indexes split over the key-layout buckets (src/store/keys.ts): one command per bucket,
 * sent together, merged as if the index were one key. A read asks each bucket for as many entries
 * as the whole answer may hold, so merging never misses one.
 */

/** Bucket keys of an index: `each(k.alerts)`, `each((b) => k.open(b, platformId))`. */
export function each(bucketList: number[], keyOf: (b: number) => string): string[] {
  return bucketList.map(keyOf);
}

function merge(lists: string[][], rev: boolean, count: number): string[] {
  const all: [string, number][] = [];
  for (const l of lists) for (let i = 0; i < l.length; i += 2) all.push([l[i], Number(l[i + 1])]);
  // Ties go as Redis sorts them in one key: by member, the same direction as the score.
  all.sort((a, b) => (a[1] - b[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)) * (rev ? -1 : 1));
  return all.slice(0, count).flatMap(([m, s]) => [m, String(s)]);
}

/** Like `ZRANGEBYSCORE key min max WITHSCORES LIMIT 0 count` (or ZREVRANGEBYSCORE max min) over bucket keys: [member, score, ...]. */
export async function zByScore(redis: Redis, keys: string[], from: number | string, to: number | string, count: number, rev = false): Promise<string[]> {
  const lists = await Promise.all(
    keys.map((k) => (rev ? redis.zrevrangebyscore(k, from, to, 'WITHSCORES', 'LIMIT', 0, count) : redis.zrangebyscore(k, from, to, 'WITHSCORES', 'LIMIT', 0, count))),
  );
  return merge(lists, rev, count);
}

/** Members only (no scores) of zByScore. */
export async function zMembersByScore(redis: Redis, keys: string[], from: number | string, to: number | string, count = Number.MAX_SAFE_INTEGER, rev = false): Promise<string[]> {
  const flat = await zByScore(redis, keys, from, to, count, rev);
  return flat.filter((_, i) => i % 2 === 0);
}

/** Like `ZRANGE key start stop` (ZREVRANGE with rev) by rank over bucket keys: members. */
export async function zByRank(redis: Redis, keys: string[], start: number, stop: number, rev = false): Promise<string[]> {
  const lists = await Promise.all(keys.map((k) => (rev ? redis.zrevrange(k, 0, stop, 'WITHSCORES') : redis.zrange(k, '0', String(stop), 'WITHSCORES')) as Promise<string[]>));
  return merge(lists, rev, stop + 1)
    .filter((_, i) => i % 2 === 0)
    .slice(start);
}

export async function zcardAll(redis: Redis, keys: string[]): Promise<number> {
  return (await Promise.all(keys.map((k) => redis.zcard(k)))).reduce((a, n) => a + n, 0);
}

export async function zcountAll(redis: Redis, keys: string[], min: number | string, max: number | string): Promise<number> {
  return (await Promise.all(keys.map((k) => redis.zcount(k, min, max)))).reduce((a, n) => a + n, 0);
}

/** HGET of one field from bucket hashes: the first value found. */
export async function hgetAny(redis: Redis, keys: string[], field: string): Promise<string | null> {
  const got = await Promise.all(keys.map((k) => redis.hget(k, field)));
  return got.find((v) => v !== null) ?? null;
}

/**
 * A pipeline's interface for commands on keys of many slots: each command is sent at once on the
 * connection (ioredis writes them together, as a pipeline would), and `exec()` answers
 * `[error, result]` pairs in order. On Redis Cluster a real pipeline must stay on one node.
 */
export function spread(redis: Redis): Omit<Redis, 'exec'> & { exec(): Promise<[Error | null, unknown][]> } {
  const calls: Promise<unknown>[] = [];
  const proxy: unknown = new Proxy(
    {},
    {
      get(_, name: string) {
        if (name === 'exec') return async () => (await Promise.allSettled(calls)).map((r) => (r.status === 'fulfilled' ? [null, r.value] : [r.reason as Error, null]));
        return (...args: unknown[]) => {
          calls.push((redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[name](...args));
          return proxy;
        };
      },
    },
  );
  return proxy as Omit<Redis, 'exec'> & { exec(): Promise<[Error | null, unknown][]> };
}
