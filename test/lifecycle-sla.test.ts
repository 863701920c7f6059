/**
 * Polling (Open311, realtime and batch tokens) and SLA timers: expiry with short deadlines,
 * escalation to a supervisor, overdue feedback to 110, a met deadline not flagged, and timers
 * that survive a fenliu restart.
 */
import t from 'tap';
import { FEEDBACK_ID, startLifecycleEnv, until } from './helpers/lifecycle.js';
import { bucketOf } from '../src/store/keys.js';

t.test('polling Open311 (realtime and batch tokens)', async (t) => {
  // This server reports signing for (签收) as the extended status `acknowledged`.
  const options = { apiKey: 'sandbox-key', defaultServiceCode: 'GENERAL', statusMap: { acknowledged: 'accepted' } };
  const env = await startLifecycleEnv(t, {
    platforms: [
      { id: 'o-rt', kind: 'open311', poll: { everyMs: 100 }, options },
      { id: 'o-batch', kind: 'open311', open311Mode: 'batch', poll: { everyMs: 100 }, options },
      { id: 'w-hook', kind: 'webhook' },
    ],
    sla: {},
  });
  const { deliveries } = await env.submit();
  const rt = await env.waitFor(deliveries['o-rt'], 'delivered');
  // Only a platform that polls keeps a poll index: nothing would ever read a webhook platform's.
  const hook = await env.waitFor(deliveries['w-hook'], 'delivered');
  t.ok(await env.r.zscore(env.k.open(bucketOf(rt.id), 'o-rt'), rt.id), 'a polling platform\'s delivered delivery is in its poll index');
  t.equal(await env.r.zscore(env.k.open(bucketOf(hook.id), 'w-hook'), hook.id), null, 'a webhook platform\'s is not');
  t.ok(rt.remoteTicketId, 'realtime: ticket id at once');
  const batch = await env.waitFor(deliveries['o-batch'], 'delivered');
  t.ok(batch.pendingToken, 'batch: a token first');
  // The batch token resolves to a service_request_id through polling.
  const b1 = await until(async () => {
    const d = await env.delivery(deliveries['o-batch']);
    return d.remoteTicketId ? d : undefined;
  }, 8_000, 'token resolved');
  t.equal(b1.remoteTicketId, [...env.sandbox.get('o-batch').tickets.keys()][0], 'token resolved into a ticket id');
  // Open311 `open` is received (受理), not signed for: polls that read it leave the delivery delivered.
  await until(() => env.sandbox.get('o-rt').received.filter((r) => r.method === 'GET' && r.path.startsWith('/requests.')).length >= 2, 8_000, 'two polls');
  t.equal((await env.delivery(rt.id)).state, 'delivered', 'open is not 签收');
  t.notOk((await env.delivery(rt.id)).acceptedAt, 'no sign-for time from an open request');
  env.sandbox.get('o-rt').setTicketStatus(rt.remoteTicketId, 'acknowledged', 'Assigned');
  env.sandbox.get('o-batch').setTicketStatus(b1.remoteTicketId, 'acknowledged', 'Assigned');
  const a1 = await env.waitFor(deliveries['o-rt'], 'accepted');
  const a2 = await env.waitFor(deliveries['o-batch'], 'accepted');
  t.match((await env.history(a1.id)).at(-1), { to: 'accepted', source: 'poll' });
  env.sandbox.get('o-rt').setTicketStatus(a1.remoteTicketId, 'closed', 'Lock opened');
  env.sandbox.get('o-batch').setTicketStatus(a2.remoteTicketId, 'closed', 'Done');
  const r1 = await env.waitFor(a1.id, 'resolved');
  t.equal(r1.result, 'Lock opened');
  await env.waitFor(a2.id, 'resolved');
  const polls = env.sandbox.get('o-rt').received.filter((r) => r.method === 'GET' && r.path.startsWith('/requests.'));
  t.ok(polls.length >= 2);
  t.match(polls[0].path, `/requests.xml?service_request_id=${a1.remoteTicketId}`, 'XML, the spec\'s required format, by default');
  t.ok(env.sandbox.get('o-batch').received.some((r) => r.path.startsWith('/tokens/')), 'token endpoint asked');
  // Resolved deliveries are still polled (closed may follow); final ones are not.
  t.ok(await env.r.zscore(env.k.open(bucketOf(a1.id), 'o-rt'), a1.id));
});

t.test('SLA expiry: overdue flag, history note, escalation, feedback; a met deadline is not flagged', async (t) => {
  const env = await startLifecycleEnv(t, {
    platforms: [
      { id: 'p-slow', kind: 'hotline-12345' },
      { id: 'p-fast', kind: 'city-ops' },
      { id: 'p-super', kind: 'webhook' },
    ],
    routes: [{ id: 'default', default: true, targets: ['p-slow', 'p-fast'], sla: { interveneBy: '700ms', escalateTo: 'p-super' } }],
    sla: { ackBy: '30m' },
    feedback: true,
  });
  const { alertId, sourceAlertId, deliveries } = await env.submit();
  const slow = deliveries['p-slow'];
  const fast = deliveries['p-fast'];
  const fd = await env.waitFor(fast, 'delivered');
  t.ok(fd.interveneBy && fd.ackBy);
  // p-fast signs for in time (admin key: a trusted operator may post events for any platform).
  const res = await env.callback('p-fast', { eventId: 'F-1', caseId: fd.remoteTicketId, status: 'acknowledged', at: new Date().toISOString() }, { key: 'test-admin-key' });
  t.equal(res.status, 200);
  await env.waitFor(slow, 'delivered');
  const d = await until(async () => {
    const x = await env.delivery(slow);
    return x.overdue?.includes('intervene') ? x : undefined;
  }, 5_000, 'intervene overdue');
  t.ok(Date.now() >= Date.parse(d.interveneBy), 'not before the deadline');
  t.same(d.overdue, ['intervene']);
  t.equal(d.state, 'delivered', 'the flag sits beside the state');
  t.match((await env.history(slow)).find((h) => h.source === 'timer'), { note: /overdue: intervene deadline/ });
  t.ok(await env.r.zscore(env.k.overdue(bucketOf(slow)), slow), 'on the SLA board');
  // Escalation: a delivery to the supervisor platform.
  const sup = await env.sandbox.get('p-super').waitFor(1, 5_000);
  t.equal(sup.length, 1);
  // Feedback to 110: type overdue.
  const fb = await until(() => env.sandbox.get(FEEDBACK_ID).received.find((r) => (r.parsed as any)?.type === 'overdue'), 5_000, 'overdue feedback');
  t.match(fb.parsed, { type: 'overdue', sla: 'intervene', platformId: 'p-slow', alertId: sourceAlertId, caseId: alertId, dueAt: d.interveneBy });
  // p-fast's signed-for state also went to 110; it is not overdue.
  t.ok(env.sandbox.get(FEEDBACK_ID).received.some((r) => (r.parsed as any)?.state === 'accepted' && (r.parsed as any)?.platformId === 'p-fast'));
  const f = await env.delivery(fast);
  t.equal(f.overdue, undefined, 'met in time: not flagged');
  const view = await env.source().get(`/v1/alerts/${alertId}`);
  t.match(view.body.notices, [{ kind: 'feedback' }]);
  t.ok(view.body.notices.some((n: any) => n.kind === 'escalation' && n.platformId === 'p-super'));
  const board = await env.auditor().get('/v1/sla');
  t.equal(board.status, 200);
  t.match(board.body.items, [{ deliveryId: slow, kind: 'intervene', overdue: true }]);
  t.notOk(board.body.items.some((i: any) => i.deliveryId === fast && i.kind === 'intervene'));
  // Signing for late clears the board but keeps the flag.
  const late = await env.callback('p-slow', { eventId: 'S-1', 工单编号: d.remoteTicketId, 工单状态: '签收' }, { key: 'test-admin-key' });
  t.equal(late.status, 200);
  t.equal(await env.r.zscore(env.k.overdue(bucketOf(slow)), slow), null);
  t.same((await env.delivery(slow)).overdue, ['intervene']);
  const stats = await env.auditor().get('/v1/stats');
  t.equal(stats.body.interventionCompliance, 0.5);
});

t.test('SLA timers survive a fenliu restart', async (t) => {
  const env = await startLifecycleEnv(t, {
    platforms: [{ id: 'p-slow', kind: 'hotline-12345' }],
    sla: { interveneBy: '2500ms' },
  });
  const { deliveries } = await env.submit();
  const id = deliveries['p-slow'];
  await env.waitFor(id, 'delivered');
  await env.stopFenliu();
  const d = await env.delivery(id);
  t.equal(d.overdue, undefined, 'not fired while the first instance ran');
  t.ok(Date.now() < Date.parse(d.interveneBy), 'stopped before the deadline');
  await env.startFenliu();
  const x = await until(async () => {
    const v = await env.delivery(id);
    return v.overdue ? v : undefined;
  }, 8_000, 'timer fired in the new instance');
  t.same(x.overdue, ['intervene']);
});

t.test('SLA sweep: a timer leased by a worker that died fires when the lease runs out, and fires once', async (t) => {
  const env = await startLifecycleEnv(t, {
    platforms: [{ id: 'p-slow', kind: 'hotline-12345' }],
    sla: { ackBy: '1h', interveneBy: '2h', resolveBy: '3d' },
  });
  const { deliveries } = await env.submit();
  const id = deliveries['p-slow'];
  await env.waitFor(id, 'delivered');
  const due = await env.r.zscore(env.k.slaDue(bucketOf(id)), id);
  t.equal(Number(due), Date.parse((await env.delivery(id)).interveneBy), 'armed at the next open deadline (ack was met on delivery)');
  // The deadline passes, but a sweeper leased the timer and died before checking it.
  const leaseEnds = Date.now() + 1_500;
  await env.r.hset(env.k.delivery(id), 'interveneBy', new Date(Date.now() - 1_000).toISOString());
  await env.r.zadd(env.k.slaDue(bucketOf(id)), leaseEnds, id);
  await new Promise((r) => setTimeout(r, 600)); // several sweeps (every 100 ms) run meanwhile
  t.equal((await env.delivery(id)).overdue, undefined, 'not fired while leased');
  const d = await until(async () => {
    const x = await env.delivery(id);
    return x.overdue ? x : undefined;
  }, 5_000, 'fired after the lease');
  t.ok(Date.now() >= leaseEnds, 'not before the lease ran out');
  t.same(d.overdue, ['intervene']);
  // The flag lands first; the check re-arms the timer after its escalation and feedback.
  await until(async () => Number(await env.r.zscore(env.k.slaDue(bucketOf(id)), id)) === Date.parse(d.resolveBy!) || undefined, 5_000, 're-armed');
  t.pass('re-armed at the next deadline');
  // Many sweeps later, still one firing.
  await new Promise((r) => setTimeout(r, 500));
  t.equal((await env.history(id)).filter((h) => h.source === 'timer').length, 1, 'flagged once');
  // A final state disarms the timer.
  await env.callback('p-slow', { eventId: 'R-1', 工单编号: d.remoteTicketId, 工单状态: '退回' }, { key: 'test-admin-key' });
  await env.waitFor(id, 'returned');
  t.equal(await env.r.zscore(env.k.slaDue(bucketOf(id)), id), null, 'disarmed when the case left this platform');
});

t.test('SLA: two checks of one delivery at once flag, escalate and notify once', async (t) => {
  const env = await startLifecycleEnv(t, {
    platforms: [
      { id: 'p-slow', kind: 'hotline-12345' },
      { id: 'p-super', kind: 'webhook' },
    ],
    routes: [{ id: 'default', default: true, targets: ['p-slow'], sla: { ackBy: '1h', interveneBy: '2h', resolveBy: '3d', escalateTo: 'p-super' } }],
  });
  const { deliveries } = await env.submit();
  const id = deliveries['p-slow'];
  await env.waitFor(id, 'delivered');
  await env.r.hset(env.k.delivery(id), 'interveneBy', new Date(Date.now() - 1_000).toISOString());
  const lc = env.f.rt.lifecycle;
  const [a, b, c] = await Promise.all([lc.checkSla(id), lc.checkSla(id), lc.checkSla(id)]);
  t.same([...a, ...b, ...c], ['intervene'], 'one of three concurrent checks flagged it');
  t.same((await env.delivery(id)).overdue, ['intervene']);
  t.equal((await env.history(id)).filter((h) => h.source === 'timer').length, 1, 'one history note');
  t.equal(await env.r.hget(env.k.stats(bucketOf(id)), 'overdue:intervene'), '1', 'counted once');
  await env.sandbox.get('p-super').waitFor(1, 5_000);
  await new Promise((r) => setTimeout(r, 300));
  t.equal(env.sandbox.get('p-super').received.length, 1, 'one escalation');
  // A timer whose delivery is gone is dropped, not re-leased for ever.
  await env.r.zadd(env.k.slaDue(bucketOf('dlv_gone.p-slow')), Date.now() - 1, 'dlv_gone.p-slow');
  t.same(await lc.checkSla('dlv_gone.p-slow'), []);
  t.equal(await env.r.zscore(env.k.slaDue(bucketOf('dlv_gone.p-slow')), 'dlv_gone.p-slow'), null);
});

t.test('a delivery created again after ingest (two re-routes to one platform at once) is not reset', async (t) => {
  const env = await startLifecycleEnv(t, { platforms: [{ id: 'p-a', kind: 'hotline-12345' }] });
  const { alertId, deliveries } = await env.submit();
  const id = deliveries['p-a'];
  const before = await env.waitFor(id, 'delivered');
  const lc = env.f.rt.lifecycle;
  const rec = JSON.parse((await env.r.get(env.k.alert(alertId)))!);
  const again = await Promise.all([lc.createDelivery(rec, 'p-a', 'primary', undefined, 're-route 1'), lc.createDelivery(rec, 'p-a', 'primary', undefined, 're-route 2')]);
  t.same(again, [id, id], 'the same derived id');
  await new Promise((r) => setTimeout(r, 500));
  const after = await env.delivery(id);
  t.equal(after.state, 'delivered', 'not reset to queued');
  t.equal(after.remoteTicketId, before.remoteTicketId);
  t.notOk((await env.history(id)).some((h) => h.source === 'reroute'), 'no second creation in its history');
  t.equal(env.sandbox.get('p-a').tickets.size, 1, 'the platform got the case once');
});
