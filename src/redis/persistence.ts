import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

/**
 * What a 202 is worth depends on how Redis keeps its data (docs/reliability.md). At start-up
 * fenliu reads the settings that matter and warns loudly, or refuses to start with
 * `redis.requirePersistence: true`, when an accepted alert could be lost by Redis itself:
 *
 * - `appendonly no`: a Redis restart or crash loses everything since the last RDB snapshot;
 * - `appendfsync no`: the OS decides when the AOF reaches disk (tens of seconds may be lost);
 * - `maxmemory-policy` other than `noeviction`: under memory pressure Redis deletes keys,
 *   alerts and queued jobs among them, silently.
 *
 * Managed Redis services often disable CONFIG: then nothing can be checked, which is said once
 * (and, with requirePersistence, tolerated: the operator vouches for the service).
 */
export interface PersistenceReport {
  /** False when CONFIG GET is refused (renamed or disabled). */
  checked: boolean;
  appendonly?: string;
  appendfsync?: string;
  maxmemoryPolicy?: string;
  /** One sentence per problem; empty when the settings keep every 202. */
  problems: string[];
}

export class PersistenceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PersistenceError';
  }
}

async function configGet(redis: Redis, name: string): Promise<string | undefined> {
  const res = (await redis.call('CONFIG', 'GET', name)) as string[] | Record<string, string> | null;
  if (Array.isArray(res)) return res.length >= 2 ? String(res[1]) : undefined;
  if (res && typeof res === 'object') return res[name];
  return undefined;
}

/** Reads the persistence settings; never throws for a disabled CONFIG command. */
export async function inspectPersistence(redis: Redis): Promise<PersistenceReport> {
  let appendonly: string | undefined;
  let appendfsync: string | undefined;
  let maxmemoryPolicy: string | undefined;
  try {
    appendonly = await configGet(redis, 'appendonly');
    appendfsync = await configGet(redis, 'appendfsync');
    maxmemoryPolicy = await configGet(redis, 'maxmemory-policy');
  } catch (err) {
    const msg = (err as Error).message ?? '';
    // "ERR unknown command 'CONFIG'", a renamed command, or an ACL without +config.
    if (/unknown command|NOPERM|no permissions|not allowed|disabled/i.test(msg)) return { checked: false, problems: [] };
    throw err;
  }
  const problems: string[] = [];
  if (appendonly !== undefined && appendonly !== 'yes') {
    problems.push('appendonly is "no": a Redis restart or crash loses every alert accepted since the last snapshot (set appendonly yes)');
  } else if (appendfsync === 'no') {
    problems.push('appendfsync is "no": the OS decides when accepted alerts reach disk (set appendfsync everysec or always)');
  }
  if (maxmemoryPolicy !== undefined && maxmemoryPolicy !== 'noeviction') {
    problems.push(`maxmemory-policy is "${maxmemoryPolicy}": under memory pressure Redis deletes alerts and queued deliveries (set maxmemory-policy noeviction)`);
  }
  return { checked: true, appendonly, appendfsync, maxmemoryPolicy, problems };
}

/**
 * The start-up check: logs what was found; with `require` a problem is fatal (PersistenceError),
 * otherwise it is a loud warning on the log and on `notice` (stderr of `fenliu serve`).
 */
export async function checkPersistence(redis: Redis, log: Logger, opts: { require: boolean; notice?: (line: string) => void }): Promise<PersistenceReport> {
  const r = await inspectPersistence(redis);
  if (!r.checked) {
    log.warn('Redis refuses CONFIG GET, so its persistence settings cannot be checked; make sure it runs with appendonly yes and maxmemory-policy noeviction');
    return r;
  }
  if (!r.problems.length) {
    log.info({ appendonly: r.appendonly, appendfsync: r.appendfsync, maxmemoryPolicy: r.maxmemoryPolicy }, 'Redis persistence keeps accepted alerts');
    return r;
  }
  const text = `Redis persistence does not keep what a 202 promises: ${r.problems.join('; ')}`;
  if (opts.require) throw new PersistenceError(`${text}. redis.requirePersistence is true, so fenliu will not start.`);
  log.warn({ appendonly: r.appendonly, appendfsync: r.appendfsync, maxmemoryPolicy: r.maxmemoryPolicy }, `WARNING: ${text}`);
  opts.notice?.(`fenliu: WARNING: ${text} (see docs/reliability.md; set redis.requirePersistence: true to refuse to start)`);
  return r;
}
