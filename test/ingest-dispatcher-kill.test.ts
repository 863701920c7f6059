/**
 * A worker process SIGKILLed while its dispatcher works through an ingest-log backlog: another
 * worker takes the dead one's entries over (XAUTOCLAIM after engine.ingestClaimIdleMs), and every
 * alert is materialised once and delivered once (docs/reliability.md, "What a 202 means").
 */
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { auditStreamKey } from '../src/audit/events.js';
import { startRedis } from './helpers/redis.js';
import { startEngineEnv, until } from './helpers/engine.js';
import { ROOT, alert, childEnv } from './helpers/fenliu.js';
import { checkOnce, logLength } from './helpers/ingest-log.js';

const redis = await startRedis();

t.test('a worker killed (SIGKILL) mid-way through a backlog: another takes its entries over; every alert delivered once', async (t) => {
  const e = await startEngineEnv(t, { redis, role: 'api', engine: { ingestClaimIdleMs: 500 }, platforms: [{ id: 'p1', kind: 'hotline-12345' }] });
  const prefix = e.f.cfg.redis.prefix;
  const dir = mkdtempSync(join(tmpdir(), 'fenliu-dispatch-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cfgFile = join(dir, 'config.json');
  writeFileSync(cfgFile, JSON.stringify(e.doc));
  const children: ChildProcess[] = [];
  t.teardown(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });
  const N = 600;
  const ids: string[] = [];
  for (let i = 0; i < N; i += 50) {
    const rs = await Promise.all(Array.from({ length: 50 }, (_, j) => e.source.post('/v1/alerts', alert(`KILL-${i + j}`))));
    for (const r of rs) ids.push(r.body.deliveries[0].id);
  }
  t.ok((await logLength(e)) > 0, 'a backlog in the log');

  const first = await startWorker(cfgFile, redis.url);
  children.push(first);
  // Killed as soon as it has materialised something (its read may hold entries it has not).
  await until(async () => (await e.r.xlen(auditStreamKey(prefix))) > 0, 30_000, 'the first worker to materialise');
  first.kill('SIGKILL');
  await once(first, 'exit');
  const pending = await Promise.all(e.k.bucketList.map((b) => e.r.xpending(e.k.ingestLog(b), 'dispatch') as Promise<[number, ...unknown[]]>));
  t.comment(`killed with ${await logLength(e)} entries in the log, ${pending.reduce((a, p) => a + Number(p[0]), 0)} of them read and not acknowledged`);

  const second = await startWorker(cfgFile, redis.url);
  children.push(second);
  await until(async () => (await logLength(e)) === 0, 60_000, 'the log to empty');
  const sb = e.sandbox.get('p1');
  // Jobs of a batch the first worker materialised but did not queue are added by the outbox relay (after 10 s).
  await until(async () => new Set([...sb.tickets.values()].map((x) => x.externalId)).size >= N, 90_000, `${N} tickets at the platform`);
  await checkOnce(t, e, N);
  const tickets = [...sb.tickets.values()].map((x) => x.externalId);
  t.equal(tickets.length, N, 'one ticket per alert at the platform');
  t.same(new Set(tickets), new Set(ids), 'for every delivery');
  second.kill('SIGTERM');
  await once(second, 'exit');
});

function startWorker(cfgFile: string, redisUrl: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test', 'fixtures', 'worker-child.ts'), cfgFile, redisUrl], { cwd: ROOT, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
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

t.test('stop redis', async () => redis.stop());
