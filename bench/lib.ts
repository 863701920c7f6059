/**
 * Shared pieces of the benchmarks: a private redis-server (AOF everysec, noeviction, as in
 * production), child processes that print `READY <url>` when they listen, RSS of a child,
 * percentiles, and the alert bodies the load generators send.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { freePort } from '../src/redis/embedded.js';
export { freePort };

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');


const children = new Set<ChildProcess>();
const dirs = new Set<string>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

export interface BenchRedis {
  url: string;
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** A private redis-server; `args` adds options (e.g. `--replicaof 127.0.0.1 PORT` for a replica). */
export async function startRedis(args: string[] = []): Promise<BenchRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'fenliu-bench-redis-'));
  dirs.add(dir);
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec', '--maxmemory-policy', 'noeviction', '--loglevel', 'warning', ...args],
    { stdio: 'ignore' },
  );
  children.add(child);
  const url = `redis://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on("error", () => undefined);
    try {
      await r.connect();
      await r.ping();
      r.disconnect();
      break;
    } catch {
      r.disconnect();
      if (i > 200) throw new Error('redis-server did not start');
      await sleep(25);
    }
  }
  return { url, port, child, stop: () => stopChild(child) };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export interface Proc {
  child: ChildProcess;
  /** What the child printed after READY (its URL), if anything. */
  url: string;
  stop(): Promise<void>;
  stderr(): string;
  /** Log lines at warn or error (pino levels 40+) on stdout since it was ready, counted by message. */
  problems(): Map<string, number>;
}

/**
 * Starts `node --import tsx <args>` and waits for a `READY [url]` line on stdout (or, for the
 * fenliu CLI, `fenliu: listening on <url>` / `fenliu: running` on stderr).
 */
export async function startNode(args: string[], opts: { env?: NodeJS.ProcessEnv; nodeArgs?: string[] } = {}): Promise<Proc> {
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), '--import', 'tsx', ...args], {
    cwd: ROOT,
    env: { ...process.env, NODE_OPTIONS: '', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  let err = '';
  const url = await new Promise<string>((resolve, reject) => {
    const check = () => {
      const m = /^READY ?(\S*)/m.exec(out) ?? /fenliu: listening on (\S+)/.exec(err);
      if (m) return resolve(m[1] ?? '');
      if (/fenliu: running/.test(err)) return resolve('');
    };
    child.stdout!.on('data', (d) => {
      if (out.length < 100_000) out += d.toString();
      check();
    });
    child.stderr!.on('data', (d) => {
      err += d.toString();
      if (err.length > 200_000) err = err.slice(-100_000);
      check();
    });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited (${code}) before it was ready:\n${err.slice(-3000)}`)));
    setTimeout(() => reject(new Error(`${args.join(' ')} not ready after 30 s:\n${err.slice(-3000)}`)), 30_000).unref();
  });
  // Ready: from now on stdout (fenliu's access lines, ~4 MB/s under load) is only drained. Kept
  // and matched against the READY pattern per chunk, it cost this process, which also runs the
  // load generator, CPU that the naive servers (which log nothing) did not make it spend.
  child.stdout!.removeAllListeners('data');
  // Only warn and error lines are looked at (the byte after `{"level":` of each line, no parse):
  // a stack frozen and thawed by the system row must not have failed quietly (a command timing out).
  const problems = new Map<string, number>();
  child.stdout!.on('data', (d: Buffer) => {
    for (let at = d.indexOf(LEVEL); at !== -1; at = d.indexOf(LEVEL, at + LEVEL.length)) {
      const level = d[at + LEVEL.length];
      if (level !== 0x34 && level !== 0x35 && level !== 0x36) continue; // '4' warn, '5' error, '6' fatal
      const end = d.indexOf(0x0a, at);
      const line = d.subarray(at, end === -1 ? d.length : end).toString();
      const text = (key: string) => new RegExp(`"${key}":"((?:[^"\\\\]|\\\\.)*)"`).exec(line)?.[1];
      const err = text('message');
      const msg = `${level === 0x34 ? 'warn' : 'error'}: ${text('msg') ?? line.slice(0, 200)}${err ? ` (${err.slice(0, 120)})` : ''}`;
      problems.set(msg, (problems.get(msg) ?? 0) + 1);
    }
  });
  child.stderr!.removeAllListeners('data');
  child.stderr!.on('data', (d) => {
    err += d.toString();
    if (err.length > 200_000) err = err.slice(-100_000);
  });
  return { child, url, stop: () => stopChild(child), stderr: () => err, problems: () => problems };
}

const LEVEL = Buffer.from('{"level":');

export function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(t);
      children.delete(child);
      resolve();
    });
    child.kill(signal);
  });
}

/** Resident set size of a process, in bytes (Linux /proc). */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** CPU time (user + system, µs) a process has used so far, from /proc (Linux). */
export function cpuOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  // utime and stime are fields 14 and 15 of the stat line, in clock ticks (100 per second on Linux).
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

/**
 * CPU time (µs) a Redis server has used so far, its forks included: an AOF rewrite's child (it
 * dumps the whole dataset, and a gateway writing more AOF bytes per alert rewrites more often)
 * took ~10% of a core in the system row, and is counted when it ends.
 */
export async function redisCpu(redis: Redis): Promise<number> {
  const c = await redisCpuSplit(redis);
  return c.main + c.forks;
}

/** redisCpu in two: the server's own threads, and its forks (AOF rewrites), µs. */
export async function redisCpuSplit(redis: Redis): Promise<{ main: number; forks: number }> {
  const info = await redis.info('cpu');
  const v = (k: string) => Number(new RegExp(`${k}:([0-9.]+)`).exec(info)?.[1] ?? 0);
  return { main: (v('used_cpu_user') + v('used_cpu_sys')) * 1e6, forks: (v('used_cpu_user_children') + v('used_cpu_sys_children')) * 1e6 };
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

export const SOURCE = 'bench-110';
export const SOURCE_KEY = 'bench-source-key';

let seq = 0;
const RUN = Date.now().toString(36);

/**
 * A valid alert, unique per call: source.alertId, caller phone and address all differ, so
 * neither idempotency nor repeat-call matching short-circuits the work.
 */
export function benchAlert(tag = 'a'): Record<string, unknown> {
  const n = ++seq;
  return {
    source: { system: SOURCE, alertId: `B-${RUN}-${tag}-${n}`, desk: 'D01' },
    reportedAt: '2026-11-29T09:12:00+08:00',
    category: 'consumer.refund',
    summary: '米粉店消费纠纷，顾客要求退款',
    description: '顾客称米粉有异物，要求退款，店主不同意，双方争执，民警到场后现场已控制。',
    location: { address: `湖北省黄石市下陆区杭州西路${n}号 ${tag}`, regionCode: '420204' },
    caller: { name: '张某', phone: `1${String(3000000000 + n).padStart(10, '0')}`, confidential: false },
    police: { unit: '下陆派出所', officerId: 'P0001', sceneStatus: 'controlled', assessment: '消费纠纷，建议分流至12345' },
    priority: 'normal',
  };
}

/** A fenliu config for the benchmarks: one source, one webhook platform at `receiverUrl`, everything on by default (repeat matching, SLA timers, audit archive). */
export function fenliuConfig(o: { port: number; redisUrl: string; receiverUrl: string; auditDir: string; concurrency: number; logLevel?: string; archiveIn?: 'workers' | 'archiver' }): Record<string, unknown> {
  return {
    server: { host: '127.0.0.1', port: o.port, bodyLimitBytes: 65536, shutdownTimeoutMs: 10_000 },
    redis: { url: o.redisUrl, prefix: 'fenliu', requirePersistence: true },
    log: { level: o.logLevel ?? 'info' },
    keys: [],
    sources: [{ id: SOURCE, keys: [{ id: 'bench', sha256: createHash('sha256').update(SOURCE_KEY).digest('hex'), scopes: ['alerts:write', 'alerts:read'] }], rateLimit: { max: 1_000_000, perSeconds: 1 } }],
    platforms: [
      {
        id: 'p-hook',
        adapter: 'webhook',
        url: o.receiverUrl,
        options: { path: '/tickets', response: { ticketIdPath: 'id' } },
        concurrency: o.concurrency,
      },
    ],
    policeOnly: ['violence.*', 'theft.in-progress', 'person.missing', 'fire'],
    routes: [{ id: 'default', default: true, targets: ['p-hook'] }],
    sandbox: { enabled: false },
    audit: { dir: o.auditDir, archive: true, archiveIn: o.archiveIn ?? 'workers' },
  };
}

/** Writes a config file in a temp dir; returns its path. */
export function writeConfig(doc: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'fenliu-bench-cfg-'));
  dirs.add(dir);
  const path = join(dir, 'fenliu.json');
  writeFileSync(path, JSON.stringify(doc, null, 2));
  return path;
}

export function tempDir(tag: string): string {
  const d = mkdtempSync(join(tmpdir(), `fenliu-bench-${tag}-`));
  dirs.add(d);
  return d;
}

/** `node --import tsx src/cli.ts serve --config <file> --role <role>`, from this checkout or `root` (another one: `--compare`). */
export function startFenliuProcess(configPath: string, role: 'all' | 'api' | 'worker' | 'archiver', nodeArgs: string[] = [], env: NodeJS.ProcessEnv = {}, root = ROOT): Promise<Proc> {
  return startNode([join(root, 'src', 'cli.ts'), 'serve', '--config', configPath, '--role', role], { nodeArgs, env: { REDIS_URL: '', ...env } });
}

/**
 * The audit archiver's figures from a process's /metrics (docs/operations.md): events archived
 * and, per phase, CPU and wall µs per event over the process's life. Its CPU per phase is exact
 * only in an archiver process; in a worker, deliveries that ran while a phase waited count too.
 */
export async function archiverFigures(metricsUrl: string): Promise<{ events: number; cpuUsPerEvent: Record<string, number>; wallUsPerEvent: Record<string, number> }> {
  const text = await (await fetch(metricsUrl)).text();
  const get = (name: string) => {
    const out: Record<string, number> = {};
    for (const m of text.matchAll(new RegExp(`^${name}\\{[^}]*phase="(\\w+)"[^}]*\\} (\\S+)$`, 'gm'))) out[m[1]] = Number(m[2]);
    return out;
  };
  const events = Number(/^fenliu_audit_archived_events_total(?:\{[^}]*\})? (\S+)$/m.exec(text)?.[1] ?? 0);
  const per = (o: Record<string, number>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, (v * 1e6) / Math.max(1, events)]));
  return { events, cpuUsPerEvent: per(get('fenliu_audit_archive_cpu_seconds_total')), wallUsPerEvent: per(get('fenliu_audit_archive_phase_seconds_total')) };
}

/** used_memory of Redis, in bytes. */
export async function redisMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? NaN);
}

/** Commands Redis has executed so far (INFO commandstats; a Lua script's inner calls count too). */
export async function redisCalls(redis: Redis): Promise<number> {
  const info = await redis.info('commandstats');
  let n = 0;
  for (const m of info.matchAll(/calls=(\d+)/g)) n += Number(m[1]);
  return n;
}

/** Calls per command so far (INFO commandstats): `run.ts --commands` prints the difference per delivery. */
export async function redisCommandCalls(redis: Redis): Promise<Map<string, number>> {
  const info = await redis.info('commandstats');
  const out = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1], Number(m[2]));
  return out;
}

/** Redis CPU µs per command so far (INFO commandstats `usec`; a script's time includes its inner calls, which are also listed on their own). */
export async function redisCommandUsec(redis: Redis): Promise<Map<string, number>> {
  const info = await redis.info('commandstats');
  const out = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=\d+,usec=(\d+)/gm)) out.set(m[1], Number(m[2]));
  return out;
}

/** Bytes Redis has read from and written to its clients so far (INFO stats). */
export async function redisNet(redis: Redis): Promise<[number, number]> {
  const info = await redis.info('stats');
  return [Number(/total_net_input_bytes:(\d+)/.exec(info)?.[1]), Number(/total_net_output_bytes:(\d+)/.exec(info)?.[1])];
}

/** `after - before` per unit, largest first, as `cmd 1.0` pairs. */
export function commandBreakdown(before: Map<string, number>, after: Map<string, number>, units: number): string {
  return [...after]
    .map(([cmd, n]) => [cmd, (n - (before.get(cmd) ?? 0)) / units] as const)
    .filter(([, n]) => n >= 0.05)
    .sort((a, b) => b[1] - a[1])
    .map(([cmd, n]) => `${cmd} ${n.toFixed(1)}`)
    .join(', ');
}

/** The fields of an audit event the kept pair's archiver indexes (src/audit/event-index.ts). */
export interface KeptEventMeta {
  type: string;
  at: string;
  alertId: string;
  deliveryId?: string;
  platformId?: string;
  sourceId?: string;
}

/**
 * The kept pair's stream entries carry these fields beside the event (field `m`), so its archiver
 * indexes without parsing the event: written by bench/servers/kept.ts and kept-worker.ts.
 */
export function keptMeta(m: KeptEventMeta): string {
  return [m.type, m.at, m.alertId, m.deliveryId ?? '', m.platformId ?? '', m.sourceId ?? ''].join('\t');
}

/** keptMeta's fields back (kept-worker.ts's archiver). */
export function parseKeptMeta(s: string): KeptEventMeta {
  const [type, at, alertId, deliveryId, platformId, sourceId] = s.split('\t');
  return { type, at, alertId, deliveryId: deliveryId || undefined, platformId: platformId || undefined, sourceId: sourceId || undefined };
}
