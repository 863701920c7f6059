/**
 * The batch writer and the dispatcher on their own, against a private Redis: a batch far larger
 * than one MSET/ZADD chunk of the scripts (1000 arguments); the request path writing only claims,
 * records, indexes and the ingest log; the dispatcher materialising everything else once, with
 * the alert's JSON spliced into its audit event; copies answered from the first. On the single-Redis
 * layout (one script for all buckets) and the Cluster one (one per bucket, events relayed).
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { QueueRegistry } from '../src/delivery/queues.js';
import { IngestWriter, type PendingAlert } from '../src/ingest/writer.js';
import { Dispatcher, Materialiser } from '../src/ingest/dispatcher.js';
import { canonicalJson } from '../src/ingest/validate.js';
import { AUDIT_FIELD, AUDIT_SEALED_FIELD, auditLockKey, auditStreamKey, type AuditEvent } from '../src/audit/events.js';
import { newId } from '../src/store/ids.js';
import { newDelivery } from '../src/store/ingest-log.js';
import { keys, setStandalone } from '../src/store/keys.js';
import { deliveryHash, getDeliveries, type AlertRecord } from '../src/store/records.js';
import { createLogger } from '../src/log.js';
import { startRedis } from './helpers/redis.js';
import { alert } from './helpers/fenliu.js';
import { each, zcardAll } from '../src/store/fanout.js';
import { bucketOf } from '../src/store/keys.js';
import { decodeStreamEntry, placeholderAt } from '../src/audit/format.js';
import { ARCHIVER_TOKEN_PREFIX, readStreamFormat } from '../src/audit/stream-format.js';
import { workChannel } from '../src/delivery/wake.js';

const actor = { kind: 'source', id: 's1', keyId: 'k1' } as const;

function pending(k: ReturnType<typeof keys>, prefix: string, n: number): PendingAlert {
  const a = alert(`W-${n}`) as AlertRecord['alert'];
  const now = new Date().toISOString();
  const id = newId('alt', Date.now(), k.idemBucket('s1', `W-${n}`));
  const d = newDelivery(id, 'p1', 'normal', now, { ackBy: new Date(Date.now() + 60_000).toISOString() });
  const record: AlertRecord = { id, receivedAt: now, sourceId: 's1', idempotencyKey: `W-${n}`, bodyHash: `h${n}`, keyId: 'k1', alert: a, route: { ruleId: 'default', targets: ['p1'], fallback: [] } as unknown as AlertRecord['route'], deliveryIds: [d.id] };
  return { record, deliveries: [d], idemKey: k.idem('s1', `W-${n}`), alertJson: canonicalJson(a), actor };
}

for (const standalone of [true, false]) {
  t.test(`a batch of 700 alerts in one turn (${standalone ? 'single Redis' : 'Cluster layout'}): stored, then materialised once`, async (t) => {
    const PREFIX = standalone ? 'ws' : 'wc';
    const k = keys(PREFIX);
    setStandalone(PREFIX, standalone);
    const redis = await startRedis();
    const r = new Redis(redis.url);
    const queues = new QueueRegistry(r, k, ['p1']);
    t.teardown(async () => {
      await queues.close();
      r.disconnect();
      await redis.stop();
    });
    const writer = new IngestWriter(r, k, PREFIX);
    const items = Array.from({ length: 700 }, (_, i) => pending(k, PREFIX, i));
    // Non-ASCII text: the script cuts the alert out of the record by its length in bytes.
    items[3].record.alert.summary = '中文摘要，含“引号”与 \\ 反斜杠';
    items[3].alertJson = canonicalJson(items[3].record.alert);
    const calls0 = await commandCalls(r);
    const outcomes = await Promise.all(items.map((x) => writer.submit(x)));
    const calls = { script: (await commandCalls(r)).script - calls0.script };
    t.ok(outcomes.every((o) => o.kind === 'created'), 'all created');
    t.equal(await zcardAll(r, each(k.bucketList, k.alerts)), 700, 'alerts index');
    t.equal(await zcardAll(r, each(k.bucketList, (b) => k.alertsBySource(b, 's1'))), 700, 'per-source index');
    t.equal(await zcardAll(r, each(k.bucketList, k.slaDue)), 0, 'no SLA timer in the request path');
    t.equal((await queues.counts('p1')).waiting, 0, 'no job in the request path');
    t.equal(await r.exists(k.delivery(items[0].deliveries[0].id)), 0, 'no delivery hash in the request path');
    t.equal(await r.xlen(auditStreamKey(PREFIX)), 0, 'no audit event in the request path');
    const logged = (await Promise.all(k.bucketList.map((b) => r.xlen(k.ingestLog(b))))).reduce((a, x) => a + x, 0);
    t.equal(logged, 16, 'one log entry per bucket');
    if (standalone) t.equal(calls.script, 1, 'one ingest script call for the batch');
    else t.equal(calls.script, 16, 'one ingest script call per bucket');
    for (const i of [0, 1, 3, 350, 699]) {
      const rec = JSON.parse((await r.get(k.alert(items[i].record.id)))!) as AlertRecord;
      t.same(rec.alert, items[i].record.alert, `record ${i} holds the alert`);
      t.notOk('log' in rec, `record ${i} does not hold its log entry's id`);
      t.match(await r.get(k.alertLog(rec.id)), /^\d+-\d+$/, `alert ${i}'s log key names its log entry`);
      t.equal(await r.get(items[i].idemKey), `${rec.id} ${rec.bodyHash}`, `claim ${i}`);
    }
    // A read before materialisation shows the deliveries as they will be written.
    const [shown] = await getDeliveries(r, k, [items[3].deliveries[0].id]);
    t.same(shown, items[3].deliveries[0], 'a pending delivery reads as queued, with its deadlines');

    const d = new Dispatcher(r, k, PREFIX, new Materialiser(r, k, PREFIX), createLogger('silent'));
    t.equal(await d.drain(), 700, 'the dispatcher materialises every alert');
    t.equal(await d.drain(), 0, 'and nothing twice');
    t.equal(await zcardAll(r, each(k.bucketList, k.slaDue)), 700, 'one SLA timer each');
    t.equal((await queues.counts('p1')).waiting, 700, 'one job each');
    t.equal((await Promise.all(k.bucketList.map((b) => r.xlen(k.ingestLog(b))))).reduce((a, x) => a + x, 0), 0, 'the log entries are deleted');
    for (const i of [0, 3, 699]) {
      const dl = items[i].deliveries[0];
      t.equal(Number(await r.zscore(k.slaDue(bucketOf(dl.id)), dl.id)), Date.parse(dl.ackBy!), `timer ${i} at its deadline`);
      const [got] = await getDeliveries(r, k, [dl.id]);
      t.same(got, dl, `delivery ${i} as ingest answered it`);
      t.same((await r.lrange(k.history(dl.id), 0, -1)).map((h) => JSON.parse(h)), [{ at: dl.createdAt, to: 'queued', source: 'ingest' }]);
    }
    const events = (await r.xrange(auditStreamKey(PREFIX), '-', '+')).map(([id, f]) => decodeStreamEntry(id, f));
    t.equal(events.length, 700, 'one audit event per alert');
    const of = (id: string) => events.filter((e) => e.alertId === id);
    const x = items[3].record;
    t.same(of(x.id), [
      { type: 'alert.received', at: x.receivedAt, alertId: x.id, sourceId: 's1', actor, data: { alert: x.alert, bodyHash: x.bodyHash, idempotencyKey: x.idempotencyKey, ruleId: 'default', targets: ['p1'], deliveryIds: x.deliveryIds } },
    ], 'one alert.received: the alert spliced from the record, and the route (no separate alert.routed)');

    // Copies: the same keys again, in one turn, with one body changed.
    const again = [pending(k, PREFIX, 5), pending(k, PREFIX, 6)];
    again[1].record.bodyHash = 'changed';
    const [dup, conflict] = await Promise.all(again.map((x) => writer.submit(x)));
    t.match(dup, { kind: 'duplicate', record: { id: items[5].record.id } });
    t.match(conflict, { kind: 'conflict', existingId: items[6].record.id });
    t.equal(await zcardAll(r, each(k.bucketList, k.alerts)), 700, 'nothing of the copies written');
    t.equal(await r.exists(k.alert(again[0].record.id)), 0);
  });
}

// Sealed (the archiver holding the lock reads them) or whole (src/audit/stream-format.ts), the events read the same.
for (const sealed of [false, true]) t.test(`audit events (written ${sealed ? 'sealed' : 'whole'}): one alert.received with the route per routed alert; a repeat call also its alert.repeat, in the same script call`, async (t) => {
  const { PREFIX, k, r, writer } = await standaloneWriter(t, sealed ? 'ws2' : 'we');
  if (sealed) await r.set(auditLockKey(PREFIX), `${ARCHIVER_TOKEN_PREFIX}test`);
  t.equal(await readStreamFormat(r, PREFIX), sealed);
  const [a, rep, c] = [1, 2, 3].map((n) => pending(k, PREFIX, n));
  // the alert's real hash: a sealed alert.received's placeholder is the record's bodyHash
  for (const x of [a, rep, c]) x.record.bodyHash = createHash('sha256').update(x.alertJson ?? JSON.stringify(x.record.alert)).digest('hex');
  // A repeat call of a (src/ingest/ingest.ts): no deliveries, the link on the record.
  Object.assign(rep.record, { deliveryIds: [], repeatOf: a.record.id, repeatMatch: { key: 'phone+family', on: 'consumer', crossSource: false } });
  rep.deliveries = [];
  t.same((await Promise.all([a, rep, c].map((x) => writer.submit(x)))).map((o) => o.kind), ['created', 'created', 'created']);
  const calls0 = await commandCalls(r);
  t.equal(await new Dispatcher(r, k, PREFIX, new Materialiser(r, k, PREFIX), createLogger('silent')).drain(), 3);
  // One materialise call: the script reads an event count per alert (1 or 2) from one argument list.
  t.equal((await commandCalls(r)).script - calls0.script, 1, 'one script call for the three alerts');
  const entries = await r.xrange(auditStreamKey(PREFIX), '-', '+');
  const received = entries.filter(([, f]) => f.join(' ').includes('alert.received'));
  t.same(
    received.map(([, f]) => f.filter((_, i) => i % 2 === 0)),
    received.map(() => (sealed ? [AUDIT_SEALED_FIELD, 'b:data.alert'] : [AUDIT_FIELD])),
    sealed ? 'alert.received sealed, the alert beside it' : 'alert.received whole',
  );
  if (sealed) for (const [, f] of received) t.equal(placeholderAt(JSON.parse(f[1]) as AuditEvent, 'data.alert'), createHash('sha256').update(f[3]).digest('hex'), 'its placeholder hashes the alert beside it');
  const events = entries.map(([id, f]) => decodeStreamEntry(id, f) as AuditEvent & { data: Record<string, unknown> });
  t.equal(events.length, 4, 'four events for three alerts');
  t.equal(events.filter((e) => e.type === 'alert.routed').length, 0, 'no alert.routed');
  const types = (x: PendingAlert) => events.filter((e) => e.alertId === x.record.id).map((e) => e.type);
  t.same([types(a), types(rep), types(c)], [['alert.received'], ['alert.received', 'alert.repeat'], ['alert.received']]);
  // Events are in argument order (buckets in order): an alert after the repeat call's two events
  // reads its own arguments only if the count was read right.
  const last = events.findIndex((e) => e.type === 'alert.repeat');
  t.ok(last >= 0 && last < events.length - 1, 'a routed alert comes after the repeat call in the call (deterministic buckets)');
  const after = events[last + 1];
  t.same([after.type, after.data.targets], ['alert.received', ['p1']], 'and its event is whole');
  const ev = (x: PendingAlert, type: string) => events.find((e) => e.alertId === x.record.id && e.type === type);
  const route = (x: PendingAlert) => ({ ruleId: 'default', targets: ['p1'], deliveryIds: x.record.deliveryIds });
  t.same(ev(a, 'alert.received')?.data, { alert: a.record.alert, bodyHash: a.record.bodyHash, idempotencyKey: a.record.idempotencyKey, ...route(a) }, 'a routed alert: the route on alert.received');
  t.same(ev(c, 'alert.received')?.data, { alert: c.record.alert, bodyHash: c.record.bodyHash, idempotencyKey: c.record.idempotencyKey, ...route(c) }, 'the other too');
  t.same(ev(rep, 'alert.received')?.data, { alert: rep.record.alert, bodyHash: rep.record.bodyHash, idempotencyKey: rep.record.idempotencyKey }, 'a repeat call: no route on alert.received');
  t.same(ev(rep, 'alert.repeat'), { type: 'alert.repeat', at: rep.record.receivedAt, alertId: rep.record.id, sourceId: 's1', data: { repeatOf: a.record.id, ruleId: 'default', matchedBy: 'phone+family', on: 'consumer', crossSource: false } }, 'and its alert.repeat');
});

/** Script calls (EVALSHA and EVAL) so far, from INFO commandstats. */
async function commandCalls(r: Redis): Promise<{ script: number }> {
  const info = await r.info('commandstats');
  let script = 0;
  for (const m of info.matchAll(/cmdstat_(evalsha|eval):calls=(\d+)/g)) script += Number(m[2]);
  return { script };
}

t.test('canonicalJson: sorted keys, and the same JSON value as JSON.stringify for any input', async (t) => {
  const values: unknown[] = [
    { b: 1, a: [1, undefined, () => 1, 'x'], c: { z: null, y: new Date(0), f: () => 1, u: undefined } },
    ['é', '中文', '\u2028', 1.5e-7, -0, true],
    { nested: { deeper: [{ b: 2, a: 1 }] } },
    'plain',
    null,
  ];
  for (const v of values) {
    const c = canonicalJson(v);
    t.same(JSON.parse(c), JSON.parse(JSON.stringify(v)), `same value as JSON.stringify (${typeof v})`);
  }
  t.equal(canonicalJson({ b: 1, a: { d: 1, c: 2 } }), '{"a":{"c":2,"d":1},"b":1}');
});

t.test('canonicalJson: key order comes from each object itself, whatever shapes came before', async (t) => {
  // Shapes whose joined keys collide (a key holding NUL) must not share a sorted order.
  t.equal(canonicalJson({ 'a\u0000': 1, b: 2 }), '{"a\\u0000":1,"b":2}');
  t.equal(canonicalJson({ a: 1, '\u0000b': 2 }), '{"\\u0000b":2,"a":1}');
  // The same shape again, other values and an undefined member.
  t.equal(canonicalJson({ b: [1, { d: 4, c: 3 }], a: 'x' }), '{"a":"x","b":[1,{"c":3,"d":4}]}');
  t.equal(canonicalJson({ b: null, a: undefined }), '{"b":null}');
  t.equal(canonicalJson({ b: 2, a: 1, é: true, '"q"': 0 }), '{"\\"q\\"":0,"a":1,"b":2,"é":true}');
  // Many shapes (more than the cache holds) all stay sorted.
  const unsorted: number[] = [];
  for (let i = 0; i < 2_500; i++) if (canonicalJson({ [`k${i}`]: i, a: i }) !== `{"a":${i},"k${i}":${i}}`) unsorted.push(i);
  t.same(unsorted, []);
});

t.test('repeat-call keys claimed with the record: both free, or nothing of the alert is written', async (t) => {
  const { PREFIX, k, r, writer } = await standaloneWriter(t, 'wr');
  const [a, b, c, d] = [1, 2, 3, 4].map((n) => pending(k, PREFIX, n));
  a.repeat = { place: k.repeatPlace('p1'), phone: k.repeatPhone('f1'), windowMs: 60_000 };
  // Same batch: b repeats a's place, c a's phone (its place is free); d has other keys.
  b.repeat = { place: k.repeatPlace('p1'), windowMs: 60_000 };
  c.repeat = { place: k.repeatPlace('p3'), phone: k.repeatPhone('f1'), windowMs: 60_000 };
  d.repeat = { place: k.repeatPlace('p4'), phone: k.repeatPhone('f4'), windowMs: 60_000 };
  const out = await Promise.all([a, b, c, d].map((x) => writer.submit(x)));
  t.same(out.map((o) => o.kind), ['created', 'repeat-held', 'repeat-held', 'created']);
  t.equal(await r.get(k.repeatPlace('p1')), a.record.id, 'the place key names the first alert');
  t.equal(await r.get(k.repeatPhone('f1')), a.record.id, 'the phone key too');
  t.equal(await r.get(k.repeatPlace('p3')), null, 'a held phone key leaves no place claim behind');
  t.equal(await r.get(k.repeatPhone('f4')), d.record.id);
  const ttl = await r.pttl(k.repeatPlace('p4'));
  t.ok(ttl > 0 && ttl <= 60_000, 'claimed for the window');
  for (const x of [b, c]) {
    t.equal(await r.exists(k.alert(x.record.id)), 0, 'a held key: no record');
    t.equal(await r.get(x.idemKey), null, 'and no idempotency claim');
  }
  // Submitted again without keys (the matcher decided): stored.
  delete b.repeat;
  t.equal((await writer.submit(b)).kind, 'created');
  // A copy of a stored alert claims nothing: idempotency answers first.
  const copy = { ...a, repeat: { place: k.repeatPlace('p9'), windowMs: 60_000 } };
  t.equal((await writer.submit(copy)).kind, 'duplicate');
  t.equal(await r.get(k.repeatPlace('p9')), null, 'no key claimed for a copy');
});

/** A private Redis, standalone key layout under `prefix`, and a writer on it (stopped at teardown). */
async function standaloneWriter(t: { teardown(fn: () => unknown): void }, prefix: string) {
  const k = keys(prefix);
  setStandalone(prefix, true);
  const redis = await startRedis();
  const r = new Redis(redis.url);
  t.teardown(async () => {
    r.disconnect();
    await redis.stop();
  });
  return { PREFIX: prefix, k, r, writer: new IngestWriter(r, k, prefix) };
}

/** What one alert's materialisation wrote: the log-first and the write-through paths are compared on it. */
async function written(r: Redis, k: ReturnType<typeof keys>, prefix: string, x: PendingAlert) {
  const ids = x.record.deliveryIds;
  const work = (id: string, urgent: boolean) => r.zscore(k.work(bucketOf(id), id.slice(id.indexOf('.') + 1), urgent), id);
  return {
    record: JSON.parse((await r.get(k.alert(x.record.id)))!) as AlertRecord,
    deliveries: await Promise.all(ids.map((id) => r.hgetall(k.delivery(id)))),
    history: await Promise.all(ids.map(async (id) => (await r.lrange(k.history(id), 0, -1)).map((h) => JSON.parse(h)))),
    timers: await Promise.all(ids.map((id) => r.zscore(k.slaDue(bucketOf(id)), id))),
    jobs: await Promise.all(ids.map(async (id) => [(await work(id, true)) !== null, (await work(id, false)) !== null])),
    events: (await r.xrange(auditStreamKey(prefix), '-', '+')).map(([id, f]) => decodeStreamEntry(id, f) as AuditEvent & { data: Record<string, unknown> }).filter((e) => e.alertId === x.record.id),
    logKey: await r.get(k.alertLog(x.record.id)),
  };
}

// Sealed or whole events (the archiver's lock says which), as the log-first tests above.
for (const sealed of [false, true]) t.test(`write-through (engine.ingestWriteThrough, events ${sealed ? 'sealed' : 'whole'}): one script call writes what the log and the dispatcher would, and wakes the engines`, async (t) => {
  const { PREFIX, k, r, writer: logFirst } = await standaloneWriter(t, sealed ? 'wts' : 'wtw');
  if (sealed) await r.set(auditLockKey(PREFIX), `${ARCHIVER_TOKEN_PREFIX}test`);
  t.equal(await readStreamFormat(r, PREFIX), sealed);
  const through = new IngestWriter(r, k, PREFIX, undefined, true);
  const sub = new Redis(r.options);
  t.teardown(() => sub.disconnect());
  const messages: string[] = [];
  sub.on('message', (_c: string, m: string) => messages.push(m));
  await sub.subscribe(workChannel(PREFIX));

  // The same alerts (urgent and normal, two platforms, a repeat call, non-ASCII text) both ways.
  const batch = (from: number) => {
    const xs = [0, 1, 2, 3].map((i) => pending(k, PREFIX, from + i));
    const [a, b, rep] = xs;
    a.record.alert.summary = '中文摘要，含“引号”与 \\ 反斜杠';
    a.alertJson = canonicalJson(a.record.alert);
    const d2 = newDelivery(b.record.id, 'p2', 'urgent', b.record.receivedAt, {});
    b.record.deliveryIds = [...b.record.deliveryIds, d2.id];
    b.record.route = { ...b.record.route, targets: ['p1', 'p2'] };
    b.deliveries = [newDelivery(b.record.id, 'p1', 'urgent', b.record.receivedAt, b.deliveries[0].ackBy ? { ackBy: b.deliveries[0].ackBy } : {}), d2];
    (b.record.alert as { priority?: string }).priority = 'urgent';
    b.alertJson = canonicalJson(b.record.alert);
    Object.assign(rep.record, { deliveryIds: [], repeatOf: a.record.id, repeatMatch: { key: 'phone+family', on: 'consumer', crossSource: false } });
    rep.deliveries = [];
    for (const x of xs) x.record.bodyHash = createHash('sha256').update(x.alertJson ?? JSON.stringify(x.record.alert)).digest('hex');
    return xs;
  };
  const viaLog = batch(0);
  t.same((await Promise.all(viaLog.map((x) => logFirst.submit(x)))).map((o) => o.kind), ['created', 'created', 'created', 'created']);
  t.equal(await new Dispatcher(r, k, PREFIX, new Materialiser(r, k, PREFIX), createLogger('silent')).drain(), 4);
  messages.length = 0;

  const direct = batch(10);
  const calls0 = await commandCalls(r);
  t.same((await Promise.all(direct.map((x) => through.submit(x)))).map((o) => o.kind), ['created', 'created', 'created', 'created']);
  t.equal((await commandCalls(r)).script - calls0.script, 1, 'one script call for the batch');
  t.equal((await Promise.all(k.bucketList.map((b) => r.xlen(k.ingestLog(b))))).reduce((a, x) => a + x, 0), 0, 'nothing in the ingest log');
  // Redis sends a script's PUBLISH to subscribers at once; it has reached ours once a PING after it answers.
  await sub.ping();
  t.same(messages.map((m) => m.split(' ').sort()), [['p1', 'p2']], "one wake-up message for the call, naming the batch's platforms");
  for (const [i, x] of direct.entries()) {
    const [got, want] = [await written(r, k, PREFIX, x), await written(r, k, PREFIX, viaLog[i])];
    t.same(got.record.alert, x.record.alert, `alert ${i}: the record holds the alert`);
    t.equal(got.logKey, null, `alert ${i}: no log key`);
    t.same(got.deliveries, x.deliveries.map(deliveryHash), `alert ${i}: each delivery hash as ingest answered it`);
    t.same(got.history, x.deliveries.map((d) => [{ at: d.createdAt, to: 'queued', source: 'ingest' }]), `alert ${i}: one ingest history entry per delivery`);
    t.same(got.timers, x.deliveries.map((d) => (d.ackBy ? String(Date.parse(d.ackBy)) : null)), `alert ${i}: each SLA timer at its deadline`);
    t.same(got.jobs, x.deliveries.map((d) => [d.priority === 'urgent', d.priority !== 'urgent']), `alert ${i}: one job each, in its priority's work set`);
    t.same(got.jobs, want.jobs, `alert ${i}: as log-first`);
    t.same(got.events.map((e) => [e.type, Object.keys(e.data)]), want.events.map((e) => [e.type, Object.keys(e.data)]), `alert ${i}: the same audit events as log-first`);
    const received = got.events.find((e) => e.type === 'alert.received');
    t.same(received?.data, { alert: x.record.alert, bodyHash: x.record.bodyHash, idempotencyKey: x.record.idempotencyKey, ...(x.record.repeatOf ? {} : { ruleId: 'default', targets: x.record.route.targets, deliveryIds: x.record.deliveryIds }) }, `alert ${i}: alert.received holds the alert${x.record.repeatOf ? '' : ' and its route'}`);
    t.same(received?.actor, actor, `alert ${i}: and who sent it`);
  }

  // A copy and a held repeat-call key write nothing more: no second event, delivery or message.
  messages.length = 0;
  const before = await r.xlen(auditStreamKey(PREFIX));
  const copy = batch(10)[2];
  const held = pending(k, PREFIX, 30);
  await r.set(k.repeatPlace('held'), 'alt_other');
  held.repeat = { place: k.repeatPlace('held'), windowMs: 60_000 };
  t.same((await Promise.all([through.submit({ ...copy, record: { ...direct[2].record } }), through.submit(held)])).map((o) => o.kind), ['duplicate', 'repeat-held']);
  t.equal(await r.xlen(auditStreamKey(PREFIX)), before, 'no event for a copy or a held alert');
  t.equal(await r.exists(k.delivery(held.deliveries[0].id)), 0, 'no delivery for a held alert');
  t.equal(await r.zscore(k.work(bucketOf(held.deliveries[0].id), 'p1', false), held.deliveries[0].id), null, 'and no job');
  await sub.ping();
  t.same(messages, [], 'and no wake-up');
});
