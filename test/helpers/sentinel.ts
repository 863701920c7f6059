/**
 * Test helper: a real Redis Sentinel topology on loopback, from Debian's redis-server (the same
 * binary runs as master, replica and, with `--sentinel`, as sentinel). Free ports, temp dirs,
 * every child SIGKILLed when the test process exits.
 *
 *   const top = await startSentinelTopology({ replicas: 2, sentinels: 3 });
 *   t.teardown(() => top.stop());
 *   config: redis: { sentinels: top.sentinels, name: top.name }
 *   await top.killMaster();              // SIGKILL
 *   const m = await top.waitForNewMaster(); // the promoted replica's port
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from '../../src/redis/embedded.js';

export interface RedisProc {
  port: number;
  child: ChildProcess;
  /** SIGKILL; resolves when the process is gone. */
  kill(): Promise<void>;
}

export interface SentinelTopology {
  name: string;
  master: RedisProc;
  replicas: RedisProc[];
  sentinelProcs: RedisProc[];
  /** For `redis.sentinels`. */
  sentinels: { host: string; port: number }[];
  /** The port the sentinels name as master now. */
  masterPort(): Promise<number>;
  /** SIGKILLs the current master; returns its port. */
  killMaster(): Promise<number>;
  /** Resolves with the new master's port once the sentinels name one other than `oldPort`. */
  waitForNewMaster(oldPort: number, timeoutMs?: number): Promise<number>;
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();
const dirs = new Set<string>();
let hooked = false;
function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const c of children) c.kill('SIGKILL');
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
}

/** Starts `redis-server args` and resolves once its log says `ready` matches. */
function launch(args: string[], ready: RegExp, port: number): Promise<RedisProc> {
  hook();
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const gone = new Promise<void>((res) => child.once('exit', () => (children.delete(child), res())));
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (b: Buffer) => {
      out += b.toString();
      if (ready.test(out)) {
        child.stdout!.off('data', onData);
        child.stdout!.resume();
        resolve({ port, child, kill: async () => (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'), gone) });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.resume();
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`redis-server ${args.join(' ')} exited (${code}) before ready:\n${out.slice(-1500)}`)));
  });
}

/** Data-node options: AOF on (appendfsync everysec, as in production), replication without delay. */
function dataArgs(port: number, dir: string): string[] {
  return ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '', '--maxmemory-policy', 'noeviction', '--repl-diskless-sync-delay', '0', '--repl-ping-replica-period', '1'];
}

async function ask<T>(port: number, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1_000 });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` (a Redis query) until it is truthy. */
async function until<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

export async function startSentinelTopology(o: { replicas?: number; sentinels?: number; downAfterMs?: number; name?: string } = {}): Promise<SentinelTopology> {
  const name = o.name ?? 'mymaster';
  const root = mkdtempSync(join(tmpdir(), 'fenliu-sentinel-'));
  dirs.add(root);
  const dir = (n: string) => {
    const d = join(root, n);
    mkdirSync(d, { recursive: true });
    return d;
  };
  const mPort = await freePort();
  const master = await launch(dataArgs(mPort, dir('master')), /Ready to accept connections/i, mPort);
  const replicas = await Promise.all(
    Array.from({ length: o.replicas ?? 2 }, async (_, i) => {
      const port = await freePort();
      return launch([...dataArgs(port, dir(`replica${i}`)), '--replicaof', '127.0.0.1', String(mPort)], /MASTER <-> REPLICA sync: Finished with success/i, port);
    }),
  );
  const sentinelProcs = await Promise.all(
    Array.from({ length: o.sentinels ?? 3 }, async (_, i) => {
      const port = await freePort();
      const conf = join(root, `sentinel${i}.conf`);
      // Sentinel rewrites its config file (it must be writable); quorum 2 of 3.
      writeFileSync(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${root}`,
          `sentinel monitor ${name} 127.0.0.1 ${mPort} 2`,
          `sentinel down-after-milliseconds ${name} ${o.downAfterMs ?? 1000}`,
          `sentinel failover-timeout ${name} 10000`,
          `sentinel parallel-syncs ${name} 2`,
          '',
        ].join('\n'),
      );
      return launch([conf, '--sentinel'], /\+monitor master/i, port);
    }),
  );
  const sentinels = sentinelProcs.map((s) => ({ host: '127.0.0.1', port: s.port }));
  // Ready for a failover once every sentinel knows the replicas and the other sentinels.
  for (const s of sentinelProcs) {
    await until(
      `sentinel ${s.port} to see ${replicas.length} replicas and ${sentinelProcs.length - 1} sentinels`,
      () =>
        ask(s.port, async (r) => {
          const flat = (await r.call('SENTINEL', 'MASTER', name)) as string[];
          const info = Object.fromEntries(flat.flatMap((_, i) => (i % 2 ? [] : [[flat[i], flat[i + 1]]])));
          return Number(info['num-slaves']) === replicas.length && Number(info['num-other-sentinels']) === sentinelProcs.length - 1;
        }),
      20_000,
    );
  }
  const all = [master, ...replicas];
  const masterPort = () =>
    until(
      'a sentinel to name the master',
      async () => {
        for (const s of sentinelProcs) {
          const addr = await ask(s.port, (r) => r.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name) as Promise<string[] | null>).catch(() => null);
          if (addr) return Number(addr[1]);
        }
        return undefined;
      },
      5_000,
    );
  return {
    name,
    master,
    replicas,
    sentinelProcs,
    sentinels,
    masterPort,
    async killMaster() {
      const port = await masterPort();
      const p = all.find((x) => x.port === port)!;
      await p.kill();
      return port;
    },
    waitForNewMaster: (oldPort, timeoutMs = 30_000) =>
      until(
        'the sentinels to promote a replica',
        async () => {
          const port = await masterPort();
          if (port === oldPort) return undefined;
          // Promoted and answering as master.
          return (await ask(port, (r) => r.role()))[0] === 'master' ? port : undefined;
        },
        timeoutMs,
      ),
    async stop() {
      await Promise.all([...sentinelProcs, ...all].map((p) => p.kill()));
      rmSync(root, { recursive: true, force: true });
      dirs.delete(root);
    },
  };
}


/** A replica of the Redis on `masterPort` (AOF on), resolved once its first sync has finished. */
export async function startReplica(masterPort: number): Promise<RedisProc & { stop(): Promise<void> }> {
  const root = mkdtempSync(join(tmpdir(), 'fenliu-replica-'));
  dirs.add(root);
  const port = await freePort();
  const p = await launch([...dataArgs(port, root), '--replicaof', '127.0.0.1', String(masterPort)], /MASTER <-> REPLICA sync: Finished with success/i, port);
  return {
    ...p,
    async stop() {
      await p.kill();
      rmSync(root, { recursive: true, force: true });
      dirs.delete(root);
    },
  };
}
