/**
 * Times a platform reports (callbacks, poll answers, Open311 updated_datetime) are checked before
 * they count: one before the delivery existed or beyond the callback tolerance in the future is
 * replaced by fenliu's receipt time, so deadlines and statistics are not flattered, and the
 * discrepancy is on the state change's audit event.
 */
import t from 'tap';
import { platformTime } from '../src/lifecycle/service.js';
import { startRedis } from './helpers/redis.js';
import { HOTLINE_WORD, hotlineEvent, startLifecycleEnv, until } from './helpers/lifecycle.js';

const SECRET = 'whsec_cGxhdGZvcm0tdGltZXMtY2FsbGJhY2stc2VjcmV0';
const redis = await startRedis();
t.teardown(() => redis.stop());

t.test('platformTime', async (t) => {
  const now = new Date('2026-11-29T10:00:00Z');
  const created = '2026-11-29T09:00:00Z';
  t.same(platformTime('2026-11-29T09:30:00+00:00', created, now, 300), { at: '2026-11-29T09:30:00.000Z' }, 'a plausible time is used');
  t.same(platformTime('2026-11-29T10:04:00Z', created, now, 300), { at: '2026-11-29T10:04:00.000Z' }, 'ahead within the tolerance (clock skew) is used');
  t.match(platformTime('2010-04-14T06:37:38-08:00', created, now, 300), { at: now.toISOString(), discrepancy: { reportedAt: '2010-04-14T06:37:38-08:00', usedAt: now.toISOString(), reason: 'before-delivery' } });
  t.match(platformTime('2026-11-29T10:06:00Z', created, now, 300), { at: now.toISOString(), discrepancy: { reason: 'in-future' } });
  t.match(platformTime('yesterday', created, now, 300), { at: now.toISOString(), discrepancy: { reason: 'unreadable' } });
  t.same(platformTime(undefined, created, now, 300), { at: now.toISOString() }, 'no time given: receipt time, nothing to record');
});

t.test('a platform answering with 2010 dates', async (t) => {
  const env = await startLifecycleEnv(t, {
    redis,
    platforms: [
      { id: 'p-hot', kind: 'hotline-12345', callback: { secret: SECRET, toleranceSeconds: 60 } },
      { id: 'o-old', kind: 'open311', poll: { everyMs: 100 }, options: { apiKey: 'k', defaultServiceCode: 'GENERAL', statusMap: { acknowledged: 'accepted' } } },
    ],
    // A deadline that has passed by the time the platform signs for.
    sla: { interveneBy: '800ms' },
  });
  const { alertId, deliveries } = await env.submit();
  const hot = await env.waitFor(deliveries['p-hot'], 'delivered');
  const old = await env.waitFor(deliveries['o-old'], 'delivered');
  await until(async () => (await env.delivery(hot.id)).overdue, 5_000, 'intervention deadline passed');

  // 12345 callback: 签收 "at" 2010-04-14 06:37:38 Beijing time.
  const before = Date.now();
  const res = await env.callback('p-hot', hotlineEvent(hot.remoteTicketId, HOTLINE_WORD.accepted, 'OLD-1', { 时间: '2010-04-14 06:37:38' }));
  const after = Date.now();
  t.equal(res.status, 200, JSON.stringify(res.body));
  const h = await env.delivery(hot.id);
  t.equal(h.state, 'accepted');
  t.ok(Date.parse(h.acceptedAt) >= before && Date.parse(h.acceptedAt) <= after, `acceptedAt is fenliu's receipt time (${h.acceptedAt})`);
  t.ok(Date.parse(h.acceptedAt) >= Date.parse(h.deliveredAt), 'never before deliveredAt');

  // Open311: the platform's clock says 2010 when the request is acknowledged.
  env.sandbox.get('o-old').setClock(() => new Date('2010-04-19T06:37:38-08:00'));
  const pollFrom = Date.now();
  env.sandbox.get('o-old').setTicketStatus(old.remoteTicketId, 'acknowledged', 'Assigned');
  const o = await env.waitFor(old.id, 'accepted');
  t.ok(Date.parse(o.acceptedAt) >= pollFrom && Date.parse(o.acceptedAt) <= Date.now(), `Open311 updated_datetime of 2010 not used (${o.acceptedAt})`);

  // A time in the future beyond the callback tolerance is not used either.
  const future = new Date(Date.now() + 3_600_000).toISOString();
  const r2 = await env.callback('p-hot', hotlineEvent(hot.remoteTicketId, HOTLINE_WORD.in_progress, 'FUT-1', { 时间: future }));
  t.equal(r2.status, 200);
  const h2 = await env.delivery(hot.id);
  t.ok(Date.parse(h2.updatedAt) <= Date.now(), 'in_progress at receipt time, not an hour ahead');

  // Statistics: both were signed for after their 800 ms deadline, whatever the platforms said.
  const stats = (await env.auditor().get('/v1/stats')).body;
  t.equal(stats.interventionCompliance, 0, 'a 2010 sign-for time does not count as meeting the deadline');

  // The discrepancy is on the state change's audit event.
  const audit = (await env.auditor().get(`/v1/audit?alertId=${alertId}&type=delivery.state`)).body.items.map((i: { event: any }) => i.event);
  const hotAccepted = audit.find((e: any) => e.deliveryId === hot.id && e.data.to === 'accepted');
  t.match(hotAccepted.data.timeDiscrepancy, { reportedAt: '2010-04-13T22:37:38.000Z', reason: 'before-delivery', usedAt: h.acceptedAt });
  t.equal(hotAccepted.at, h.acceptedAt, 'the event is dated at receipt');
  const oldAccepted = audit.find((e: any) => e.deliveryId === old.id && e.data.to === 'accepted');
  t.match(oldAccepted.data.timeDiscrepancy, { reportedAt: '2010-04-19T14:37:38.000Z', reason: 'before-delivery' });
  const fut = audit.find((e: any) => e.deliveryId === hot.id && e.data.to === 'in_progress');
  t.match(fut.data.timeDiscrepancy, { reportedAt: future, reason: 'in-future' });
  const delivered = audit.find((e: any) => e.deliveryId === hot.id && e.data.to === 'delivered');
  t.notOk(delivered?.data.timeDiscrepancy, 'nothing recorded where fenliu set the time itself');
});
