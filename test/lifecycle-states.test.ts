/**
 * The transitions table, unit-level and against real Redis (the atomic transition script):
 * every allowed transition applies, every other pair is refused and leaves the state alone.
 */
import { relayAllAudit } from '../src/store/audit-relay.js';
import { auditStreamKey } from '../src/audit/events.js';
import t from 'tap';
import { Redis } from 'ioredis';
import { DELIVERY_STATES, TRANSITIONS, canTransition, deriveAlertState, type DeliveryState } from '../src/lifecycle/states.js';
import { transition } from '../src/lifecycle/transition.js';
import { deadlines, nextSla, parseDuration, slaSettled } from '../src/lifecycle/service.js';
import { keys } from '../src/store/keys.js';
import { useRedis } from './helpers/redis.js';

/** The table as docs/lifecycle.md states it; a change to states.ts must change both. */
const EXPECTED: Record<DeliveryState, DeliveryState[]> = {
  queued: ['sending', 'cancelled', 'failed'],
  sending: ['queued', 'delivered', 'failed', 'rejected', 'cancelled'],
  delivered: ['accepted', 'in_progress', 'resolved', 'returned', 'rejected', 'cancelled'],
  accepted: ['in_progress', 'resolved', 'returned', 'cancelled'],
  in_progress: ['resolved', 'returned', 'cancelled'],
  resolved: ['closed', 'reopened'],
  closed: ['reopened'],
  reopened: ['accepted', 'in_progress', 'resolved', 'returned', 'cancelled'],
  returned: [],
  rejected: [],
  failed: ['queued'],
  cancelled: [],
};

const allowed: [DeliveryState, DeliveryState][] = [];
const refused: [DeliveryState, DeliveryState][] = [];
for (const from of DELIVERY_STATES) for (const to of DELIVERY_STATES) (EXPECTED[from].includes(to) ? allowed : refused).push([from, to]);

t.test('canTransition matches the documented table for all 144 pairs', async (t) => {
  t.same(Object.keys(TRANSITIONS).sort(), [...DELIVERY_STATES].sort());
  for (const from of DELIVERY_STATES) t.same([...TRANSITIONS[from]].sort(), [...EXPECTED[from]].sort(), `from ${from}`);
  t.equal(allowed.length, 30);
  for (const [from, to] of allowed) t.ok(canTransition(from, to), `${from} → ${to} allowed`);
  for (const [from, to] of refused) t.notOk(canTransition(from, to), `${from} → ${to} refused`);
  // A few refusals that matter most, named.
  for (const [from, to] of [
    ['returned', 'accepted'],
    ['cancelled', 'resolved'],
    ['resolved', 'returned'],
    ['delivered', 'closed'],
    ['queued', 'delivered'],
    ['closed', 'accepted'],
    ['rejected', 'reopened'],
  ] as [DeliveryState, DeliveryState][]) {
    t.notOk(canTransition(from, to), `${from} → ${to}`);
  }
  t.notOk(canTransition('nonsense' as DeliveryState, 'queued'));
});

t.test('every pair through the atomic Redis transition: applied when allowed, refused and untouched otherwise', async (t) => {
  const redis = await useRedis(t);
  const r = new Redis(redis.url);
  t.teardown(() => r.disconnect());
  const k = keys('tr');
  let i = 0;
  for (const [from, to] of [...allowed.map((p) => [...p, true] as const), ...refused.map((p) => [...p, false] as const)]) {
    const id = `dlv_t${++i}`;
    await r.hset(k.delivery(id), { id, state: from, alertId: 'alt_x', platformId: 'p' });
    const res = await transition(r, k, 'tr', { deliveryId: id, to, source: 'test', note: 'n', audit: { alertId: 'alt_x', platformId: 'p' } });
    const state = await r.hget(k.delivery(id), 'state');
    const history = await r.lrange(k.history(id), 0, -1);
    if (EXPECTED[from].includes(to)) {
      t.same(res, { ok: true, from }, `${from} → ${to} applied`);
      t.equal(state, to);
      t.equal(history.length, 1);
      t.match(JSON.parse(history[0]), { from, to, source: 'test', note: 'n' });
    } else {
      t.same(res, { ok: false, reason: 'illegal', current: from }, `${from} → ${to} refused`);
      t.equal(state, from, 'state untouched');
      t.equal(history.length, 0, 'nothing appended by the script');
    }
  }
  await relayAllAudit(r, 'tr');
  const audit = await r.xlen(auditStreamKey('tr'));
  t.equal(audit, allowed.length, 'one audit event per applied transition');
  t.same(await transition(r, k, 'tr', { deliveryId: 'nope', to: 'queued', source: 'test' }), { ok: false, reason: 'missing', current: undefined });
});

t.test('setIfAbsent keeps the first value (first sign-for time)', async (t) => {
  const redis = await useRedis(t);
  const r = new Redis(redis.url);
  t.teardown(() => r.disconnect());
  const k = keys('nx');
  await r.hset(k.delivery('d1'), { id: 'd1', state: 'reopened', acceptedAt: '2026-01-01T00:00:00.000Z' });
  const res = await transition(r, k, 'nx', { deliveryId: 'd1', to: 'accepted', source: 'test', set: { handler: 'x' }, setIfAbsent: { acceptedAt: '2026-02-02T00:00:00.000Z', other: 'y' }, unset: ['gone'] });
  t.ok(res.ok);
  t.match(await r.hgetall(k.delivery('d1')), { state: 'accepted', handler: 'x', acceptedAt: '2026-01-01T00:00:00.000Z', other: 'y' });
});

t.test('deriveAlertState', async (t) => {
  const cases: [DeliveryState[], string][] = [
    [[], 'queued'],
    [['queued', 'queued'], 'queued'],
    [['queued', 'sending'], 'delivering'],
    [['delivered', 'queued'], 'delivering'],
    [['delivered', 'delivered'], 'delivered'],
    [['delivered', 'accepted'], 'in_progress'],
    [['reopened'], 'in_progress'],
    [['resolved', 'delivered'], 'in_progress'],
    [['resolved', 'closed'], 'resolved'],
    [['closed', 'closed'], 'closed'],
    [['closed', 'cancelled'], 'closed'],
    [['cancelled', 'cancelled'], 'cancelled'],
    [['returned', 'rejected'], 'returned'],
    [['returned', 'delivered'], 'delivered'],
    [['returned', 'cancelled'], 'cancelled'],
    [['failed', 'accepted'], 'failed'],
    [['failed', 'resolved'], 'failed'],
  ];
  for (const [states, want] of cases) t.equal(deriveAlertState(states), want, `${states.join(',') || '(none)'} → ${want}`);
});

t.test('durations, deadlines and which SLA is next', async (t) => {
  t.equal(parseDuration('200ms'), 200);
  t.equal(parseDuration('30m'), 1_800_000);
  t.equal(parseDuration('12h'), 43_200_000);
  t.equal(parseDuration('1.5s'), 1500);
  t.throws(() => parseDuration('12 hours'));
  const dl = deadlines({ ackBy: '1s', interveneBy: '2s', resolveBy: '3s' }, '2026-01-01T00:00:00.000Z');
  t.same(dl, { ackBy: '2026-01-01T00:00:01.000Z', interveneBy: '2026-01-01T00:00:02.000Z', resolveBy: '2026-01-01T00:00:03.000Z' });
  const d: any = { id: 'd', alertId: 'a', platformId: 'p', state: 'queued', createdAt: '', updatedAt: '', attempts: 0, priority: 'normal', ...dl };
  t.equal(nextSla(d)?.kind, 'ack');
  t.equal(nextSla({ ...d, state: 'delivered' })?.kind, 'intervene');
  t.equal(nextSla({ ...d, state: 'in_progress' })?.kind, 'resolve', 'in progress counts as intervened');
  t.equal(nextSla({ ...d, state: 'delivered', overdue: ['intervene'] })?.kind, 'resolve', 'a flagged deadline is not armed again');
  t.equal(nextSla({ ...d, state: 'resolved' }), undefined);
  t.equal(nextSla({ ...d, state: 'returned' }), undefined, 'final states settle everything');
  t.ok(slaSettled({ ...d, state: 'reopened', acceptedAt: 'x' }, 'intervene'));
});
