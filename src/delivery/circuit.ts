import type { Redis } from 'ioredis';
import type { ScriptOp } from '../lifecycle/transition.js';

/** Circuit breaker settings of one platform (config `circuitBreaker`). */
export interface CircuitOptions {
  /** Consecutive transport failures that open the circuit. Default 5. */
  failureThreshold: number;
  /** How long the circuit stays open before one probe is let through. Default 30 s. */
  cooldownMs: number;
}

export const DEFAULT_CIRCUIT: CircuitOptions = { failureThreshold: 5, cooldownMs: 30_000 };

export type CircuitState = 'closed' | 'open' | 'half-open';

/**
 * Shared by all worker processes through Redis: the count of consecutive transport failures and
 * the time the circuit opened. While open, jobs are delayed until the cool-down ends, then a
 * single probe (a lock) decides: success closes, failure reopens.
 */
export class Circuit {
  /** The hash of failures and opening time; the circuit is closed while it has no `openedAt`. */
  readonly key: string;

  constructor(
    private readonly redis: Redis,
    prefix: string,
    readonly platformId: string,
    readonly opts: CircuitOptions,
  ) {
    this.key = `${prefix}:circuit:${platformId}`;
  }

  async state(now = Date.now()): Promise<{ state: CircuitState; failures: number; openUntil?: number }> {
    const [failures, openedAt] = await this.redis.hmget(this.key, 'failures', 'openedAt');
    const f = Number(failures ?? 0);
    if (!openedAt) return { state: 'closed', failures: f };
    const until = Number(openedAt) + this.opts.cooldownMs;
    return { state: now < until ? 'open' : 'half-open', failures: f, openUntil: until };
  }

  /**
   * May a request go out now? Returns the ms to wait when not. In half-open state only the
   * holder of the probe lock may send.
   */
  async admit(probeToken: string, now = Date.now()): Promise<{ ok: true; probe: boolean } | { ok: false; waitMs: number }> {
    const s = await this.state(now);
    if (s.state === 'closed') return { ok: true, probe: false };
    if (s.state === 'open') return { ok: false, waitMs: s.openUntil! - now };
    const got = await this.redis.set(`${this.key}:probe`, probeToken, 'PX', Math.max(this.opts.cooldownMs, 10_000), 'NX');
    if (got === 'OK') return { ok: true, probe: true };
    return { ok: false, waitMs: Math.max(1_000, Math.min(this.opts.cooldownMs, 5_000)) };
  }

  /**
   * Closes the circuit. `probe: false` leaves the probe lock alone: the caller holds none, with the
   * circuit closed nobody reads one, and it expires.
   */
  async success(probe = true): Promise<CircuitState> {
    // Two keys of two slots (Redis Cluster): not one MULTI.
    await Promise.all([this.redis.del(this.key), probe ? this.redis.del(`${this.key}:probe`) : undefined]);
    return 'closed';
  }

  /** success() as writes for the caller's script (standalone Redis), so closing costs no round trip of its own. */
  successOps(probe = true): ScriptOp[] {
    const ops: ScriptOp[] = [{ cmd: 'DEL', key: this.key, args: [] }];
    if (probe) ops.push({ cmd: 'DEL', key: `${this.key}:probe`, args: [] });
    return ops;
  }

  /** Frees the half-open probe slot without a verdict (the probe sent nothing). */
  async releaseProbe(probeToken: string): Promise<void> {
    await this.redis.eval(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`, 1, `${this.key}:probe`, probeToken);
  }

  /** Counts a transport failure; opens (or reopens) the circuit at the threshold. */
  async failure(now = Date.now()): Promise<CircuitState> {
    // The probe lock is another slot (Redis Cluster): released beside the script, not in it.
    const res = (await this.redis.eval(
      `local f = redis.call('HINCRBY', KEYS[1], 'failures', 1)
       if f >= tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'openedAt', ARGV[2]) return 1 end
       return 0`,
      1,
      this.key,
      String(this.opts.failureThreshold),
      String(now),
    )) as number;
    if (res === 1) await this.redis.del(`${this.key}:probe`);
    return res === 1 ? 'open' : 'closed';
  }
}
