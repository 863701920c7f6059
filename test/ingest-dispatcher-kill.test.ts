/**
 * A worker process SIGKILLed while its dispatcher works through an ingest-log backlog: another
 * worker takes the dead one's entries over (XAUTOCLAIM after engine.ingestClaimIdleMs), and every
 * alert is materialised once and delivered once (docs/reliability.md, "What a 202 means").
 * Short leases: attempts the dead worker had started are taken over in seconds, not after the
 * default 30 s lease (which made this file take 16–40 s in the suite).
 */
import t from 'tap';
import { once } from 'node:events';
import { auditStreamKey } from '../src/audit/events.js';
import { startRedis } from './helpers/redis.js';
import { startEngineEnv, workerChildren, until } from './helpers/engine.js';
import { alert } from './helpers/fenliu.js';
import { checkOnce, logLength } from './helpers/ingest-log.js';

const redis = await startRedis();

t.test('a worker killed (SIGKILL) mid-way through a backlog: another takes its entries over; every alert delivered once', async (t) => {
  const e = await startEngineEnv(t, { redis, role: 'api', engine: { ingestWriteThrough: false, ingestClaimIdleMs: 500, lockDurationMs: 2_000, stalledIntervalMs: 500 }, platforms: [{ id: 'p1', kind: 'hotline-12345' }] });
  const prefix = e.f.cfg.redis.prefix;
  const startWorker = workerChildren(t, e.doc, redis.url);
  const N = 600;
  const ids: string[] = [];
  for (let i = 0; i < N; i += 50) {
    const rs = await Promise.all(Array.from({ length: 50 }, (_, j) => e.source.post('/v1/alerts', alert(`KILL-${i + j}`))));
    for (const r of rs) ids.push(r.body.deliveries[0].id);
  }
  t.ok((await logLength(e)) > 0, 'a backlog in the log');

  const first = await startWorker();
  // Killed as soon as it has materialised something (its read may hold entries it has not).
  await until(async () => (await e.r.xlen(auditStreamKey(prefix))) > 0, 30_000, 'the first worker to materialise');
  first.kill('SIGKILL');
  await once(first, 'exit');
  const pending = await Promise.all(e.k.bucketList.map((b) => e.r.xpending(e.k.ingestLog(b), 'dispatch') as Promise<[number, ...unknown[]]>));
  t.comment(`killed with ${await logLength(e)} entries in the log, ${pending.reduce((a, p) => a + Number(p[0]), 0)} of them read and not acknowledged`);

  const second = await startWorker();
  await until(async () => (await logLength(e)) === 0, 60_000, 'the log to empty');
  const sb = e.sandbox.get('p1');
  await until(async () => new Set([...sb.tickets.values()].map((x) => x.externalId)).size >= N, 90_000, `${N} tickets at the platform`);
  await checkOnce(t, e, N);
  const tickets = [...sb.tickets.values()].map((x) => x.externalId);
  t.equal(tickets.length, N, 'one ticket per alert at the platform');
  t.same(new Set(tickets), new Set(ids), 'for every delivery');
  second.kill('SIGTERM');
  await once(second, 'exit');
});


t.test('stop redis', async () => redis.stop());
