/**
 * Test helper: a real Redis Cluster on loopback from Debian's redis-server (`--cluster-enabled
 * yes`) and `redis-cli --cluster create` (by hand below 3 masters): `masters` masters with
 * `replicas` replicas each, AOF on, free
 * ports, temp dirs, every child SIGKILLed when the test process exits.
 *
 *   const c = await startCluster({ masters: 3 });
 *   t.teardown(() => c.stop());
 *   config: redis: { cluster: c.nodes }
 *   const port = await c.killMasterOf(slot);   // SIGKILL
 *   await c.waitForFailover(port);             // a replica took its slots over
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort } from '../../src/redis/embedded.js';

const run = promisify(execFile);

export interface ClusterNode {
  port: number;
  child: ChildProcess;
  kill(): Promise<void>;
}

export interface TestCluster {
  /** For `redis.cluster`. */
  nodes: { host: string; port: number }[];
  procs: ClusterNode[];
  /** The port of the master serving `slot` now. */
  masterOf(slot: number): Promise<number>;
  /** SIGKILLs the master serving `slot`; returns its port. */
  killMasterOf(slot: number): Promise<number>;
  /** Resolves once `slot` is served by a node other than `oldPort` and the cluster state is ok. */
  waitForFailover(slot: number, oldPort: number, timeoutMs?: number): Promise<number>;
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();
let hooked = false;
function hook(dir: string): void {
  if (!hooked) {
    hooked = true;
    process.on('exit', () => {
      for (const c of children) c.kill('SIGKILL');
    });
  }
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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

function launch(port: number, dir: string): Promise<ClusterNode> {
  const args = [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
    '--cluster-enabled', 'yes', '--cluster-announce-ip', '127.0.0.1', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '1000',
    '--appendonly', 'yes', '--appendfilename', `aof-${port}.aof`, '--appenddirname', `aof-${port}`, '--appendfsync', 'everysec', '--save', '',
    '--maxmemory-policy', 'noeviction', '--repl-diskless-sync-delay', '0', '--repl-ping-replica-period', '1',
  ];
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const gone = new Promise<void>((res) => child.once('exit', () => (children.delete(child), res())));
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (b: Buffer) => {
      out += b.toString();
      if (/Ready to accept connections/.test(out)) {
        child.stdout!.off('data', onData);
        child.stdout!.resume();
        resolve({ port, child, kill: async () => (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'), gone) });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.resume();
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`redis-server (cluster node ${port}) exited (${code}) before ready:\n${out.slice(-1500)}`)));
  });
}

/** CLUSTER SHARDS-like view from CLUSTER SLOTS: [from, to, masterPort][]. */
async function slots(port: number): Promise<[number, number, number][]> {
  const res = (await ask(port, (r) => r.cluster('SLOTS'))) as unknown as [number, number, [string, number]][];
  return res.map(([from, to, master]) => [from, to, master[1]]);
}

export async function startCluster(o: { masters?: number; replicas?: number } = {}): Promise<TestCluster> {
  const masters = o.masters ?? 3;
  const replicas = o.replicas ?? 1;
  const dir = mkdtempSync(join(tmpdir(), 'fenliu-cluster-'));
  hook(dir);
  const ports: number[] = [];
  for (let i = 0; i < masters * (1 + replicas); i++) ports.push(await freePort());
  const procs = await Promise.all(ports.map((p) => launch(p, dir)));
  if (masters >= 3) {
    await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', String(replicas), '--cluster-yes'], { timeout: 60_000 });
  } else {
    // redis-cli refuses fewer than 3 masters; a 1- or 2-shard cluster (the benchmark's) is made by hand.
    if (replicas) throw new Error('fewer than 3 masters: replicas are not supported here');
    const per = Math.ceil(16384 / masters);
    for (let i = 0; i < masters; i++) await ask(ports[i], (r) => r.call('CLUSTER', 'ADDSLOTSRANGE', String(i * per), String(Math.min(16383, (i + 1) * per - 1))));
    for (let i = 1; i < masters; i++) await ask(ports[0], (r) => r.call('CLUSTER', 'MEET', '127.0.0.1', String(ports[i])));
  }
  const alive = () => procs.filter((p) => p.child.exitCode === null && p.child.signalCode === null);
  const ok = async () => {
    for (const p of alive()) {
      const info = await ask(p.port, (r) => r.cluster('INFO')).catch(() => '');
      if (!/cluster_state:ok/.test(String(info))) return false;
    }
    return true;
  };
  for (const end = Date.now() + 30_000; !(await ok()); await sleep(100)) if (Date.now() > end) throw new Error('cluster did not reach cluster_state:ok');
  // Replicas attached and in sync, so a failover has someone to promote.
  for (const end = Date.now() + 30_000; ; await sleep(100)) {
    const infos = await Promise.all(alive().map((p) => ask(p.port, (r) => r.info('replication')).catch(() => '')));
    if (infos.filter((i) => /role:slave/.test(i) && /master_link_status:up/.test(i)).length === masters * replicas) break;
    if (Date.now() > end) throw new Error('cluster replicas did not come up');
  }
  const masterOf = async (slot: number) => {
    for (const p of alive()) {
      const s = await slots(p.port).catch(() => undefined);
      const hit = s?.find(([from, to]) => slot >= from && slot <= to);
      if (hit) return hit[2];
    }
    throw new Error(`no node serves slot ${slot}`);
  };
  return {
    nodes: ports.map((port) => ({ host: '127.0.0.1', port })),
    procs,
    masterOf,
    async killMasterOf(slot) {
      const port = await masterOf(slot);
      await procs.find((p) => p.port === port)!.kill();
      return port;
    },
    async waitForFailover(slot, oldPort, timeoutMs = 30_000) {
      for (const end = Date.now() + timeoutMs; ; await sleep(100)) {
        const port = await masterOf(slot).catch(() => oldPort);
        if (port !== oldPort && (await ok())) return port;
        if (Date.now() > end) throw new Error(`no failover of slot ${slot} within ${timeoutMs} ms`);
      }
    },
    async stop() {
      await Promise.all(procs.map((p) => p.kill()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
