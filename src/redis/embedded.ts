import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, relative, resolve } from 'node:path';

export class RedisServerMissingError extends Error {
  constructor() {
    super('redis-server not found. Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) or set REDIS_URL to an existing Redis.');
    this.name = 'RedisServerMissingError';
  }
}

/** The data folder already belongs to a running fenliu (or its redis-server). */
export class DataDirInUseError extends Error {
  constructor(
    readonly dir: string,
    readonly holder: LockInfo,
  ) {
    const shown = relative(process.cwd(), dir) || dir;
    super(
      `${shown} is in use by another fenliu (pid ${holder.pid}${holder.port ? `, its redis-server on 127.0.0.1:${holder.port}` : ''}): ` +
        `stop it, or give this one another folder (redis.dataDir in the config) or an existing Redis (REDIS_URL)`,
    );
    this.name = 'DataDirInUseError';
  }
}

interface LockInfo {
  pid: number;
  redisPid?: number;
  port?: number;
}

const LOCK_FILE = 'fenliu.lock';

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes the data folder for this process: two redis-servers on one AOF would corrupt it. The lock
 * names fenliu's pid and its redis-server's; it is stale only when neither runs (a fenliu killed
 * with SIGKILL leaves its redis-server behind, still writing the folder).
 */
function lockDataDir(dir: string): { update(info: Partial<LockInfo>): void; release(): void } {
  const file = join(dir, LOCK_FILE);
  const mine: LockInfo = { pid: process.pid };
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(file, JSON.stringify(mine), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
      let held: LockInfo | undefined;
      try {
        held = JSON.parse(readFileSync(file, 'utf8')) as LockInfo;
      } catch {
        held = undefined; // unreadable: a crash mid-write, so stale
      }
      if (held && (alive(held.pid) || alive(held.redisPid))) throw new DataDirInUseError(dir, held);
      unlinkSync(file);
    }
  }
  return {
    update: (info) => writeFileSync(file, JSON.stringify(Object.assign(mine, info))),
    release: () => {
      try {
        const held = JSON.parse(readFileSync(file, 'utf8')) as LockInfo;
        if (held.pid === process.pid) unlinkSync(file);
      } catch {
        // already gone
      }
    },
  };
}

export interface EmbeddedRedis {
  url: string;
  port: number;
  dir: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, host, () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => res(port));
    });
  });
}

/**
 * Starts a private redis-server child with AOF on (appendfsync everysec), data under `dir`,
 * bound to loopback. It is stopped with fenliu, and killed if fenliu dies.
 */
export async function startEmbeddedRedis(dir: string, opts: { port?: number; bin?: string } = {}): Promise<EmbeddedRedis> {
  const abs = resolve(dir);
  mkdirSync(abs, { recursive: true });
  const lock = lockDataDir(abs);
  try {
    return await spawnRedis(abs, lock, opts);
  } catch (err) {
    lock.release();
    throw err;
  }
}

async function spawnRedis(abs: string, lock: ReturnType<typeof lockDataDir>, opts: { port?: number; bin?: string }): Promise<EmbeddedRedis> {
  const port = opts.port ?? (await freePort());
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', abs, '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '', '--maxmemory-policy', 'noeviction', '--protected-mode', 'yes'];
  const child = spawn(opts.bin ?? 'redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const killOnExit = () => {
    child.kill('SIGKILL');
    lock.release();
  };
  process.once('exit', killOnExit);
  await new Promise<void>((resolveReady, reject) => {
    let out = '';
    const onData = (b: Buffer) => {
      out += b.toString();
      if (/Ready to accept connections/i.test(out)) {
        child.stdout?.off('data', onData);
        // Keep draining, or a full pipe would stall redis-server.
        child.stdout?.resume();
        resolveReady();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.resume();
    child.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'ENOENT' ? new RedisServerMissingError() : err));
    child.once('exit', (code) => reject(new Error(`redis-server exited with code ${code} before it was ready:\n${out.slice(-2000)}`)));
  });
  lock.update({ redisPid: child.pid, port });
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir: abs,
    child,
    stop: () =>
      new Promise<void>((res) => {
        process.off('exit', killOnExit);
        if (child.exitCode !== null) {
          lock.release();
          return res();
        }
        child.once('exit', () => {
          lock.release();
          res();
        });
        child.kill('SIGTERM');
      }),
  };
}
