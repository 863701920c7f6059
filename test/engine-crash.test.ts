/**
 * A worker killed mid-attempt (SIGKILL, in a child process) loses nothing: its job's lease
 * expires, another worker's take returns it to the work set and sends it again with the same
 * idempotency key.
 */
import t from 'tap';
import { once } from 'node:events';
import { startRedis } from './helpers/redis.js';
import { startEngineEnv, workerChildren } from './helpers/engine.js';
import { each, zcardAll } from '../src/store/fanout.js';

const redis = await startRedis();

t.test('SIGKILL during an attempt: the delivery is taken over and completes', async (t) => {
  const e = await startEngineEnv(t, {
    redis,
    role: 'api',
    engine: { lockDurationMs: 1000, stalledIntervalMs: 500 },
    platforms: [{ id: 'p1', kind: 'hotline-12345', timeouts: { connectMs: 1000, headersMs: 20_000, bodyMs: 1000 } }],
  });
  const startWorker = workerChildren(t, e.doc, redis.url);

  const sb = e.sandbox.get('p1');
  sb.setFault({ fault: 'hang', times: 1 });
  const first = await startWorker();

  const { deliveries } = await e.submit();
  const id = deliveries.p1;
  await sb.waitFor(1, 10_000);
  t.equal(await e.r.hget(e.k.delivery(id), 'state'), 'sending', 'the attempt is in flight');
  first.kill('SIGKILL');
  await once(first, 'exit');
  t.equal(first.signalCode, 'SIGKILL', 'worker killed');
  const killedAt = Date.now();

  const second = await startWorker();
  const d = await e.waitForState(id, 'delivered', 30_000);
  t.ok(Date.now() - killedAt < 30_000, `taken over and delivered ${Date.now() - killedAt} ms after the kill`);
  t.match(d.remoteTicketId, /^GD/);
  t.equal(sb.received.length, 2, 'sent twice: the killed attempt and the re-run');
  t.same(sb.received.map((r) => r.headers['idempotency-key']), [id, id], 'same idempotency key both times');
  t.equal([...sb.tickets.values()].filter((x) => x.externalId === id).length, 1, 'one ticket at the platform');
  t.equal(d.attemptLog.length, 1, 'the killed attempt left no record; the re-run is attempt 1');
  t.equal(d.attemptLog[0].outcome, 'delivered');
  const hist = (await e.admin.get(`/v1/deliveries/${id}`)).body.history.map((h: any) => h.to);
  t.same(hist, ['queued', 'sending', 'delivered'], 'no state lost or duplicated');
  t.equal(await zcardAll(e.r, each(e.k.bucketList, (b) => e.k.deadLetters(b, 'p1'))), 0, 'no dead letter');

  second.kill('SIGTERM');
  await once(second, 'exit');
  t.equal(second.exitCode, 0, 'the second worker stops cleanly on SIGTERM');
});

t.test('a stop with an attempt hanging and Redis gone still ends, within the shutdown budget', async (t) => {
  const own = await startRedis();
  const e = await startEngineEnv(t, {
    redis: own,
    platforms: [{ id: 'p1', kind: 'hotline-12345', timeouts: { connectMs: 1000, headersMs: 60_000, bodyMs: 1000 } }],
  });
  const sb = e.sandbox.get('p1');
  sb.setFault({ fault: 'hang', times: 1 });
  const { deliveries } = await e.submit();
  await sb.waitFor(1, 10_000);
  t.equal(await e.r.hget(e.k.delivery(deliveries.p1), 'state'), 'sending', 'the attempt is in flight');
  await own.kill();
  const at = Date.now();
  // The attempt neither answers (60 s) nor could record; the engine waits half the 5 s budget.
  await e.f.stop();
  const took = Date.now() - at;
  t.ok(took < 5_000, `stopped in ${took} ms (shutdownTimeoutMs 5000)`);
  t.ok(took >= 2_000, `after waiting for the attempt (${took} ms)`);
  await e.sandbox.close();
});

t.test('stop redis', async () => redis.stop());
