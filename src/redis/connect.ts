import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../config/types.js';

/** A `host`/`port` pair of a Sentinel or Cluster node. */
export interface RedisNode {
  host: string;
  port: number;
}

/** TLS for the data nodes (and sentinels): ioredis `tls` options; ca/cert/key are file paths. */
export interface RedisTlsConfig {
  ca?: string;
  cert?: string;
  key?: string;
  servername?: string;
  /** Default true. */
  rejectUnauthorized?: boolean;
}

/**
 * Where fenliu's Redis is: one node by URL (embedded or external), a Sentinel-watched master
 * group, or a Cluster. Every connection fenliu opens is made from one of these by `openRedis`.
 */
export type RedisTarget =
  | { kind: 'url'; url: string }
  | { kind: 'sentinel'; sentinels: RedisNode[]; name: string; password?: string; sentinelPassword?: string; tls?: RedisTlsConfig }
  | { kind: 'cluster'; nodes: RedisNode[]; password?: string; tls?: RedisTlsConfig };

/**
 * What the connection is for:
 * - `api`: request handlers. Commands fail at once while Redis (or its master) is away, so the API
 *   answers 503 instead of hanging; the client keeps reconnecting so the API recovers by itself.
 * - `worker`: BullMQ workers and other background loops: commands wait and are retried for ever
 *   (BullMQ's requirement for blocking commands: `maxRetriesPerRequest: null`).
 */
export type RedisPurpose = 'api' | 'worker';

/**
 * The target the config describes: `url` (or the override, or `REDIS_URL`), else Sentinel, else
 * Cluster; `undefined` means none: fenliu starts its embedded redis-server.
 */
export function redisTarget(redis: Config['redis'], env: NodeJS.ProcessEnv = {}, overrideUrl?: string): RedisTarget | undefined {
  if (overrideUrl) return { kind: 'url', url: overrideUrl };
  if (redis.url) return { kind: 'url', url: redis.url };
  if (redis.sentinels?.length) {
    return { kind: 'sentinel', sentinels: redis.sentinels, name: redis.name ?? 'mymaster', password: redis.password, sentinelPassword: redis.sentinelPassword, tls: redis.tls };
  }
  if (redis.cluster?.length) return { kind: 'cluster', nodes: redis.cluster, password: redis.password, tls: redis.tls };
  if (env.REDIS_URL) return { kind: 'url', url: env.REDIS_URL };
  return undefined;
}

const retryStrategy = (n: number) => Math.min(50 * 2 ** n, 1_000);

/**
 * A connection that sees a READONLY reply is talking to a demoted master (a Sentinel failover
 * while the old master stayed up, or a Cluster slot moved): reconnect, which asks the sentinels
 * for the new master. Workers also resend the command (it was refused, so it did not run).
 */
const reconnectOnReadonly = (resend: boolean) => (err: Error) => (/^READONLY/.test(err.message) ? (resend ? 2 : 1) : false);

function purposeOptions(purpose: RedisPurpose): RedisOptions {
  return purpose === 'api'
    ? {
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        commandTimeout: 5_000,
        connectTimeout: 2_000,
        retryStrategy,
        reconnectOnError: reconnectOnReadonly(false),
        lazyConnect: true,
      }
    : { maxRetriesPerRequest: null, retryStrategy, reconnectOnError: reconnectOnReadonly(true) };
}

function tlsOptions(tls: RedisTlsConfig | undefined): RedisOptions['tls'] {
  if (!tls) return undefined;
  const file = (p?: string) => (p ? readFileSync(resolve(p)) : undefined);
  return { ca: file(tls.ca), cert: file(tls.cert), key: file(tls.key), servername: tls.servername, rejectUnauthorized: tls.rejectUnauthorized ?? true };
}

/** ioredis options of a Sentinel target (without the purpose's options). */
export function sentinelOptions(t: Extract<RedisTarget, { kind: 'sentinel' }>): RedisOptions {
  const tls = tlsOptions(t.tls);
  return {
    sentinels: t.sentinels,
    name: t.name,
    role: 'master',
    password: t.password,
    sentinelPassword: t.sentinelPassword,
    ...(tls ? { tls, enableTLSForSentinelMode: true, sentinelTLS: tls } : {}),
    // Sentinels publish +switch-master: reconnect at once instead of when the old master fails.
    failoverDetector: true,
    // A sentinel that does not answer is skipped quickly; the next one is asked.
    sentinelCommandTimeout: 1_000,
    // Keep asking the sentinels for ever (ioredis' default gives up after its retries).
    sentinelRetryStrategy: (n) => Math.min(100 * n, 1_000),
    updateSentinels: true,
  };
}

/** A connection fenliu holds: one node (URL or Sentinel) or a Cluster client. */
export type RedisClient = Redis | Cluster;

/**
 * A Cluster client. fenliu's keys are laid out so that every script, MULTI and pipeline stays in
 * one slot (src/store/keys.ts, docs/scaling.md), which is all a Cluster client needs; it answers
 * MOVED/ASK and follows failovers itself. Typed as `Redis` for the code that takes a connection:
 * the commands fenliu uses have the same signatures on both (see `RedisClient`).
 */
function openCluster(t: Extract<RedisTarget, { kind: 'cluster' }>, purpose: RedisPurpose, extra: RedisOptions): Redis {
  const tls = tlsOptions(t.tls);
  const { lazyConnect, enableOfflineQueue, retryStrategy: _r, ...node } = { ...purposeOptions(purpose), ...extra };
  const cluster = new Cluster(t.nodes, {
    redisOptions: { ...node, password: t.password, ...(tls ? { tls } : {}) },
    lazyConnect,
    enableOfflineQueue: enableOfflineQueue ?? true,
    // Keep looking for the cluster for ever (workers), and find a promoted replica quickly.
    clusterRetryStrategy: retryStrategy,
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 200,
    retryDelayOnTryAgain: 200,
    slotsRefreshTimeout: 2_000,
    slotsRefreshInterval: 2_000,
    scaleReads: 'master',
  });
  return cluster as unknown as Redis;
}

/**
 * ioredis 6.0: a slots refresh still in flight when `disconnect()` runs re-arms the
 * `slotsRefreshInterval` timer when it ends, and that timer then re-arms itself for ever, keeping
 * a stopped process alive (seen after a Cluster failover, test/ha/cluster.ha.ts). Once a client is
 * being closed by us, such a timer is cleared as it is set. Installed on the prototype, so it
 * holds for every Cluster client, the duplicates ioredis and BullMQ make included. `slotsTimer`
 * and `manuallyClosing` are ioredis internals (never set in its constructor, so the accessor sees
 * every assignment): test/redis-cluster-timer.test.ts fails if that changes.
 */
const slotsTimers = new WeakMap<object, NodeJS.Timeout>();
Object.defineProperty(Cluster.prototype, 'slotsTimer', {
  configurable: true,
  get(this: object) {
    return slotsTimers.get(this) ?? null;
  },
  set(this: { manuallyClosing?: boolean }, v: NodeJS.Timeout | null) {
    if (v && this.manuallyClosing) clearTimeout(v);
    else if (v) {
      slotsTimers.set(this, v);
      return;
    }
    slotsTimers.delete(this);
  },
});

/**
 * The one factory of Redis connections: every connection fenliu opens (API, workers, queues,
 * audit reader, rate limiter, console sessions) is made here, so a Sentinel or Cluster config
 * reaches all of them. `extra` overrides the purpose's options.
 */
export function openRedis(target: RedisTarget, purpose: RedisPurpose, extra: RedisOptions = {}): Redis {
  const opts = { ...purposeOptions(purpose), ...extra };
  switch (target.kind) {
    case 'url':
      return new Redis(target.url, opts);
    case 'sentinel':
      return new Redis({ ...sentinelOptions(target), ...opts });
    case 'cluster':
      return openCluster(target, purpose, extra);
  }
}

/** Connection for request handlers (see RedisPurpose `api`). */
export function apiConnection(target: RedisTarget | string, extra: RedisOptions = {}): Redis {
  return openRedis(typeof target === 'string' ? { kind: 'url', url: target } : target, 'api', extra);
}

/** Connection for BullMQ workers (see RedisPurpose `worker`). */
export function workerConnection(target: RedisTarget | string, extra: RedisOptions = {}): Redis {
  return openRedis(typeof target === 'string' ? { kind: 'url', url: target } : target, 'worker', extra);
}

/** Resolves when the client is ready, or rejects with a clear message after `timeoutMs`. */
export async function waitReady(redis: Redis, target: RedisTarget | string, timeoutMs = 5_000): Promise<void> {
  if (redis.status === 'ready') return;
  if (redis.status === 'wait') redis.connect().catch(() => undefined);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`Redis at ${describeTarget(target)} is unreachable (waited ${timeoutMs} ms)`));
    }, timeoutMs);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      redis.off('ready', onReady);
    };
    redis.on('ready', onReady);
  });
}

/** For logs and messages: the target without passwords. */
export function describeTarget(target: RedisTarget | string): string {
  if (typeof target === 'string') return redactUrl(target);
  switch (target.kind) {
    case 'url':
      return redactUrl(target.url);
    case 'sentinel':
      return `sentinel master "${target.name}" via ${target.sentinels.map((s) => `${s.host}:${s.port}`).join(',')}`;
    case 'cluster':
      return `cluster ${target.nodes.map((s) => `${s.host}:${s.port}`).join(',')}`;
  }
}

export function redactUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//***@');
}

/**
 * `redis.duplicate(extra)` that also works on a Cluster client, whose `duplicate` takes start-up
 * nodes first and cluster options second (node options such as `commandTimeout` go in
 * `redisOptions`): a blocking reader's options would otherwise be dropped there.
 */
export function duplicateConnection(redis: Redis, extra: RedisOptions = {}): Redis {
  const c = redis as unknown;
  if (!(c instanceof Cluster)) return redis.duplicate(extra);
  const { lazyConnect, enableOfflineQueue, ...node } = extra;
  return c.duplicate([], {
    ...(lazyConnect !== undefined ? { lazyConnect } : {}),
    ...(enableOfflineQueue !== undefined ? { enableOfflineQueue } : {}),
    redisOptions: { ...c.options.redisOptions, ...node },
  }) as unknown as Redis;
}
