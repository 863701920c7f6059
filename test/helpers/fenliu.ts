/**
 * Test helper: a small valid config, and fenliu started in-process on a loopback port.
 *
 *   const redis = await useRedis(t);
 *   const f = await startTestFenliu({ redisUrl: redis.url });
 *   t.teardown(() => f.stop());
 *   const res = await api(f.url, KEYS.sourceA).post('/v1/alerts', alert('A-1'));
 *
 * Real HTTP through undici; no mocks.
 */
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { request } from 'undici';
import { checkConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { createLogger } from '../../src/log.js';
import { startFenliu, type Fenliu, type Role } from '../../src/server.js';
import { servesApi } from '../../src/roles.js';
import { Dispatcher } from '../../src/ingest/dispatcher.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Plain API keys used by tests; the config holds only their SHA-256. */
export const KEYS = {
  sourceA: 'test-src-a-key',
  sourceANext: 'test-src-a-key-next',
  sourceB: 'test-src-b-key',
  auditor: 'test-auditor-key',
  admin: 'test-admin-key',
} as const;

export const SOURCE_A = 'test-110-a';
export const SOURCE_B = 'test-110-b';

export const sha256hex = (s: string) => createHash('sha256').update(s).digest('hex');

export type ConfigDoc = Record<string, any>;

/**
 * A small valid config document (before validation/defaults): two sources, three platforms,
 * routes with exact, prefix and region rules plus a default, a police-only list, sandbox off,
 * port 0, log level silent. Top-level keys in `overrides` replace the defaults, except the
 * objects server/redis/log/sandbox, which are merged.
 */
export function testConfig(overrides: ConfigDoc = {}): ConfigDoc {
  const base: ConfigDoc = {
    server: { host: '127.0.0.1', port: 0, bodyLimitBytes: 16384, shutdownTimeoutMs: 5000 },
    redis: { prefix: 'fenliu' },
    log: { level: 'silent' },
    keys: [
      { id: 'test-auditor', sha256: sha256hex(KEYS.auditor), scopes: ['audit:read'] },
      { id: 'test-admin', sha256: sha256hex(KEYS.admin), scopes: ['admin'] },
    ],
    sources: [
      {
        id: SOURCE_A,
        keys: [
          { id: 'a-2026a', sha256: sha256hex(KEYS.sourceA), scopes: ['alerts:write', 'alerts:read'] },
          { id: 'a-2026b', sha256: sha256hex(KEYS.sourceANext), scopes: ['alerts:write', 'alerts:read'] },
        ],
        rateLimit: { max: 10_000, perSeconds: 1 },
      },
      {
        id: SOURCE_B,
        keys: [{ id: 'b-2026a', sha256: sha256hex(KEYS.sourceB), scopes: ['alerts:write', 'alerts:read'] }],
        rateLimit: { max: 10_000, perSeconds: 1 },
      },
    ],
    platforms: [
      { id: 'p-12345', adapter: 'hotline-12345', url: 'http://127.0.0.1:9', options: { defaultCategoryCode: '9999' } },
      { id: 'p-grid', adapter: 'grid-governance', url: 'http://127.0.0.1:9', options: { defaultGridCode: '420200000000', defaultEventType: 'MD99' } },
      { id: 'p-cityops', adapter: 'city-ops', url: 'http://127.0.0.1:9', options: {} },
    ],
    policeOnly: ['violence.*', 'theft.in-progress', 'person.missing', 'fire'],
    routes: [
      { id: 'consumer-huangshi', match: { category: ['consumer.*'], region: ['4202'] }, targets: ['p-grid', 'p-12345'] },
      { id: 'disputes', match: { category: ['dispute.*'] }, targets: ['p-grid'], fallback: ['p-12345'] },
      { id: 'utilities', match: { category: ['utility.*'] }, targets: ['p-cityops'] },
      { id: 'default', default: true, targets: ['p-12345'] },
    ],
    sandbox: { enabled: false },
    // Tests read the audit stream; those about archiving turn it on (the default is on).
    audit: { archive: false },
  };
  const merged: ConfigDoc = { ...base };
  for (const [k, v] of Object.entries(overrides)) {
    if (['server', 'redis', 'log', 'sandbox'].includes(k) && v && typeof v === 'object' && !Array.isArray(v)) merged[k] = { ...base[k], ...v };
    else merged[k] = v;
  }
  return merged;
}

/** Validates a config document exactly as `fenliu serve` does. */
export function validConfig(doc: ConfigDoc = testConfig(), env: NodeJS.ProcessEnv = {}): Config {
  return checkConfig(structuredClone(doc), ROOT, env);
}

/** A pino destination that keeps every line written to it. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    cb();
  }
  get text(): string {
    return this.lines.join('\n');
  }
}

export interface TestFenliu extends Fenliu {
  url: string;
  cfg: Config;
}

export interface StartTestOptions {
  /** Absent: the config's redis section decides (e.g. `redis.sentinels`). */
  redisUrl?: string;
  /** Config document (see testConfig); validated here. */
  cfg?: ConfigDoc;
  role?: Role;
  /** Where log lines go; with it, the level is the config's or `info` when the config says silent. */
  logStream?: NodeJS.WritableStream;
  logLevel?: string;
}

/** Starts fenliu in this process (default role `api`: no workers, deliveries stay queued). */
export async function startTestFenliu(opts: StartTestOptions): Promise<TestFenliu> {
  const cfg = validConfig(opts.cfg ?? testConfig());
  const level = opts.logLevel ?? (opts.logStream && cfg.log.level === 'silent' ? 'info' : cfg.log.level);
  const logger = opts.logStream ? createLogger(level, opts.logStream as any) : createLogger(level);
  const f = await startFenliu(cfg, { role: opts.role ?? 'api', redisUrl: opts.redisUrl, logger, env: {} });
  if (!f.url && servesApi(opts.role ?? 'api')) throw new Error('fenliu did not listen');
  return Object.assign(f, { url: f.url ?? '', cfg });
}

export interface ApiResponse<T = any> {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** Parsed JSON body, or undefined when the body is not JSON. */
  body: T;
}

export interface ApiOptions {
  headers?: Record<string, string>;
  /** Sent as-is (not JSON-encoded). */
  raw?: string | Buffer;
  contentType?: string;
}

async function call(method: string, url: string, key: string | undefined, body: unknown, opts: ApiOptions = {}): Promise<ApiResponse> {
  const headers: Record<string, string> = { ...opts.headers };
  if (key !== undefined) headers.authorization = `Bearer ${key}`;
  let payload: string | Buffer | undefined;
  if (opts.raw !== undefined) payload = opts.raw;
  else if (body !== undefined) payload = JSON.stringify(body);
  if (payload !== undefined) headers['content-type'] = opts.contentType ?? 'application/json';
  const res = await request(url, { method: method as 'GET', headers, body: payload });
  const text = await res.body.text();
  let parsed: any;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  return { status: res.statusCode, headers: res.headers, text, body: parsed };
}

/** A tiny client bound to a base URL and (optionally) an API key. */
export function api(base: string, key?: string) {
  return {
    get: (path: string, opts?: ApiOptions) => call('GET', base + path, key, undefined, opts),
    post: (path: string, body?: unknown, opts?: ApiOptions) => call('POST', base + path, key, body, opts),
  };
}

/**
 * A valid alert for source A (or `system`), consumer dispute in Huangshi unless overridden. The
 * address carries the alertId, so distinct alerts are never linked as repeat calls of one place.
 */
export function alert(alertId: string, over: Record<string, unknown> = {}, system: string = SOURCE_A): Record<string, any> {
  return {
    source: { system, alertId },
    reportedAt: '2026-11-29T09:12:00+08:00',
    category: 'consumer.refund',
    summary: '米粉店消费纠纷，顾客要求退款',
    location: { address: `湖北省黄石市下陆区杭州西路88号 ${alertId}`, regionCode: '420204' },
    ...over,
  };
}

/**
 * How tests run the CLI as a child: `node --import tsx src/cli.ts` (what `npx tsx src/cli.ts`
 * does, without npx's start-up cost), with tap's own instrumentation removed from the env.
 */
export function cli(args: string[]): { command: string; args: string[] } {
  return { command: process.execPath, args: ['--import', 'tsx', join(ROOT, 'src', 'cli.ts'), ...args] };
}

export function childEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k === 'NODE_OPTIONS' || k.startsWith('TAP') || k.startsWith('_TAPJS')) continue;
    env[k] = v;
  }
  delete env.REDIS_URL;
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/**
 * Materialises what is in the ingest log now, as a worker's dispatcher would (src/ingest/dispatcher.ts):
 * for tests of an `api`-role fenliu (no dispatcher there) that look at deliveries, jobs or audit
 * events right after a 202. Returns how many alerts it materialised.
 */
export async function materialise(f: Fenliu): Promise<number> {
  return new Dispatcher(f.rt.redis, f.rt.keys, f.rt.cfg.redis.prefix, f.rt.materialiser, f.rt.log).drain();
}

/** How many of `n` alerts just stored went through the ingest log: all of them log-first, none with `engine.ingestWriteThrough`. */
export function logged(f: Fenliu, n: number): number {
  return f.rt.cfg.engine.ingestWriteThrough ? 0 : n;
}
