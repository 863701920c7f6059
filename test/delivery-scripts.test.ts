/**
 * The engine's scripts against real Redis: the claim (read + circuit check + queued → sending
 * in one step, one delivery or a take's batch), the record of an attempt (attempt log, state change, its one audit event, SLA
 * timer and board), and a transition carrying extra writes, which land with the state change
 * or, for the conditional ones, only with the outcome they belong to.
 */
import { relayAllAudit } from '../src/store/audit-relay.js';
import { auditStreamKey } from '../src/audit/events.js';
import t from 'tap';
import { Redis } from 'ioredis';
import { claim, claimMany } from '../src/delivery/claim.js';
import { transition } from '../src/lifecycle/transition.js';
import { bucketOf, keys, setStandalone } from '../src/store/keys.js';
import { recordAttempt } from '../src/delivery/record.js';
import { useRedis } from './helpers/redis.js';
import { decodeStreamEntry } from '../src/audit/format.js';

t.test('claim: queued → sending with the alert, or an early answer that changes nothing', async (t) => {
  const redis = await useRedis(t);
  const r = new Redis(redis.url);
  t.teardown(() => r.disconnect());
  const k = keys('cl');
  const rec = { id: 'alt_1', alert: { summary: 's' } };
  await r.set(k.alert('alt_1'), JSON.stringify(rec));
  await r.hset(k.delivery('d1'), { id: 'd1', alertId: 'alt_1', platformId: 'p', state: 'queued', attempts: '0' });
  const c = await claim(r, k, 'cl', { deliveryId: 'd1', deliver: true, alertId: 'alt_1', circuitKey: 'cl:circuit:p' });
  t.equal(c.status, 'ok');
  if (c.status === 'ok') {
    t.equal(c.from, 'queued');
    t.same(c.rec, rec);
    t.equal(c.hash.state, 'queued', 'the hash as it was before the claim');
  }
  t.equal(await r.hget(k.delivery('d1'), 'state'), 'sending');
  t.match(JSON.parse((await r.lrange(k.history('d1'), 0, -1))[0]), { from: 'queued', to: 'sending', source: 'engine' });

  // A re-run after a crash: still sending, claimed again, no second history entry.
  const again = await claim(r, k, 'cl', { deliveryId: 'd1', deliver: true, alertId: 'alt_1', circuitKey: 'cl:circuit:p' });
  t.equal(again.status, 'ok');
  t.equal(await r.llen(k.history('d1')), 1);

  await r.hset(k.delivery('d2'), { id: 'd2', alertId: 'alt_1', platformId: 'p', state: 'queued', attempts: '0' });
  await r.hset('cl:circuit:p', 'failures', '5', 'openedAt', String(Date.now()));
  t.equal((await claim(r, k, 'cl', { deliveryId: 'd2', deliver: true, alertId: 'alt_1', circuitKey: 'cl:circuit:p' })).status, 'circuit');
  t.equal(await r.hget(k.delivery('d2'), 'state'), 'queued', 'an open circuit changes nothing');
  t.equal((await claim(r, k, 'cl', { deliveryId: 'd2', deliver: true, alertId: 'alt_x' })).status, 'other-alert');
  await r.del(k.alert('alt_1'));
  t.equal((await claim(r, k, 'cl', { deliveryId: 'd2', deliver: true, alertId: 'alt_1' })).status, 'no-alert');
  t.equal((await claim(r, k, 'cl', { deliveryId: 'd2', deliver: false, alertId: 'alt_1' })).status, 'skip', 'follow-ups only read');
  t.equal((await claim(r, k, 'cl', { deliveryId: 'nope', deliver: true, alertId: 'alt_1' })).status, 'missing');
  t.equal(await r.hget(k.delivery('d2'), 'state'), 'queued');
  t.equal(await r.llen(k.history('d2')), 0);

  // A take's batch in one call: each delivery answered on its own, the circuit read once.
  await r.del('cl:circuit:p');
  await r.set(k.alert('alt_1'), JSON.stringify(rec));
  await r.hset(k.delivery('e1'), { id: 'e1', alertId: 'alt_1', platformId: 'p', state: 'queued', attempts: '0' });
  const many = await claimMany(r, k, 'cl', [
    { deliveryId: 'e1', deliver: true, alertId: 'alt_1' },
    { deliveryId: 'nope', deliver: true, alertId: 'alt_1' },
    { deliveryId: 'd1', deliver: false, alertId: 'alt_1' },
  ], 'cl:circuit:p');
  t.same(many.map((c) => c.status), ['ok', 'missing', 'skip']);
  t.equal(await r.hget(k.delivery('e1'), 'state'), 'sending', 'the first one claimed');
});

t.test('transition extras: before and after always, ifApplied or ifRefused by outcome, read gives the hash', async (t) => {
  const redis = await useRedis(t);
  const r = new Redis(redis.url);
  t.teardown(() => r.disconnect());
  const k = keys('tx');
  await r.hset(k.delivery('d1'), { id: 'd1', alertId: 'a', platformId: 'p', state: 'sending', lastError: 'x' });
  const extras = (tag: string) => ({
    before: [{ cmd: 'RPUSH', key: k.attempts('d1'), args: [`attempt ${tag}`] }],
    ifApplied: [{ cmd: 'ZADD', key: 'tx:applied', args: [1, tag] }],
    ifRefused: [{ cmd: 'ZADD', key: 'tx:refused', args: [1, tag] }],
    after: [{ cmd: 'HSET', key: 'tx:ticket', args: [tag, 'd1'] }],
    read: true as const,
  });
  const ok = await transition(r, k, 'tx', { deliveryId: 'd1', to: 'delivered', source: 'engine', from: ['sending'], unset: ['lastError'], audit: { alertId: 'a', platformId: 'p' } }, extras('one'));
  t.equal(ok.ok, true);
  t.equal(ok.hash.state, 'delivered');
  t.notOk('lastError' in ok.hash);
  const no = await transition(r, k, 'tx', { deliveryId: 'd1', to: 'delivered', source: 'engine', from: ['sending'] }, extras('two'));
  t.same({ ok: no.ok, current: no.ok ? undefined : no.current }, { ok: false, current: 'delivered' });
  t.same(await r.lrange(k.attempts('d1'), 0, -1), ['attempt one', 'attempt two']);
  t.same(await r.zrange('tx:applied', '0', '-1'), ['one']);
  t.same(await r.zrange('tx:refused', '0', '-1'), ['two']);
  t.same(await r.hgetall('tx:ticket'), { one: 'd1', two: 'd1' });
  t.equal(await r.llen(k.history('d1')), 1, 'a refused transition appends no history');
  await relayAllAudit(r, 'tx');
  t.equal(await r.xlen(auditStreamKey('tx')), 1);
  t.same(await transition(r, k, 'tx', { deliveryId: 'd1', to: 'accepted', source: 'test' }), { ok: true, from: 'delivered' }, 'no hash unless asked');
});

t.test('claim holds back on an open circuit, read beside the script (Cluster) or in it (standalone)', async (t) => {
  const redis = await useRedis(t);
  const r = new Redis(redis.url);
  t.teardown(() => r.disconnect());
  for (const standalone of [false, true]) {
    const prefix = standalone ? 'cs' : 'cc';
    setStandalone(prefix, standalone);
    t.teardown(() => setStandalone(prefix, false));
    const k = keys(prefix);
    const circuitKey = `${prefix}:circuit:p`;
    await r.set(k.alert('alt_1'), JSON.stringify({ id: 'alt_1', alert: {} }));
    const fresh = async (id: string) => {
      await r.hset(k.delivery(id), { id, alertId: 'alt_1', platformId: 'p', state: 'queued', attempts: '0' });
      return claim(r, k, prefix, { deliveryId: id, deliver: true, alertId: 'alt_1', circuitKey });
    };
    const clean = await fresh('dlv_1.a');
    t.match(clean, { status: 'ok' }, `${prefix}: a closed circuit with nothing counted`);
    await r.hset(circuitKey, 'failures', '2');
    t.match(await fresh('dlv_1.b'), { status: 'ok' }, `${prefix}: failures counted, still closed`);
    await r.hset(circuitKey, 'openedAt', String(Date.now()));
    t.match(await fresh('dlv_1.c'), { status: 'circuit' }, `${prefix}: open`);
    t.equal(await r.hget(k.delivery('dlv_1.c'), 'state'), 'queued');
    const admitted = await claim(r, k, prefix, { deliveryId: 'dlv_1.c', deliver: true, alertId: 'alt_1' });
    t.match(admitted, { status: 'ok' }, `${prefix}: with an admission the circuit is not read`);
  }
});

t.test('record: the attempt, its state change and its one event in one script; refused changes keep the attempt', async (t) => {
  const redis = await useRedis(t);
  const r = new Redis(redis.url);
  t.teardown(() => r.disconnect());
  const prefix = 'rec';
  const k = keys(prefix);
  const b = bucketOf('dlv_1.p');
  // Not standalone: the script writes the bucket's stream, relayed to the one stream.
  const stream = auditStreamKey(prefix);
  const events = async () => (await relayAllAudit(r, prefix), await r.xrange(stream, '-', '+')).map(([id, f]) => decodeStreamEntry(id, f) as unknown as { type: string; reason?: string; data: Record<string, unknown> });
  const base = (to: 'delivered' | 'queued' | 'failed', extra: Partial<Parameters<typeof recordAttempt>[3]> = {}) => ({
    deliveryId: 'dlv_1.p',
    to,
    from: ['sending' as const],
    at: '2026-01-01T00:00:01.000Z',
    history: JSON.stringify({ at: '2026-01-01T00:00:01.000Z', to, source: 'engine', from: 'sending' }),
    event: { type: 'delivery.attempt', at: '2026-01-01T00:00:00.000Z', alertId: 'alt_1', deliveryId: 'dlv_1.p', platformId: 'p', data: { n: 1, outcome: 'delivered', body: '{"a":1}' } },
    change: { from: 'sending', to, source: 'engine' },
    set: { attempts: 1 },
    before: [{ cmd: 'RPUSH', key: k.attempts('dlv_1.p'), args: ['{"n":1}'] }],
    ...extra,
  });
  const ack = Date.parse('2026-01-01T01:00:00Z');
  const intervene = Date.parse('2026-01-01T12:00:00Z');
  await r.hset(k.delivery('dlv_1.p'), { id: 'dlv_1.p', alertId: 'alt_1', platformId: 'p', state: 'sending', attempts: '0', lastError: 'old', overdue: '["ack"]' });
  await r.zadd(k.overdue(b), 1, 'dlv_1.p');
  await r.zadd(k.slaDue(b), ack, 'dlv_1.p');
  const sla = [
    { kind: 'ack', dueAt: ack, settled: true },
    { kind: 'intervene', dueAt: intervene, settled: false },
  ];
  const ok = await recordAttempt(r, k, prefix, base('delivered', { unset: ['lastError'], sla, ifApplied: [{ cmd: 'ZADD', key: k.open(b, 'p'), args: [1, 'dlv_1.p'] }] }));
  t.same(ok, { ok: true, from: 'sending' });
  t.match(await r.hgetall(k.delivery('dlv_1.p')), { state: 'delivered', attempts: '1', updatedAt: '2026-01-01T00:00:01.000Z' });
  t.equal(await r.hget(k.delivery('dlv_1.p'), 'lastError'), null, 'unset');
  t.equal(await r.llen(k.attempts('dlv_1.p')), 1);
  t.match(JSON.parse((await r.lrange(k.history('dlv_1.p'), 0, -1))[0]), { from: 'sending', to: 'delivered' });
  t.equal(Number(await r.zscore(k.slaDue(b), 'dlv_1.p')), intervene, 'the timer moves to the next open deadline');
  t.equal(await r.zscore(k.overdue(b), 'dlv_1.p'), null, 'every flag settled: off the board');
  t.equal(await r.zscore(k.open(b, 'p'), 'dlv_1.p'), '1', 'ifApplied ran');
  let evs = await events();
  t.equal(evs.length, 1, 'one event');
  t.same(evs[0].data, { n: 1, outcome: 'delivered', body: '{"a":1}', from: 'sending', to: 'delivered', source: 'engine' }, 'the attempt with its state change');

  // A flag still open keeps the board entry; a flagged deadline is not timed again.
  await r.hset(k.delivery('dlv_1.p'), 'state', 'sending', 'overdue', '["intervene"]');
  await r.zadd(k.overdue(b), 1, 'dlv_1.p');
  await recordAttempt(r, k, prefix, base('delivered', { sla }));
  t.equal(await r.zscore(k.slaDue(b), 'dlv_1.p'), null, 'no open deadline left unflagged: no timer');
  t.equal(await r.zscore(k.overdue(b), 'dlv_1.p'), '1', 'an open flag stays on the board');

  // Refused (cancelled meanwhile): the attempt and its event stay, without a state change.
  await r.hset(k.delivery('dlv_1.p'), 'state', 'cancelled');
  await r.del(stream);
  const refused = await recordAttempt(r, k, prefix, base('queued', { ifRefused: [{ cmd: 'HSET', key: k.delivery('dlv_1.p'), args: ['attempts', '2'] }], event: { type: 'delivery.attempt', at: '2026-01-01T00:00:00.000Z', deliveryId: 'dlv_1.p', data: {} } }));
  t.same(refused, { ok: false, reason: 'illegal', current: 'cancelled' });
  t.equal(await r.hget(k.delivery('dlv_1.p'), 'state'), 'cancelled');
  t.equal(await r.hget(k.delivery('dlv_1.p'), 'attempts'), '2', 'ifRefused ran');
  t.equal(await r.llen(k.attempts('dlv_1.p')), 3, 'the attempt log stands');
  evs = await events();
  t.same(evs.map((e) => e.data), [{}], 'the event without a change (empty data stays valid JSON)');
  t.same(await recordAttempt(r, k, prefix, base('queued', { deliveryId: 'dlv_2.p' })), { ok: false, reason: 'missing', current: undefined });
});
