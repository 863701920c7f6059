/**
 * Test helper: a PRIVATE redis-server child per call, on a free loopback port, data in a temp dir.
 *
 *   const r = await startRedis();            // { port, url, dir, stop, restart, kill }
 *   t.teardown(() => r.stop());
 *
 * Or `const r = await useRedis(t)` which registers the teardown itself.
 * Children are SIGKILLed when the test process exits, and temp dirs made here are removed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../src/redis/embedded.js';

export interface TestRedis {
  port: number;
  url: string;
  dir: string;
  /** Graceful stop (SHUTDOWN NOSAVE; AOF, when on, is flushed); waits for the process to exit. */
  stop(): Promise<void>;
  /** Starts redis-server again on the same port and dir (with appendonly, the data survives). */
  restart(): Promise<void>;
  /** SIGKILL (a crash); waits for the process to exit. */
  kill(): Promise<void>;
  /** SIGSTOP: connections stay open but nothing is answered (a hung server) until the returned resume. */
  pause(): () => void;
}

export interface StartRedisOptions {
  /** AOF on (with appendfsync always, so even kill() loses nothing acknowledged). Default false. */
  appendonly?: boolean;
  /** Data dir; default a fresh temp dir (removed at process exit). */
  dir?: string;
  /** More redis-server arguments, such as a managed service's restrictions (`--rename-command CLIENT ""`). */
  args?: string[];
}

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let exitHooked = false;

function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', () => {
    for (const c of children) {
      try {
        c.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const d of tempDirs) {
      try {
        rmSync(d, { recursive: true, force: true });
      } catch {
        // best effort
      }
    }
  });
}


/** One PING over a raw socket; resolves true on +PONG, false on refusal. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    let buf = '';
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1_000, () => done(false));
    s.once('error', () => done(false));
    s.once('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
  });
}

function sendCommand(port: number, cmd: string): Promise<void> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.once('error', () => resolve());
    s.once('close', () => resolve());
    s.once('connect', () => s.write(cmd));
    s.on('data', () => undefined);
  });
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

function launch(port: number, dir: string, appendonly: boolean, extra: string[] = []): Promise<ChildProcess> {
  const args = [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--dir', dir,
    '--save', '',
    '--appendonly', appendonly ? 'yes' : 'no',
    '--daemonize', 'no',
    '--protected-mode', 'no',
    '--loglevel', 'warning',
  ];
  if (appendonly) args.push('--appendfsync', 'always');
  args.push(...extra);
  const child = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let stderr = '';
  child.stderr?.on('data', (d) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    let settled = false;
    const onExit = (code: number | null) => {
      if (settled) return;
      settled = true;
      reject(new Error(`redis-server exited (${code}) before answering PING: ${stderr.slice(-1000)}`));
    };
    child.once('exit', onExit);
    child.once('error', (err) => {
      if (settled) return;
      settled = true;
      reject(err);
    });
    // Wait for the port to answer PING: a short connection retry loop, ends on exit or success.
    const attempt = async (n: number): Promise<void> => {
      if (settled) return;
      if (await ping(port)) {
        settled = true;
        child.off('exit', onExit);
        resolve(child);
        return;
      }
      if (n > 500) {
        settled = true;
        child.kill('SIGKILL');
        reject(new Error('redis-server did not answer PING within 5 s'));
        return;
      }
      setTimeout(() => void attempt(n + 1), 10);
    };
    void attempt(0);
  });
}

export async function startRedis(opts: StartRedisOptions = {}): Promise<TestRedis> {
  hookExit();
  const appendonly = opts.appendonly ?? false;
  let dir = opts.dir;
  if (!dir) {
    dir = mkdtempSync(join(tmpdir(), 'fenliu-redis-'));
    tempDirs.add(dir);
  }
  let port = 0;
  let child: ChildProcess | null = null;
  let lastErr: unknown;
  for (let i = 0; i < 5 && !child; i++) {
    port = await freePort();
    try {
      child = await launch(port, dir, appendonly, opts.args);
    } catch (err) {
      lastErr = err; // port taken in between: try another
    }
  }
  if (!child) throw lastErr;
  const dataDir = dir;

  const stop = async (): Promise<void> => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = waitExit(c);
    // The fallback is armed first: a SHUTDOWN that errors or never answers must not hang a test.
    const timer = setTimeout(() => c.kill('SIGKILL'), 5_000);
    await sendCommand(port, 'SHUTDOWN NOSAVE\r\n').catch(() => c.kill('SIGKILL'));
    await exited;
    clearTimeout(timer);
  };
  const kill = async (): Promise<void> => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = waitExit(c);
    c.kill('SIGKILL');
    await exited;
  };
  const restart = async (): Promise<void> => {
    await stop();
    child = await launch(port, dataDir, appendonly, opts.args);
  };
  const pause = (): (() => void) => {
    const c = child!;
    c.kill('SIGSTOP');
    return () => void c.kill('SIGCONT');
  };
  return { port, url: `redis://127.0.0.1:${port}`, dir: dataDir, stop, restart, kill, pause };
}

/** Starts a private Redis for one tap test and stops it in the test's teardown. */
export async function useRedis(t: { teardown(fn: () => unknown): void }, opts?: StartRedisOptions): Promise<TestRedis> {
  const r = await startRedis(opts);
  t.teardown(() => r.stop());
  return r;
}
