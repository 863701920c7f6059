/**
 * Log-first ingest end to end (docs/reliability.md, "What a 202 means"): what reads show before
 * the dispatcher has run, a write (cancel) right after the 202, and dispatchers stopped or killed
 * mid-way through a backlog losing and doubling nothing (a worker process SIGKILLed:
 * test/ingest-dispatcher-kill.test.ts).
 */
import t from 'tap';
import { Dispatcher } from '../src/ingest/dispatcher.js';
import { bus } from '../src/events.js';
import { startRedis } from './helpers/redis.js';
import { startEngineEnv } from './helpers/engine.js';
import { auditEvents, checkOnce, logLength } from './helpers/ingest-log.js';
import { alert, materialise } from './helpers/fenliu.js';

const redis = await startRedis();

t.test('before the dispatcher runs: reads show queued deliveries, and a cancel materialises the alert first', async (t) => {
  const e = await startEngineEnv(t, { redis, role: 'api', engine: { ingestWriteThrough: false }, platforms: [{ id: 'p1', kind: 'hotline-12345' }, { id: 'p2', kind: 'city-ops' }] });
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

  const before = JSON.parse((await e.r.get(e.k.alert(id)))!);
  t.match(await e.r.get(e.k.alertLog(id)), /^\d+-\d+$/, 'before materialisation the log key names its log entry');
  const cancel = await e.source.post(`/v1/alerts/${id}/cancel`, { reason: '报警人撤销' });
  t.equal(cancel.status, 200, 'cancel right after the 202');
  t.same(cancel.body.deliveries.map((d: any) => d.state), ['cancelled', 'cancelled']);
  t.equal(await logLength(e), 0, 'the cancel materialised the alert (its log entry is gone)');
  const after = JSON.parse((await e.r.get(e.k.alert(id)))!);
  t.equal(await e.r.exists(e.k.alertLog(id)), 0, 'and the log key is gone');
  t.same({ ...after, status: before.status, updatedAt: before.updatedAt }, { ...before, status: before.status, updatedAt: before.updatedAt }, 'the record is as it was');
  t.same(after.alert, alert('LOG-1'), 'the alert in it byte for byte');
  const events = (await auditEvents(e.r, prefix)).filter((ev) => ev.alertId === id);
  t.same(events.map((ev) => ev.type), ['alert.received', 'delivery.state', 'delivery.state'], 'received (with the route) comes before the cancel');
  t.same(events[0].data.alert, alert('LOG-1'), 'alert.received holds the alert');
  t.same(events[0].data.deliveryIds, res.body.deliveries.map((d: any) => d.id), 'and the route: its deliveries');
  t.equal(await materialise(e.f), 0, 'a dispatcher later finds nothing left to do');
  // A write that found a delivery missing just before a dispatcher wrote it must read again: the
  // answer says the alert exists, though this call had nothing left to do.
  t.equal(await e.f.rt.materialiser.delivery(res.body.deliveries[0].id), true, 'materialised already: read again');
  t.equal(await e.f.rt.materialiser.delivery('dlv_01nosuchalert0000000000000.p1'), false, 'no such alert: nothing to read');
  t.equal((await auditEvents(e.r, prefix)).filter((ev) => ev.alertId === id).length, 3, 'and writes nothing twice');
});

t.test('a record of the earlier version, which holds its log entry id itself: read as pending, then materialised and the field dropped', async (t) => {
  const e = await startEngineEnv(t, { redis, role: 'api', engine: { ingestWriteThrough: false }, platforms: [{ id: 'p1', kind: 'hotline-12345' }] });
  const res = await e.source.post('/v1/alerts', alert('LOG-OLD'));
  t.equal(res.status, 202);
  const id = res.body.id;
  // What the earlier version wrote: the entry id in the record (right after the alert), no log key.
  const entry = (await e.r.get(e.k.alertLog(id)))!;
  const raw = (await e.r.get(e.k.alert(id)))!;
  const alertJson = JSON.stringify(JSON.parse(raw).alert);
  t.ok(raw.startsWith(`{"alert":${alertJson},`), 'the alert heads the record');
  await e.r.set(e.k.alert(id), `{"alert":${alertJson},"log":"${entry}",${raw.slice(10 + alertJson.length)}`);
  await e.r.del(e.k.alertLog(id));
  const view = await e.source.get(`/v1/alerts/${id}`);
  t.same(view.body.deliveries.map((d: any) => d.state), ['queued'], "read as pending from the record's own log id");
  const cancel = await e.source.post(`/v1/alerts/${id}/cancel`, { reason: '报警人撤销' });
  t.same(cancel.body.deliveries.map((d: any) => d.state), ['cancelled'], 'a write materialises it first');
  const after = JSON.parse((await e.r.get(e.k.alert(id)))!);
  t.notOk('log' in after, 'the record lost its log id');
  t.same(after.alert, JSON.parse(alertJson), 'the alert in it as it was');
});

t.test('a dispatcher stopped mid-way through a backlog: the next one finishes it, nothing doubled', async (t) => {
  const e = await startEngineEnv(t, { redis, role: 'api', engine: { ingestWriteThrough: false }, platforms: [{ id: 'p1', kind: 'hotline-12345' }] });
  const prefix = e.f.cfg.redis.prefix;
  const N = 150;
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
  const groups = await Promise.all(e.k.bucketList.map((b) => e.r.xinfo('CONSUMERS', e.k.ingestLog(b), 'dispatch') as Promise<unknown[][]>));
  t.ok(groups.every((list) => !list.some((c) => c.includes(first.consumer))), 'the stopped dispatcher, holding nothing, left the group');
  t.ok(groups.some((list) => list.some((c) => c.includes(second.consumer))), 'one still running is there');
});

t.test('an unreadable log entry is moved to the parked stream, not lost, and does not block the log', async (t) => {
  const e = await startEngineEnv(t, { redis, role: 'api', engine: { ingestWriteThrough: false }, platforms: [{ id: 'p1', kind: 'hotline-12345' }] });
  const rt = e.f.rt;
  const d = new Dispatcher(rt.redis, rt.keys, e.f.cfg.redis.prefix, rt.materialiser, rt.log);
  await d.drain();
  const bad = await e.r.xadd(e.k.ingestLog(3), '*', 'alt_x3', '{not json');
  const ok = await e.source.post('/v1/alerts', alert('PARK-1'));
  t.equal(ok.status, 202);
  t.equal(await d.drain(), 1, 'the readable alert is materialised');
  t.equal(await logLength(e), 0, 'the log is empty');
  const parked = await e.r.xrange(e.k.ingestParked(3), '-', '+');
  t.same(parked.map(([, f]) => f), [['entry', bad, 'alt_x3', '{not json']], 'the unreadable entry is kept as it was, with its id');
});

t.test('stop redis', async () => redis.stop());
