/**
 * Fault-suite harness: fenliu as real child processes (`node --import tsx src/cli.ts serve`),
 * a receiving platform that counts every request per idempotency key (in flight at once,
 * completed 2xx answers) and misbehaves on demand, and the per-scenario tally
 * (accepted / delivered / duplicated / lost).
 *
 * Nothing is mocked: real redis-server, BullMQ, undici and node:http.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { keys as redisKeys } from '../../src/store/keys.js';
import { KEYS, ROOT, alert, api, childEnv, cli, testConfig, type ConfigDoc } from '../helpers/fenliu.js';

export { KEYS, alert, api };

const tmpRoot = mkdtempSync(join(tmpdir(), 'fenliu-faults-'));
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      // gone
    }
  }
  rmSync(tmpRoot, { recursive: true, force: true });
});

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until<T>(what: string, check: () => Promise<T> | T, timeoutMs = 30_000, everyMs = 50): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------------------------
// The receiving platform
// ---------------------------------------------------------------------------------------------

/** What the receiver does with one request. */
export type Behaviour = 'ok' | 'reset' | 'hang' | 'trickle' | 'huge' | 'html' | '503' | 'slow-ok';

export interface KeyStats {
  /** Requests received with this idempotency key. */
  received: number;
  /** Complete 2xx answers with a ticket id sent for it. */
  acknowledged: number;
  inFlight: number;
  maxInFlight: number;
}

/**
 * A webhook platform (fenliu adapter `webhook`, ticket id at `id`). `behave` picks what each
 * request gets; it sees the key and how many times that key was seen before.
 */
export class Receiver {
  url = '';
  readonly byKey = new Map<string, KeyStats>();
  total = 0;
  behave: (key: string, seenBefore: number) => Behaviour = () => 'ok';
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor() {
    this.server = createServer((req, res) => void this.onRequest(req, res));
    this.server.keepAliveTimeout = 1_000;
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  async listen(): Promise<this> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  stats(key: string): KeyStats {
    let s = this.byKey.get(key);
    if (!s) this.byKey.set(key, (s = { received: 0, acknowledged: 0, inFlight: 0, maxInFlight: 0 }));
    return s;
  }

  /** Largest number of requests for one key that were open at the same time. */
  maxConcurrentPerKey(): number {
    let m = 0;
    for (const s of this.byKey.values()) m = Math.max(m, s.maxInFlight);
    return m;
  }

  private later(fn: () => void, ms: number): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const key = String(req.headers['idempotency-key'] ?? '');
    const s = this.stats(key);
    const seen = s.received;
    s.received++;
    this.total++;
    s.inFlight++;
    s.maxInFlight = Math.max(s.maxInFlight, s.inFlight);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      s.inFlight--;
    };
    res.on('close', finish);
    try {
      for await (const _ of req as AsyncIterable<Buffer>) {
        // drain
      }
    } catch {
      finish();
      return;
    }
    const ok = JSON.stringify({ id: `T-${key}`, status: 'received' });
    switch (this.behave(key, seen)) {
      case 'reset': {
        const sock = req.socket as Socket & { resetAndDestroy?: () => void };
        if (typeof sock.resetAndDestroy === 'function') sock.resetAndDestroy();
        else sock.destroy();
        return;
      }
      case 'hang':
        return; // never answers; fenliu's headers timeout ends it
      case '503':
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '0' }).end('{"error":"down"}');
        return;
      case 'html':
        // 2xx that is not what was asked for: an HTML error page from a proxy.
        res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body>Service temporarily unavailable</body></html>');
        return;
      case 'huge': {
        // 10 MB of JSON-looking garbage, written as fast as the socket takes it.
        res.writeHead(200, { 'content-type': 'application/json' });
        const chunk = Buffer.alloc(64 * 1024, 0x61);
        let left = 10 * 1024 * 1024;
        const pump = () => {
          while (left > 0 && !res.destroyed) {
            left -= chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          if (!res.destroyed) res.end();
        };
        pump();
        return;
      }
      case 'trickle': {
        // Headers at once, then one byte every 100 ms: passes a per-chunk timeout forever.
        const body = Buffer.from(ok);
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(body.length) });
        res.flushHeaders();
        let i = 0;
        const step = () => {
          if (res.destroyed) return;
          if (i >= body.length) return void res.end();
          res.write(body.subarray(i, i + 1));
          i++;
          this.later(step, 100);
        };
        step();
        return;
      }
      case 'slow-ok':
        this.later(() => {
          if (res.destroyed) return;
          res.writeHead(200, { 'content-type': 'application/json' }).end(ok, () => {
            s.acknowledged++;
          });
        }, 400);
        return;
      default:
        res.writeHead(200, { 'content-type': 'application/json' }).end(ok, () => {
          s.acknowledged++;
        });
    }
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    const closed = once(this.server, 'close');
    this.server.close();
    for (const s of this.sockets) s.destroy();
    this.server.closeAllConnections();
    await closed;
  }
}

export const WEBHOOK_OPTIONS = { path: '/hook', response: { ticketIdPath: 'id' } };

// ---------------------------------------------------------------------------------------------
// fenliu child processes
// ---------------------------------------------------------------------------------------------

let nConfig = 0;

/** A config with one webhook platform `p1` at the receiver, fast retries, small engine locks. */
export function faultConfig(receiverUrl: string, over: ConfigDoc = {}): ConfigDoc {
  const { platform, ...rest } = over;
  return testConfig({
    log: { level: 'warn' },
    audit: { dir: join(tmpRoot, `audit-${++nConfig}`) },
    server: { shutdownTimeoutMs: 8_000 },
    engine: { lockDurationMs: 2_000, stalledIntervalMs: 500 },
    platforms: [
      {
        id: 'p1',
        adapter: 'webhook',
        url: receiverUrl,
        options: WEBHOOK_OPTIONS,
        concurrency: 8,
        retry: { delaysMs: [100, 200, 400, 800, 1_000, 1_000, 1_000, 1_000, 1_000, 1_000, 1_000, 1_000, 1_000, 1_000, 1_000, 1_000, 1_000, 1_000, 1_000, 1_000], jitter: 'none' },
        timeouts: { connectMs: 1_000, headersMs: 1_500, bodyMs: 1_500 },
        circuitBreaker: { failureThreshold: 1000, cooldownMs: 100 },
        ...platform,
      },
    ],
    routes: [{ id: 'default', default: true, targets: ['p1'] }],
    ...rest,
  });
}

export function writeConfig(doc: ConfigDoc): string {
  const file = join(tmpRoot, `config-${++nConfig}.json`);
  writeFileSync(file, JSON.stringify(doc, null, 2));
  return file;
}

export interface Served {
  child: ChildProcess;
  role: string;
  url?: string;
  stderr(): string;
  /** Log lines (pino JSON on stdout). */
  stdout(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

/** `fenliu serve --config FILE --role ROLE` as a child; resolves once it listens (or runs, for workers). */
export async function serve(t: { teardown(fn: () => unknown): void }, configFile: string, role: 'all' | 'api' | 'worker', redisUrl: string): Promise<Served> {
  const c = cli(['serve', '--config', configFile, '--role', role]);
  const child = spawn(c.command, c.args, { cwd: ROOT, env: childEnv({ REDIS_URL: redisUrl, FENLIU_METRICS_OPEN: '1' }), stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  // Registered before start-up completes, so a failed start never leaves a child behind.
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let err = '';
  let out = '';
  child.stderr!.on('data', (d) => (err += d.toString()));
  child.stdout!.on('data', (d) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal, at: Date.now() });
    }),
  );
  const s: Served = { child, role, stderr: () => err, stdout: () => out, exited };
  const re = role === 'worker' ? /running \(role worker\)/ : /listening on (http:\/\/\S+) \(role/;
  const m = await new Promise<RegExpExecArray>((resolve, reject) => {
    // Generous: tsx start-up on a busy 2-CPU CI machine can take tens of seconds.
    const timer = setTimeout(() => reject(new Error(`fenliu ${role} not up in 120 s: ${err}`)), 120_000);
    const check = () => {
      const x = re.exec(err);
      if (x) {
        clearTimeout(timer);
        child.stderr!.off('data', check);
        resolve(x);
      }
    };
    child.stderr!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`fenliu ${role} exited (${code}) before it was up: ${err}`));
    });
  });
  s.url = m[1];
  return s;
}

export function killAll(): void {
  for (const c of children) c.kill('SIGKILL');
}

// ---------------------------------------------------------------------------------------------
// Bookkeeping
// ---------------------------------------------------------------------------------------------

/** Redis inspection from the test side (its own connection, retried). */
export function inspector(redisUrl: string, prefix = 'fenliu') {
  const r = new Redis(redisUrl, { maxRetriesPerRequest: null, retryStrategy: () => 100 });
  r.on('error', () => undefined);
  const k = redisKeys(prefix);
  return {
    r,
    k,
    state: (deliveryId: string) => r.hget(k.delivery(deliveryId), 'state'),
    async states(ids: string[]): Promise<Map<string, string | null>> {
      const p = r.pipeline();
      for (const id of ids) p.hget(k.delivery(id), 'state');
      const res = (await p.exec()) ?? [];
      return new Map(ids.map((id, i) => [id, (res[i]?.[1] as string | null) ?? null]));
    },
    close: () => r.disconnect(),
  };
}

export interface Tally {
  scenario: string;
  accepted: number;
  delivered: number;
  duplicated: number;
  lost: number;
  maxConcurrentPerKey: number;
  [k: string]: unknown;
}

/**
 * Waits until every accepted delivery is `delivered` in Redis and acknowledged by the receiver,
 * then counts: duplicated = deliveries the receiver answered 2xx more than once (at-least-once
 * re-sends after a crash; receivers dedupe on the idempotency key), lost = accepted deliveries
 * never delivered.
 */
export async function settle(
  scenario: string,
  ins: ReturnType<typeof inspector>,
  receiver: Receiver,
  deliveryIds: string[],
  timeoutMs = 60_000,
  extra: Record<string, unknown> = {},
): Promise<Tally> {
  const end = Date.now() + timeoutMs;
  let states = new Map<string, string | null>();
  for (;;) {
    states = await ins.states(deliveryIds);
    const pending = deliveryIds.filter((id) => states.get(id) !== 'delivered' || !receiver.byKey.get(id)?.acknowledged);
    if (!pending.length || Date.now() > end) break;
    await sleep(100);
  }
  const delivered = deliveryIds.filter((id) => states.get(id) === 'delivered' && (receiver.byKey.get(id)?.acknowledged ?? 0) > 0).length;
  const duplicated = deliveryIds.filter((id) => (receiver.byKey.get(id)?.acknowledged ?? 0) > 1).length;
  const tally: Tally = { scenario, accepted: deliveryIds.length, delivered, duplicated, lost: deliveryIds.length - delivered, maxConcurrentPerKey: receiver.maxConcurrentPerKey(), ...extra };
  const notDelivered = deliveryIds.filter((id) => states.get(id) !== 'delivered');
  if (notDelivered.length) (tally as Record<string, unknown>).stuck = notDelivered.slice(0, 5).map((id) => `${id}:${states.get(id)}`);
  process.stdout.write(`# fault ${JSON.stringify(tally)}\n`);
  return tally;
}

/**
 * Posts alerts from `workers` concurrent loops until `stop()` is called; records 202s (their
 * delivery ids) and every other status.
 */
export function stream(baseUrl: () => string, opts: { workers?: number; prefix: string; pauseMs?: number }) {
  const accepted: { alertId: string; deliveries: string[] }[] = [];
  const statuses = new Map<number | string, number>();
  /** The first few unexpected answers, for the report. */
  const odd: string[] = [];
  let running = true;
  let seq = 0;
  const loops = Array.from({ length: opts.workers ?? 4 }, async () => {
    while (running) {
      const id = `${opts.prefix}-${++seq}`;
      let status: number | string;
      try {
        const res = await api(baseUrl(), KEYS.sourceA).post('/v1/alerts', alert(id, { category: 'utility.water-leak' }));
        status = res.status;
        if (res.status === 202) accepted.push({ alertId: res.body.id, deliveries: res.body.deliveries.map((d: { id: string }) => d.id) });
        else if (res.status !== 503 && odd.length < 5) odd.push(`${id}: ${res.status} ${res.text.slice(0, 300)}`);
      } catch (err) {
        status = (err as { code?: string }).code ?? 'error';
        await sleep(20);
      }
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (opts.pauseMs) await sleep(opts.pauseMs);
    }
  });
  return {
    accepted,
    statuses,
    odd,
    count: (s: number | string) => statuses.get(s) ?? 0,
    deliveryIds: () => accepted.flatMap((a) => a.deliveries),
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** Resident set size of a process, in MB (Linux /proc). */
export async function rssMb(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : NaN;
}
