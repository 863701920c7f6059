/**
 * Log-first ingest end to end (docs/reliability.md, "What a 202 means"): what reads show before
 * the dispatcher has run, a write (cancel) right after the 202, and dispatchers stopped or killed
 * mid-way through a backlog losing and doubling nothing.
 */
import t, { type Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { auditStreamKey } from '../src/audit/events.js';
import { Dispatcher } from '../src/ingest/dispatcher.js';
import { bus } from '../src/events.js';
import { each, zcardAll } from '../src/store/fanout.js';
import { startRedis } from './helpers/redis.js';
import { startEngineEnv, until } from './helpers/engine.js';
import { ROOT, alert, childEnv, materialise } from './helpers/fenliu.js';

const redis = await startRedis();

async function auditEvents(r: import('ioredis').Redis, prefix: string): Promise<any[]> {
  return (await r.xrange(auditStreamKey(prefix), '-', '+')).map(([, f]) => JSON.parse(f[1]));
}

async function logLength(e: { r: import('ioredis').Redis; k: { bucketList: number[]; ingestLog(b: number): string } }): Promise<number> {
  return (await Promise.all(e.k.bucketList.map((b) => e.r.xlen(e.k.ingestLog(b))))).reduce((a, x) => a + x, 0);
}

t.test('before the dispatcher runs: reads show queued deliveries, and a cancel materialises the alert first', async (t) => {
  const e = await startEngineEnv(t, { redis, role: 'api', platforms: [{ id: 'p1', kind: 'hotline-12345' }, { id: 'p2', kind: 'city-ops' }] });
  const prefix = e.f.cfg.redis.prefix;
  const res = await e.source.post('/v1/alerts', alert('LOG-1'));
  t.equal(res.status, 202);
  const id = res.body.id;
  t.equal(await e.r.exists(e.k.delivery(res.body.deliveries[0].id)), 0, 'no delivery hash yet (api role: no dispatcher)');

  const view = await e.source.get(`/v1/alerts/${id}`);
  t.equal(view.status, 200);
  t.equal(view.body.status, 'queued');
  t.same(view.body.deliveries.map((d: any) => [d.platformId, d.state, d.attempts]), [['p1', 'queued', 0], ['p2', 'queued', 0]], 'GET shows both deliveries queued');
  t.equal(view.body.deliveries[0].createdAt, res.body.receivedAt);
  const list = await e.source.get('/v1/alerts?limit=5');
  t.same(list.body.items.find((a: any) => a.id === id)?.deliveries.map((d: any) => d.state), ['queued', 'queued'], 'the list too');
  const one = await e.admin.get(`/v1/deliveries/${res.body.deliveries[0].id}`);
  t.equal(one.status, 200);
  t.equal(one.body.state, 'queued', 'and GET /v1/deliveries/:id');
  t.same(one.body.history.map((h: any) => h.to), ['queued']);
  const stats = await e.source.get('/v1/stats');
  t.equal(stats.body.diverted, 1, 'stats count it');

  const cancel = await e.source.post(`/v1/alerts/${id}/cancel`, { reason: '报警人撤销' });
  t.equal(cancel.status, 200, 'cancel right after the 202');
  t.same(cancel.body.deliveries.map((d: any) => d.state), ['cancelled', 'cancelled']);
  t.equal(await logLength(e), 0, 'the cancel materialised the alert (its log entry is gone)');
  const events = (await auditEvents(e.r, prefix)).filter((ev) => ev.alertId === id);
  t.same(events.map((ev) => ev.type), ['alert.received', 'alert.routed', 'delivery.state', 'delivery.state'], 'received and routed come before the cancel');
  t.same(events[0].data.alert, alert('LOG-1'), 'alert.received holds the alert');
  t.equal(await materialise(e.f), 0, 'a dispatcher later finds nothing left to do');
  t.equal((await auditEvents(e.r, prefix)).filter((ev) => ev.alertId === id).length, 4, 'and writes nothing twice');
});

t.test('a dispatcher stopped mid-way through a backlog: the next one finishes it, nothing doubled', async (t) => {
  const e = await startEngineEnv(t, { redis, role: 'api', platforms: [{ id: 'p1', kind: 'hotline-12345' }] });
  const prefix = e.f.cfg.redis.prefix;
  const N = 300;
  for (let i = 0; i < N; i += 50) {
    const rs = await Promise.all(Array.from({ length: 50 }, (_, j) => e.source.post('/v1/alerts', alert(`STOP-${i + j}`))));
    t.ok(rs.every((r) => r.status === 202));
  }
  const rt = e.f.rt;
  // Small reads, so the backlog takes many batches.
  const first = new Dispatcher(rt.redis, rt.keys, prefix, rt.materialiser, rt.log, { count: 1 });
  const firstBatch = new Promise<void>((res) => {
    const off = bus.onEvent('ingest.materialised', () => (off(), res()));
  });
  await first.start();
  await firstBatch;
  await first.stop();
  const left = await logLength(e);
  t.ok(left > 0, `stopped with ${left} entries still in the log`);
  const done = (await auditEvents(e.r, prefix)).filter((ev) => ev.type === 'alert.received').length;
  t.ok(done > 0 && done < N, `${done} of ${N} alerts materialised before the stop`);

  const second = new Dispatcher(rt.redis, rt.keys, prefix, rt.materialiser, rt.log);
  t.equal(await second.drain(), N - done, 'the next dispatcher materialises the rest');
  await checkOnce(t, e, N);
});

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

/** Every alert materialised exactly once: two audit events, one ingest history entry per delivery, one SLA timer or none. */
async function checkOnce(t: Test, e: Awaited<ReturnType<typeof startEngineEnv>>, n: number): Promise<void> {
  const events = await auditEvents(e.r, e.f.cfg.redis.prefix);
  const received = events.filter((ev) => ev.type === 'alert.received');
  const routed = events.filter((ev) => ev.type === 'alert.routed');
  t.equal(received.length, n, 'one alert.received per alert');
  t.equal(new Set(received.map((ev) => ev.alertId)).size, n, 'for every alert');
  t.equal(routed.length, n, 'one alert.routed per alert');
  t.equal(await logLength(e), 0, 'the log is empty');
  const ids = routed.flatMap((ev) => ev.data.deliveryIds as string[]);
  const histories = await Promise.all(ids.map((id) => e.r.lrange(e.k.history(id), 0, -1)));
  t.ok(histories.every((h) => h.filter((x) => JSON.parse(x).source === 'ingest').length === 1), 'one ingest history entry per delivery');
  t.ok((await Promise.all(ids.map((id) => e.r.exists(e.k.delivery(id))))).every((x) => x === 1), 'every delivery hash');
  t.ok((await zcardAll(e.r, each(e.k.bucketList, e.k.outbox))) <= n, 'outbox holds at most the batch in doubt');
}

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
