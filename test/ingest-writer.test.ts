/**
 * The batch writer on its own, against a private Redis: a batch far larger than one MSET/ZADD
 * chunk of the script (1000 arguments), the alert's JSON spliced into record and audit events,
 * and copies answered from the first.
 */
import t from 'tap';
import { Redis } from 'ioredis';
import { QueueRegistry } from '../src/delivery/queues.js';
import { IngestWriter, type PendingAlert } from '../src/ingest/writer.js';
import { canonicalJson } from '../src/ingest/validate.js';
import { auditStreamKey } from '../src/audit/events.js';
import { deliveryId, newId } from '../src/store/ids.js';
import { keys } from '../src/store/keys.js';
import type { AlertRecord, DeliveryRecord } from '../src/store/records.js';
import { startRedis } from './helpers/redis.js';
import { alert } from './helpers/fenliu.js';
import { each, zcardAll } from '../src/store/fanout.js';
import { bucketOf } from '../src/store/keys.js';

const PREFIX = 'w';
const k = keys(PREFIX);

function pending(n: number, over: { audit?: 'only-alert' } = {}): PendingAlert {
  const a = alert(`W-${n}`) as AlertRecord['alert'];
  const now = new Date().toISOString();
  const id = newId('alt', Date.now(), k.idemBucket('s1', `W-${n}`));
  const d: DeliveryRecord = { id: deliveryId(id, 'p1'), alertId: id, platformId: 'p1', state: 'queued', priority: 'normal', createdAt: now, updatedAt: now, attempts: 0, kind: 'primary', ackBy: new Date(Date.now() + 60_000).toISOString() };
  const record: AlertRecord = { id, receivedAt: now, sourceId: 's1', idempotencyKey: `W-${n}`, bodyHash: `h${n}`, alert: a, route: { ruleId: 'default', targets: ['p1'], fallback: [] } as unknown as AlertRecord['route'], deliveryIds: [d.id] };
  return {
    record,
    deliveries: [d],
    idemKey: k.idem('s1', `W-${n}`),
    alertJson: canonicalJson(a),
    audit: [
      { type: 'alert.received', at: now, alertId: id, data: over.audit === 'only-alert' ? { alert: a } : { alert: a, bodyHash: record.bodyHash } },
      { type: 'alert.routed', at: now, alertId: id, data: { targets: ['p1'] } },
    ],
    sets: [[`${PREFIX}:repeat:place:${n}`, id, 60_000]],
  };
}

t.test('a batch of 700 alerts in one turn: every record, index entry, timer, job and audit event', async (t) => {
  const redis = await startRedis();
  const r = new Redis(redis.url);
  const queues = new QueueRegistry(r, k.queuePrefix, ['p1']);
  t.teardown(async () => {
    await queues.close();
    r.disconnect();
    await redis.stop();
  });
  const writer = new IngestWriter(r, k, PREFIX, queues);
  const items = Array.from({ length: 700 }, (_, i) => pending(i, i === 0 ? { audit: 'only-alert' } : {}));
  const outcomes = await Promise.all(items.map((x) => writer.submit(x)));
  t.ok(outcomes.every((o) => o.kind === 'created'), 'all created');
  t.equal(await zcardAll(r, each(k.bucketList, k.alerts)), 700, 'alerts index');
  t.equal(await zcardAll(r, each(k.bucketList, (b) => k.alertsBySource(b, 's1'))), 700, 'per-source index');
  t.equal(await zcardAll(r, each(k.bucketList, k.slaDue)), 700, 'one SLA timer each');
  t.equal(await queues.get('p1').getJobCountByTypes('prioritized', 'waiting'), 700, 'one job each');
  for (const i of [0, 1, 350, 699]) {
    const rec = JSON.parse((await r.get(k.alert(items[i].record.id)))!) as AlertRecord;
    t.same(rec.alert, items[i].record.alert, `record ${i} holds the alert`);
    t.equal(rec.id, items[i].record.id);
    t.equal(await r.get(items[i].idemKey), `${rec.id} ${rec.bodyHash}`, `claim ${i}`);
    t.equal(Number(await r.zscore(k.slaDue(bucketOf(items[i].deliveries[0].id)), items[i].deliveries[0].id)), Date.parse(items[i].deliveries[0].ackBy!), `timer ${i} at its deadline`);
    t.equal(await r.get(`${PREFIX}:repeat:place:${i}`), rec.id, `repeat key ${i}`);
    t.same(await r.hget(k.delivery(items[i].deliveries[0].id), 'state'), 'queued');
  }
  const events = (await r.xrange(auditStreamKey(PREFIX), '-', '+')).map(([, f]) => JSON.parse(f[1]));
  t.equal(events.length, 1400, 'two audit events per alert');
  // Each bucket's events keep their order; buckets interleave (src/store/audit-relay.ts).
  const of = (id: string) => events.filter((e) => e.alertId === id);
  t.same(of(items[0].record.id)[0], JSON.parse(JSON.stringify(items[0].audit[0])), 'an event whose data is only the alert');
  t.same(of(items[1].record.id)[0], JSON.parse(JSON.stringify(items[1].audit[0])), 'an event with the alert and more');
  t.same(of(items[1].record.id)[1], items[1].audit[1], 'an event without the alert, as it was');

  // Copies: the same keys again, in one turn, with one body changed.
  const again = [pending(5), pending(6)];
  again[1].record.bodyHash = 'changed';
  const [dup, conflict] = await Promise.all(again.map((x) => writer.submit(x)));
  t.match(dup, { kind: 'duplicate', record: { id: items[5].record.id } });
  t.match(conflict, { kind: 'conflict', existingId: items[6].record.id });
  t.equal(await zcardAll(r, each(k.bucketList, k.alerts)), 700, 'nothing of the copies written');
  t.equal(await r.exists(k.alert(again[0].record.id)), 0);
});

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
