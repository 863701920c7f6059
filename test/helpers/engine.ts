/**
 * Test helper for the delivery engine: a private Redis, sandbox platforms on loopback, and fenliu
 * (role `all` unless told) whose platforms point at them, with tiny retry delays and timeouts.
 *
 *   const env = await startEngineEnv(t, { platforms: [{ id: 'p1', kind: 'hotline-12345' }] });
 *   const { deliveries } = await env.submit();
 *   await env.waitForState(deliveries.p1, 'delivered');
 *
 * Real Redis, real HTTP; nothing mocked. Waiting polls Redis, never sleeps blindly.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { startSandbox, type Sandbox, type SandboxKind } from '../../src/sandbox/index.js';
import { keys as redisKeys } from '../../src/store/keys.js';
import { KEYS, ROOT, alert, api, childEnv, startTestFenliu, testConfig, type ConfigDoc, type TestFenliu } from './fenliu.js';
import { startRedis, type TestRedis } from './redis.js';
import { freePort } from '../../src/redis/embedded.js';
export { freePort };

export { KEYS, alert, api };

/** Options each sandbox kind needs to be a valid platform for its adapter. */
export const ADAPTER_OPTIONS: Record<string, Record<string, unknown>> = {
  'hotline-12345': { defaultCategoryCode: '9999' },
  'grid-governance': { defaultGridCode: '420200000000', defaultEventType: 'MD99' },
  'city-ops': {},
  open311: { apiKey: 'sandbox-key', defaultServiceCode: 'GENERAL' },
  webhook: { path: '/hook', response: { ticketIdPath: 'id' } },
};

/** Retry and timeout settings small enough for tests. */
export const FAST = {
  retry: { delaysMs: [50, 100, 200], jitter: 'none' },
  timeouts: { connectMs: 1000, headersMs: 600, bodyMs: 600 },
};

export interface EnginePlatform {
  id: string;
  /** Sandbox kind; also the adapter unless `adapter` says otherwise. Absent with `url`: no sandbox. */
  kind?: SandboxKind;
  adapter?: string;
  /** Overrides the sandbox URL (connection refused, DNS failure). */
  url?: string;
  options?: Record<string, unknown>;
  /** Any other platform config keys (retry, timeouts, auth, fields, circuitBreaker, concurrency, ...). */
  [k: string]: unknown;
}

export interface EngineEnvOptions {
  platforms: EnginePlatform[];
  /** Routes; default: one default route to every platform. */
  routes?: unknown[];
  engine?: { lockDurationMs?: number; stalledIntervalMs?: number; ingestClaimIdleMs?: number; pollMs?: number; ingestWriteThrough?: boolean };
  /** Other top-level config keys (retention, audit, ...), as testConfig takes them. */
  extra?: ConfigDoc;
  role?: 'all' | 'api' | 'worker';
  /** Use this Redis instead of starting one (give each env its own `prefix` then). */
  redis?: TestRedis;
  /** Redis Cluster seed nodes (test/helpers/cluster.ts `nodes`) instead of a standalone Redis. */
  cluster?: { host: string; port: number }[];
  /** Redis key prefix; default a fresh one per env. */
  prefix?: string;
}

export interface EngineEnv {
  /** Absent on Cluster. */
  redis?: TestRedis;
  sandbox: Sandbox;
  f: TestFenliu;
  url: string;
  /** The config document (before validation), e.g. for a child worker. */
  doc: ConfigDoc;
  r: Redis;
  k: ReturnType<typeof redisKeys>;
  admin: ReturnType<typeof api>;
  source: ReturnType<typeof api>;
  submit(over?: Record<string, unknown>): Promise<{ alertId: string; deliveries: Record<string, string> }>;
  delivery(id: string): Promise<any>;
  waitForState(id: string, state: string | string[], timeoutMs?: number): Promise<any>;
  close(): Promise<void>;
}


let seq = 0;

/**
 * Pass a SUBTEST as `t`: its teardown closes everything. (Root-level teardowns in tap run only
 * once the event loop is idle, which the delivery loops and the lifecycle worker never let happen.)
 */
export async function startEngineEnv(t: { teardown(fn: () => unknown): void }, o: EngineEnvOptions): Promise<EngineEnv> {
  const redis = o.cluster ? undefined : (o.redis ?? (await startRedis()));
  const sandbox = await startSandbox({ platforms: o.platforms.filter((p) => p.kind && !p.url).map((p) => ({ id: p.id, kind: p.kind! })) });
  const platforms = o.platforms.map((p) => {
    const { kind, adapter, url, options, ...rest } = p;
    return {
      ...FAST,
      ...rest,
      adapter: adapter ?? kind,
      url: url ?? sandbox.get(p.id).url,
      options: options ?? ADAPTER_OPTIONS[adapter ?? kind ?? ''] ?? {},
    };
  });
  const doc = testConfig({
    platforms,
    routes: o.routes ?? [{ id: 'default', default: true, targets: platforms.map((p) => p.id) }],
    redis: { prefix: o.prefix ?? `eng${++seq}`, ...(o.cluster ? { cluster: o.cluster } : {}) },
    ...(o.engine ? { engine: o.engine } : {}),
    ...o.extra,
  });
  const f = await startTestFenliu({ redisUrl: redis?.url, cfg: doc, role: o.role ?? 'all' });
  // On Cluster the client reaches every shard; the helpers here use it as a Redis.
  const r = o.cluster ? (new Cluster(o.cluster, { redisOptions: { maxRetriesPerRequest: 1 } }) as unknown as Redis) : new Redis(redis!.url, { lazyConnect: false, maxRetriesPerRequest: 1 });
  r.on('error', () => undefined);
  const k = redisKeys(f.cfg.redis.prefix);
  const admin = api(f.url, KEYS.admin);
  const source = api(f.url, KEYS.sourceA);

  const delivery = async (id: string) => {
    const h = await r.hgetall(k.delivery(id));
    const attempts = await r.lrange(k.attempts(id), 0, -1);
    return { ...h, attempts: Number(h.attempts ?? 0), attemptLog: attempts.map((a) => JSON.parse(a)) };
  };

  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    // Sandbox first: it cuts hanging connections, so in-flight attempts end at once.
    await sandbox.close().catch(() => undefined);
    await f.stop().catch(() => undefined);
    r.disconnect();
    if (redis && !o.redis) await redis.stop().catch(() => undefined);
  };
  t.teardown(close);

  return {
    redis,
    sandbox,
    f,
    url: f.url,
    doc,
    r,
    k,
    admin,
    source,
    async submit(over = {}) {
      const res = await source.post('/v1/alerts', alert(`ENG-${process.pid}-${++seq}`, over));
      if (res.status !== 202) throw new Error(`submit: ${res.status} ${res.text}`);
      const deliveries: Record<string, string> = {};
      for (const d of res.body.deliveries) deliveries[d.platformId] = d.id;
      return { alertId: res.body.id, deliveries };
    },
    delivery,
    async waitForState(id, state, timeoutMs = 10_000) {
      const want = Array.isArray(state) ? state : [state];
      const until = Date.now() + timeoutMs;
      for (;;) {
        const cur = await r.hget(k.delivery(id), 'state');
        if (cur && want.includes(cur)) return delivery(id);
        if (Date.now() > until) {
          const d = await delivery(id);
          throw new Error(`delivery ${id}: state ${cur}, wanted ${want.join('|')} within ${timeoutMs} ms; lastError=${(d as Record<string, unknown>).lastError}; attempts=${d.attempts}`);
        }
        await new Promise((res) => setTimeout(res, 20));
      }
    },
    close,
  };
}

/** Polls `check` until it returns a truthy value. */
export async function until<T>(check: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

/**
 * The circuit scenario both topologies check: a success held in flight (a slow body) while two
 * faults are counted in `circuitKey` as another worker process's failure script counts them
 * (HINCRBY); resolves once that success is delivered. Platform `p-12345` (hotline-12345) with a
 * threshold above 2. test/engine-circuit-429.test.ts, test/ha/circuit-cluster.ha.ts.
 */
export async function faultsDuringSuccess(env: EngineEnv, circuitKey: string): Promise<void> {
  const sb = env.sandbox.get('p-12345');
  sb.setFault({ fault: 'slow-body', times: 1, slowBodyMs: 1_500 });
  const slow = await env.submit();
  await until(() => sb.received.length === 1, 10_000, 'the slow request arrived');
  await env.r.hincrby(circuitKey, 'failures', 2);
  await env.waitForState(slow.deliveries['p-12345'], 'delivered', 10_000);
}

/**
 * Worker-role processes (test/fixtures/worker-child.ts) on this config and Redis, each resolved
 * once it says ready; tests kill them for real, and any still running is SIGKILLed at the end.
 */
export function workerChildren(t: { teardown(fn: () => unknown): void }, doc: ConfigDoc, redisUrl: string): () => Promise<ChildProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'fenliu-worker-'));
  const cfgFile = join(dir, 'config.json');
  writeFileSync(cfgFile, JSON.stringify(doc));
  const children: ChildProcess[] = [];
  t.teardown(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  return async () => {
    const child = await startWorkerChild(cfgFile, redisUrl);
    children.push(child);
    return child;
  };
}

/** A worker-role process (test/fixtures/worker-child.ts) on `redisUrl`, resolved once it says ready: tests kill it for real. */
function startWorkerChild(cfgFile: string, redisUrl: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test', 'fixtures', 'worker-child.ts'), cfgFile, redisUrl], {
    cwd: ROOT,
    env: childEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker child not ready in 60 s: ${err}`)), 60_000);
    child.stdout!.on('data', (d) => {
      if (String(d).includes('ready')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker child exited (${code}) before ready: ${err}`));
    });
  });
}
