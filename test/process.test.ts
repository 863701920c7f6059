import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { useRedis } from './helpers/redis.js';
import { KEYS, ROOT, alert, api, childEnv, cli, testConfig, type ConfigDoc } from './helpers/fenliu.js';

const tmp = mkdtempSync(join(tmpdir(), 'fenliu-process-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

let n = 0;
function writeConfig(doc: ConfigDoc): string {
  const file = join(tmp, `config-${++n}.yaml`);
  writeFileSync(file, stringify(doc));
  return file;
}

interface Served {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `fenliu serve` as a child process. */
function serve(configFile: string, env: Record<string, string | undefined> = {}, role = 'api'): Served {
  const c = cli(['serve', '--config', configFile, '--role', role]);
  const child = spawn(c.command, c.args, { cwd: ROOT, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let err = '';
  child.stderr!.on('data', (d) => (err += d.toString()));
  child.stdout!.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }),
  );
  return { child, stderr: () => err, exited };
}

/** Resolves with the first stderr match, or rejects when the child exits first or the bound passes. */
function waitFor(s: Served, re: RegExp, boundMs = 45_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const m = re.exec(s.stderr());
      if (m) {
        done();
        resolve(m);
      }
    };
    const onExit = () => {
      check();
      done();
      reject(new Error(`child exited before printing ${re}: ${s.stderr()}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no ${re} within ${boundMs} ms: ${s.stderr()}`));
    }, boundMs);
    const done = () => {
      clearTimeout(timer);
      s.child.stderr!.off('data', check);
      s.child.off('exit', onExit);
    };
    s.child.stderr!.on('data', check);
    s.child.once('exit', onExit);
    check();
  });
}


function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Pids of live (not zombie) processes whose command line mentions `needle`. */
function processesMentioning(needle: string): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (cmd.includes(needle) && !/\) Z /.test(stat)) pids.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

const SHUTDOWN_BOUND_MS = 5_000;

// Start-up failures are independent of everything else: start them now, check them below.
const badDoc = testConfig();
delete badDoc.platforms[1].url;
const badConfig = serve(writeConfig(badDoc), { REDIS_URL: 'redis://127.0.0.1:1' });
// A port we hold, whose server drops every connection: a port that is merely free now may be
// taken by another test file's redis-server before the child connects, and then it is reachable.
const deadServer = createServer((sock) => sock.destroy());
await new Promise<void>((resolve) => deadServer.listen(0, '127.0.0.1', resolve));
t.teardown(() => deadServer.close());
const deadPort = (deadServer.address() as AddressInfo).port;
const unreachable = serve(writeConfig(testConfig()), { REDIS_URL: `redis://127.0.0.1:${deadPort}` });

t.test('serve: answers over HTTP, SIGTERM → exit 0 within the bound', async (t) => {
  const redis = await useRedis(t);
  const s = serve(writeConfig(testConfig({ server: { shutdownTimeoutMs: SHUTDOWN_BOUND_MS } })), { REDIS_URL: redis.url });
  t.teardown(() => s.child.kill('SIGKILL'));
  const [, url] = await waitFor(s, /listening on (http:\/\/\S+) \(role api\)/);
  const res = await api(url, KEYS.sourceA).post('/v1/alerts', alert('PROC-1'));
  t.equal(res.status, 202, 'the child accepts an alert');
  const started = Date.now();
  s.child.kill('SIGTERM');
  const { code, signal } = await s.exited;
  const took = Date.now() - started;
  t.equal(code, 0, 'exit 0');
  t.equal(signal, null);
  t.ok(took < SHUTDOWN_BOUND_MS, `stopped in ${took} ms (< ${SHUTDOWN_BOUND_MS})`);
  t.match(s.stderr(), /SIGTERM received, shutting down/);
  t.notMatch(s.stderr(), /shutdown took longer/);
  const port = Number(new URL(url).port);
  t.notOk(await portOpen(port), 'the listener is closed');
});

t.test('bad config: exit 1 with one clear line naming the key path', async (t) => {
  const { code } = await badConfig.exited;
  t.equal(code, 1);
  const lines = badConfig.stderr().trim().split('\n');
  t.equal(lines.length, 1, `one line: ${badConfig.stderr()}`);
  t.match(lines[0], /^fenliu: config error: \/platforms\/1\/url is required$/);
});

t.test('unreachable Redis: exit 1 with one clear line', async (t) => {
  const { code } = await unreachable.exited;
  t.equal(code, 1);
  const lines = unreachable.stderr().trim().split('\n');
  t.equal(lines.length, 1, `one line: ${unreachable.stderr()}`);
  t.match(lines[0], new RegExp(`^fenliu: Redis at redis://127\\.0\\.0\\.1:${deadPort} is unreachable`));
  t.notMatch(unreachable.stderr(), /\n\s+at /, 'no stack trace');
});

t.test('embedded default: no REDIS_URL and no redis.url → its own redis-server, gone after SIGTERM', async (t) => {
  const dataDir = join(tmp, 'embedded-redis-data');
  const doc = testConfig({ redis: { dataDir } });
  t.notOk('url' in doc.redis, 'no redis.url in the config');
  const s = serve(writeConfig(doc), { REDIS_URL: undefined });
  t.teardown(() => s.child.kill('SIGKILL'));
  const [notice, port] = await waitFor(s, /started its own redis-server on 127\.0\.0\.1:(\d+)[^\n]*/);
  t.match(notice, /AOF on/);
  t.match(notice, dataDir, 'the notice says where the data is');
  const [, url] = await waitFor(s, /listening on (http:\/\/\S+)/);
  t.equal((await api(url, KEYS.sourceA).post('/v1/alerts', alert('EMB-1'))).status, 202, 'works on the embedded Redis');
  // redis-server sets its process title to "redis-server 127.0.0.1:<port>".
  const title = `redis-server 127.0.0.1:${port}`;
  t.equal(processesMentioning(title).length, 1, 'one redis-server child on that port');
  t.ok(await portOpen(Number(port)));

  s.child.kill('SIGTERM');
  const { code } = await s.exited;
  t.equal(code, 0, 'exit 0');
  t.same(processesMentioning(title), [], 'the redis-server child is gone');
  t.notOk(await portOpen(Number(port)), 'its port is closed');
  t.ok(readdirSync(dataDir).length > 0, 'data was written to redis.dataDir');
});
