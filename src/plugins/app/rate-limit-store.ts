import type { Redis } from 'ioredis';
import { spread } from '../../store/fanout.js';

type Callback = (err: Error | null, res?: { current: number; ttl: number }) => void;

interface Pending {
  timeWindow: number;
  callbacks: Callback[];
}

const COMMAND = 'fenliuRateLimit';

/** INCRBY for n requests at once; a window starts with the first of them (fixed window, as @fastify/rate-limit's own store). */
const LUA = `
local n, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local current = redis.call('INCRBY', KEYS[1], n)
local ttl = window
if current == n then
  redis.call('PEXPIRE', KEYS[1], window)
else
  ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], window)
    ttl = window
  end
end
return {current, ttl}`;

/**
 * A store for @fastify/rate-limit that counts in Redis, shared by every API process like the
 * plugin's own RedisStore, but coalesces: the requests of one event-loop turn that share a key
 * cost one INCRBY together instead of one script call each. Each request still gets its exact
 * place in the window (current = total − n + its position), so limits are as strict as before.
 * (continueExceeding and exponentialBackoff are not used by fenliu and not supported.)
 */
export function coalescingRedisStore(redis: Redis, nameSpace: string) {
  if (!(redis as unknown as Record<string, unknown>)[COMMAND]) redis.defineCommand(COMMAND, { numberOfKeys: 1, lua: LUA });
  let pending = new Map<string, Pending>();
  let scheduled = false;

  const flush = (): void => {
    const batch = pending;
    pending = new Map();
    scheduled = false;
    // Keys of several slots on Redis Cluster: sent together, not as one pipeline (src/store/fanout.ts).
    const p = spread(redis) as unknown as Record<string, (...a: unknown[]) => unknown> & { exec(): Promise<[Error | null, unknown][] | null> };
    for (const [key, x] of batch) p[COMMAND](key, x.callbacks.length, x.timeWindow);
    p.exec().then(
      (res) => {
        let i = 0;
        for (const x of batch.values()) {
          const [err, v] = res?.[i++] ?? [new Error('no reply')];
          if (err) for (const cb of x.callbacks) cb(err);
          else {
            const [total, ttl] = v as [number, number];
            const first = total - x.callbacks.length;
            x.callbacks.forEach((cb, j) => cb(null, { current: first + j + 1, ttl }));
          }
        }
      },
      (err: Error) => {
        for (const x of batch.values()) for (const cb of x.callbacks) cb(err);
      },
    );
  };

  return class CoalescingRedisStore {
    private readonly prefix: string;

    constructor(_globalParams?: unknown, prefix = nameSpace) {
      this.prefix = prefix;
    }

    incr(key: string, cb: Callback, timeWindow: number): void {
      const k = this.prefix + key;
      const x = pending.get(k);
      if (x) x.callbacks.push(cb);
      else pending.set(k, { timeWindow, callbacks: [cb] });
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    }

    child(routeOptions: object): CoalescingRedisStore {
      const info = (routeOptions as { routeInfo?: { method?: string; url?: string } }).routeInfo ?? {};
      return new CoalescingRedisStore(undefined, `${this.prefix}${info.method}${info.url}-`);
    }
  };
}
