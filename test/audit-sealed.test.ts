import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { AuditArchiver } from '../src/audit/archiver.js';
import { AUDIT_FIELD, AUDIT_SEALED_FIELD, auditLockKey, auditStreamKey, type AuditEvent } from '../src/audit/events.js';
import { readStreamFormat, sealedStream } from '../src/audit/stream-format.js';
import { recordAttempt } from '../src/delivery/record.js';
import { keys, setStandalone } from '../src/store/keys.js';
import { decodeStreamEntry, listSegments, openRecord, parseRecord, sealForStream, serializeRecord, type AuditKeyring } from '../src/audit/format.js';
import { verifyAuditDir } from '../src/audit/verify.js';
import { until } from './helpers/engine.js';
import { redisAndDir } from './helpers/audit.js';

// Producers write the hot events sealed (`s` + `b:<path>`, src/audit/format.ts sealForStream) so
// the archiver joins strings. Whatever the form, the archived record must be the one the archiver
// makes from the event written whole: the same bytes, the same chain and tree, verifiable.

const { redis, dir: root } = await redisAndDir(t, 'fenliu-sealed-');

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

const EVENTS: AuditEvent[] = [
  {
    data: { alert: { summary: '欠薪纠纷 "引号" a/b \\ 反斜杠', caller: { name: '张三', phone: '13800000000' }, tags: ['x', 1, null, true] }, bodyHash: 'h', idempotencyKey: 'k' },
    type: 'alert.received',
    at: '2026-11-30T01:02:03.004Z',
    alertId: 'A-1',
    sourceId: '110',
    actor: { kind: 'source', id: 'k1', keyId: 'k1' },
  },
  {
    type: 'delivery.attempt',
    at: '2026-11-30T01:02:04.000Z',
    alertId: 'A-1',
    deliveryId: 'D-1',
    platformId: 'p',
    data: { n: 1, outcome: 'delivered', body: '{"x":"y/z","n":"\u2028"}', request: { url: 'https://p/x', headers: { a: 'b' } }, response: { status: 201, body: '' }, from: 'sending', to: 'delivered' },
  },
  { type: 'delivery.state', at: '2026-11-30T01:02:05.000Z', deliveryId: 'D-1', data: {} },
  { type: 'sla.expired', at: '2026-11-30T01:02:06.000Z', deliveryId: 'D-1' },
  { type: 'delivery.attempt', at: '2026-11-30T01:02:07.000Z', deliveryId: 'D-2', data: { n: 2, body: { nested: ['a'] }, response: null } },
];

async function archive(prefix: string, entries: string[][], opts: { keyring?: AuditKeyring } = {}): Promise<string> {
  for (const fields of entries) await redis.xadd(auditStreamKey(prefix), '*', ...fields);
  const dir = join(root, prefix);
  const a = new AuditArchiver({ redis, prefix, dir, ...opts });
  t.equal(await a.flushOnce(), entries.length, `${prefix}: every entry archived`);
  await a.stop();
  let text = '';
  for (const s of await listSegments(dir)) text += await readFile(join(dir, s), 'utf8');
  return text;
}

const whole = (ev: AuditEvent) => [AUDIT_FIELD, JSON.stringify(ev)];
function sealed(ev: AuditEvent): string[] {
  const { event, bodyFields } = sealForStream(clone(ev));
  return [AUDIT_SEALED_FIELD, JSON.stringify(event), ...bodyFields];
}
// A record without what differs between two streams: seq, stream id and the chain hash before it.
const fromEvent = (line: string) => line.slice(line.indexOf(',"event":'));

t.test('a sealed entry is archived as the same record as the event written whole', async (t) => {
  const a = (await archive('whole', EVENTS.map(whole))).split('\n').filter(Boolean);
  const b = (await archive('sealed', EVENTS.map(sealed))).split('\n').filter(Boolean);
  t.equal(b.length, EVENTS.length);
  t.same(b.map(fromEvent), a.map(fromEvent), 'event and bodies byte for byte');
  for (const l of b) t.equal(serializeRecord(parseRecord(l)), l, 'each line is its record serialised');
  t.same(b.map((l) => openRecord(parseRecord(l))), EVENTS, 'and opens to the event');
  t.same(JSON.parse(b[0]).bodies['data.alert'], JSON.stringify(EVENTS[0].data!.alert), 'the body is the text sent beside the event');
  const v = await verifyAuditDir(join(root, 'sealed'));
  t.ok(v.ok, `fenliu audit verify passes: ${JSON.stringify(v).slice(0, 300)}`);
});

t.test('both forms in one stream (a rolling upgrade) chain as one log', async (t) => {
  const mixed = EVENTS.map((ev, i) => (i % 2 ? whole(ev) : sealed(ev)));
  const lines = (await archive('mixed', mixed)).split('\n').filter(Boolean);
  t.same(lines.map((l) => openRecord(parseRecord(l))), EVENTS);
  t.ok((await verifyAuditDir(join(root, 'mixed'))).ok, 'verifies');
});

t.test('readers see a sealed entry whole; what is not an event is archived as audit.malformed', async (t) => {
  for (const ev of EVENTS) t.same(decodeStreamEntry('1-0', sealed(ev)), ev);
  const bad = [
    [AUDIT_SEALED_FIELD, '{not json', 'b:data.body', '"x"'],
    [AUDIT_SEALED_FIELD, '{"type":"x","at":"2026-11-30T00:00:00.000Z","data":{"body":{"$body":"h"}}}', 'b:data.body', '{broken'],
    [AUDIT_SEALED_FIELD, '{"type":"x","at":"2026-11-30T00:00:00.000Z"}', 'other', 'field'],
    [AUDIT_SEALED_FIELD, '[1]'],
  ];
  for (const fields of bad) t.equal(decodeStreamEntry('1700000000000-0', fields).type, 'audit.malformed', JSON.stringify(fields));
  const lines = (await archive('bad', bad.slice(0, 1).concat(bad.slice(2)))).split('\n').filter(Boolean).map(parseRecord);
  t.same(
    lines.map((r) => r.event.type),
    ['audit.malformed', 'audit.malformed', 'audit.malformed'],
    'kept, as malformed',
  );
  t.same(openRecord(lines[0]).data, { fields: bad[0] }, 'with the fields as they came');
});

t.test('a producer slip is never archived as an altered record: a wrong placeholder is sealed again, a body without one kept as malformed', async (t) => {
  const ev = EVENTS[1];
  const [, json, ...bodyFields] = sealed(ev);
  const wrongHash = json.replace(/"\$body":"[0-9a-f]{64}"/, `"$body":"${'0'.repeat(64)}"`);
  t.not(wrongHash, json);
  const noPlace = [AUDIT_SEALED_FIELD, json, ...bodyFields, 'b:data.elsewhere', '"x"'];
  // data.body's placeholder without its body field; then every body field given twice
  const noBody = [AUDIT_SEALED_FIELD, json, ...bodyFields.slice(2)];
  t.equal(bodyFields[0], 'b:data.body');
  const twice = [AUDIT_SEALED_FIELD, json, ...bodyFields, ...bodyFields];
  const lines = (await archive('slip', [[AUDIT_SEALED_FIELD, wrongHash, ...bodyFields], noPlace, noBody, twice])).split('\n').filter(Boolean).map(parseRecord);
  t.same(openRecord(lines[0]), ev, 'the wrong placeholder: the event with its body, sealed by the archiver');
  t.equal(lines[1].event.type, 'audit.malformed', 'a body with no place: malformed');
  t.same(openRecord(lines[1]).data, { fields: noPlace }, 'with every field as it came');
  t.same((openRecord(lines[2]).data as Record<string, unknown>).body, JSON.parse(json).data.body, 'a placeholder without its body: kept as the entry gave it, sealed by the archiver');
  t.same(openRecord(lines[3]), ev, 'a body given twice: once');
  t.ok((await verifyAuditDir(join(root, 'slip'))).ok, 'and the log verifies');
});

t.test('with body encryption on, the archiver seals a sealed entry itself (the key depends on the record)', async (t) => {
  const ring: AuditKeyring = { current: 'k1', keys: new Map([['k1', randomBytes(32)]]) };
  const lines = (await archive('enc', EVENTS.map(sealed), { keyring: ring })).split('\n').filter(Boolean).map(parseRecord);
  const body = lines[1].bodies['data.body'];
  t.ok(typeof body === 'string' && !body.includes('y/z') && JSON.parse(body).enc, 'the body is stored encrypted');
  t.same(lines.map((r) => openRecord(r, ring)), EVENTS, 'and opens to the event with the key');
});

t.test('producers write sealed entries only where no reader of an earlier version can meet them', async (t) => {
  // An earlier version's archiver reads only `e`, and on Cluster its relay copies only `e`.
  const prefix = 'gate';
  setStandalone(prefix, true);
  t.teardown(() => setStandalone(prefix, false));
  const k = keys(prefix);
  const attempt = async (id: string) => {
    await redis.hset(k.delivery(id), { id, alertId: 'alt_1', platformId: 'p', state: 'sending', attempts: '0' });
    await recordAttempt(redis, k, prefix, {
      deliveryId: id,
      to: 'delivered',
      from: ['sending'],
      at: '2026-01-01T00:00:01.000Z',
      history: '{}',
      event: { type: 'delivery.attempt', at: '2026-01-01T00:00:00.000Z', deliveryId: id, data: { n: 1, body: '{"a":1}' } },
      change: { from: 'sending', to: 'delivered' },
    });
    const entries = await redis.xrange(auditStreamKey(prefix), '-', '+');
    const [eid, fields] = entries[entries.length - 1];
    t.same(decodeStreamEntry(eid, fields), { type: 'delivery.attempt', at: '2026-01-01T00:00:00.000Z', deliveryId: id, data: { n: 1, body: '{"a":1}', from: 'sending', to: 'delivered' } }, `${id}: the event complete either way`);
    return fields[0];
  };
  t.equal(await readStreamFormat(redis, prefix), false, 'no archiver holds the lock');
  t.equal(await attempt('dlv_a.p'), AUDIT_FIELD, 'whole');
  await redis.set(auditLockKey(prefix), '3f2a9c0d');
  t.equal(await readStreamFormat(redis, prefix), false, 'an archiver of an earlier version holds it');
  t.equal(await attempt('dlv_b.p'), AUDIT_FIELD, 'whole');
  await redis.del(auditLockKey(prefix)); // that archiver has stopped
  const dir = join(root, prefix);
  const archiver = new AuditArchiver({ redis, prefix, dir });
  await archiver.start();
  await until(() => readStreamFormat(redis, prefix), 10_000, 'this version\'s archiver holds the lock');
  t.equal(await attempt('dlv_c.p'), AUDIT_SEALED_FIELD, 'sealed');
  await archiver.stop();
  t.equal(await readStreamFormat(redis, prefix), false, 'released: whole again');
  await new AuditArchiver({ redis, prefix, dir }).flushOnce();
  const lines = (await readFile(join(dir, (await listSegments(dir))[0]), 'utf8')).split('\n').filter(Boolean).map(parseRecord);
  t.same(lines.map((r) => r.event.deliveryId), ['dlv_a.p', 'dlv_b.p', 'dlv_c.p'], 'both forms archived, in order');
  t.ok((await verifyAuditDir(dir)).ok, 'into one verifiable log');

  // Redis Cluster: scripts write bucket streams, which a relay of any version may move.
  const cluster = 'gate-cluster';
  await redis.set(auditLockKey(cluster), 's1.0123');
  t.equal(await readStreamFormat(redis, cluster), false, 'never sealed on Cluster');
  t.equal(sealedStream(redis, cluster), false);
});
