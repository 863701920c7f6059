import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolve } from 'node:path';

export class RedisServerMissingError extends Error {
  constructor() {
    super('redis-server not found. Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) or set REDIS_URL to an existing Redis.');
    this.name = 'RedisServerMissingError';
  }
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
  const port = opts.port ?? (await freePort());
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', abs, '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '', '--maxmemory-policy', 'noeviction', '--protected-mode', 'yes'];
  const child = spawn(opts.bin ?? 'redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const killOnExit = () => child.kill('SIGKILL');
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
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir: abs,
    child,
    stop: () =>
      new Promise<void>((res) => {
        process.off('exit', killOnExit);
        if (child.exitCode !== null) return res();
        child.once('exit', () => res());
        child.kill('SIGTERM');
      }),
  };
}
