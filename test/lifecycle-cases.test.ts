/**
 * Whole cases: returned → re-routed (fallback, then default route, never twice, 110 told when
 * none is left); repeat calls linked with an urge; cancel; update; feedback to 110 with retries;
 * statistics against a scripted scenario.
 */
import t from 'tap';
import { FEEDBACK_ID, HOTLINE_WORD, KEYS, alert, api, hotlineEvent, startLifecycleEnv, until, type LcEnv } from './helpers/lifecycle.js';
import { SOURCE_B } from './helpers/fenliu.js';

const ADMIN = 'test-admin-key';
const hot = (env: LcEnv, platformId: string, ticket: string, state: string, eventId: string) => env.callback(platformId, hotlineEvent(ticket, HOTLINE_WORD[state], eventId), { key: ADMIN });

t.test('cases', async (t) => {
  const env = await startLifecycleEnv(t, {
    platforms: [
      { id: 'h-a', kind: 'hotline-12345' },
      { id: 'h-b', kind: 'hotline-12345' },
      { id: 'h-c', kind: 'hotline-12345' },
      { id: 'h-q', kind: 'hotline-12345', retry: { delaysMs: [60_000, 60_000], jitter: 'none' } },
    ],
    routes: [
      { id: 'disputes', match: { category: ['dispute.*'] }, targets: ['h-a'], fallback: ['h-b', 'h-a'] },
      { id: 'two', match: { category: ['utility.*'] }, targets: ['h-a', 'h-q'] },
      { id: 'default', default: true, targets: ['h-c'] },
    ],
    sla: {},
    feedback: { states: ['accepted', 'returned', 'resolved', 'overdue'] },
  });
  let n = 0;
  const eid = () => `C-${++n}`;
  const fb = () => env.sandbox.get(FEEDBACK_ID).received.map((r) => r.parsed as any);

  await t.test('returned → fallback → default route → nothing left: 110 told, no platform twice', async (t) => {
    const { alertId, sourceAlertId, deliveries } = await env.submit({ category: 'dispute.debt' });
    const a = await env.waitFor(deliveries['h-a'], 'delivered');
    t.equal((await hot(env, 'h-a', a.remoteTicketId, 'returned', eid())).status, 200);
    const bId = `dlv_${alertId.slice(4)}.h-b`;
    const b = await env.waitFor(bId, 'delivered');
    t.match((await env.history(bId))[0], { source: 'reroute', note: /h-a returned/ });
    const view = await env.source().get(`/v1/alerts/${alertId}`);
    t.equal(view.body.status, 'delivered');
    t.same(view.body.deliveries.map((d: any) => [d.platformId, d.state]), [['h-a', 'returned'], ['h-b', 'delivered']]);
    t.equal((await hot(env, 'h-b', b.remoteTicketId, 'returned', eid())).status, 200);
    // h-a is next in the fallback list but already had the case: the default route's h-c instead.
    const cId = `dlv_${alertId.slice(4)}.h-c`;
    const c = await env.waitFor(cId, 'delivered');
    t.equal((await hot(env, 'h-c', c.remoteTicketId, 'returned', eid())).status, 200);
    const told = await until(() => fb().find((x) => x.alertId === sourceAlertId && /no other platform is left/.test(x.note ?? '')), 5_000, 'nothing-left feedback');
    t.match(told, { type: 'state', state: 'returned', platformId: 'h-c', caseId: alertId });
    t.equal(env.sandbox.get('h-a').received.filter((r) => r.path === '/api/workorders').length, 1, 'h-a got the case once');
    const final = await env.source().get(`/v1/alerts/${alertId}`);
    t.equal(final.body.status, 'returned');
    t.equal(final.body.deliveries.length, 3);
  });

  await t.test('repeat call: 200 repeatOf, no new delivery, urge, counted; a resolved case opens a new one', async (t) => {
    const phone = '13800138000';
    const first = await env.submit({ caller: { name: '张三', phone } });
    const d = await env.waitFor(first.deliveries['h-c'], 'delivered');
    const before = env.sandbox.get('h-c').received.length;
    const res = await env.source().post('/v1/alerts', {
      source: { system: 'test-110-a', alertId: `REPEAT-${process.pid}` },
      reportedAt: '2026-11-29T10:00:00+08:00',
      category: 'consumer.refund',
      summary: '又打来了',
      location: { address: '别的地址 1号', regionCode: '420204' },
      caller: { phone: '+86 138-0013-8000' },
    });
    t.equal(res.status, 200);
    t.equal(res.body.repeatOf, first.alertId);
    t.same(res.body.deliveries, []);
    t.same(res.body.repeatMatch, { key: 'phone+family', on: 'consumer', crossSource: false }, 'the link says which key matched');
    const urge = await until(() => env.sandbox.get('h-c').received.slice(before).find((r) => r.path.endsWith('/urge')), 5_000, 'urge');
    t.equal(urge.path, `/api/workorders/${d.remoteTicketId}/urge`);
    // The platform has the urge before the engine has its answer: wait for the engine's record of
    // the outcome, not the platform's receipt (that gap was the flaky `got "repeat"` of issue 13).
    const history = await until(async () => {
      const h = await env.history(d.id);
      return h.some((x) => x.source === 'engine' && x.note === 'urge delivered') ? h : undefined;
    }, 5_000, 'urge recorded by the engine');
    t.match(history.at(-1), { source: 'engine', note: 'urge delivered' });
    const linked = history.findIndex((h) => h.source === 'repeat');
    t.ok(linked >= 0 && linked < history.length - 1, 'the link is recorded before the urge outcome');
    const view = await env.source().get(`/v1/alerts/${res.body.id}`);
    t.same(view.body.repeatMatch, { key: 'phone+family', on: 'consumer', crossSource: false });
    const ticket = env.sandbox.get('h-c').tickets.get(d.remoteTicketId)!;
    t.match(ticket.operations, [{ op: 'urge' }]);
    const stats = await env.auditor().get('/v1/stats');
    t.ok(stats.body.repeats >= 1);
    // Resolved: a further call is a new case.
    await hot(env, 'h-c', d.remoteTicketId, 'resolved', eid());
    const again = await env.source().post('/v1/alerts', {
      source: { system: 'test-110-a', alertId: `REPEAT2-${process.pid}` },
      reportedAt: '2026-11-29T11:00:00+08:00',
      category: 'consumer.refund',
      summary: '又坏了',
      location: { address: '别的地址 2号', regionCode: '420204' },
      caller: { phone },
    });
    t.equal(again.status, 202);
    t.notOk(again.body.repeatOf);
    t.equal(again.body.deliveries.length, 1);
  });

  await t.test('repeat keys never swallow a different problem; every link says why', async (t) => {
    const phone = '13700137000';
    const first = await env.submit({ caller: { phone } });
    await env.waitFor(first.deliveries['h-c'], 'delivered');
    const place = alert(first.sourceAlertId).location;
    const other = await env.source().post('/v1/alerts', alert(`RK-NOISE-${process.pid}`, { category: 'nuisance.noise', summary: '楼上噪声', location: { address: '团城山 9号', regionCode: '420204' }, caller: { phone } }));
    t.equal(other.status, 202, 'same phone, other category family: a new ticket');
    t.notOk(other.body.repeatOf);
    t.equal(other.body.deliveries.length, 1);
    const fromB = await api(env.url, KEYS.sourceB).post('/v1/alerts', alert(`RK-B-${process.pid}`, { location: place, caller: { phone } }, SOURCE_B));
    t.equal(fromB.status, 202, 'another source, same phone, place and category: a new ticket (crossSource is off)');
    t.notOk(fromB.body.repeatOf);
    t.equal(fromB.body.deliveries.length, 1);
    const family = await env.source().post('/v1/alerts', alert(`RK-FAM-${process.pid}`, { category: 'consumer.food-safety', summary: '同一商家', location: { address: '别处 3号', regionCode: '420204' }, caller: { phone: `+86 ${phone}` } }));
    t.equal(family.status, 200, 'same source, same phone, same family: linked');
    t.equal(family.body.repeatOf, first.alertId);
    t.same(family.body.repeatMatch, { key: 'phone+family', on: 'consumer', crossSource: false });
    const samePlace = await env.source().post('/v1/alerts', alert(`RK-PLACE-${process.pid}`, { location: place, summary: '还是那家店' }));
    t.equal(samePlace.status, 200, 'same source, same place and category, no phone: linked');
    t.same(samePlace.body.repeatMatch, { key: 'place+category', on: 'consumer.refund', crossSource: false });
    const events = await until(async () => {
      const a = await env.auditor().get(`/v1/alerts/${family.body.id}`);
      return a.status === 200 ? a.body : undefined;
    }, 5_000, 'linked alert readable');
    t.same(events.repeatMatch, { key: 'phone+family', on: 'consumer', crossSource: false }, 'the alert record keeps the reason');
  });

  await t.test('cancel: platforms holding the case get a cancel, queued ones just become cancelled', async (t) => {
    env.sandbox.get('h-q').setFault({ fault: '5xx', times: 1 });
    const { alertId, deliveries } = await env.submit({ category: 'utility.water-leak' });
    const a = await env.waitFor(deliveries['h-a'], 'delivered');
    await until(async () => Number((await env.delivery(deliveries['h-q'])).attempts) === 1 && (await env.delivery(deliveries['h-q'])).state === 'queued', 5_000, 'h-q back in the queue');
    const res = await env.source().post(`/v1/alerts/${alertId}/cancel`, { reason: '报警人已自行解决' });
    t.equal(res.status, 200);
    t.equal(res.body.status, 'cancelled');
    t.same(res.body.deliveries.map((d: any) => d.state), ['cancelled', 'cancelled']);
    const cancel = await until(() => env.sandbox.get('h-a').received.find((r) => r.path === `/api/workorders/${a.remoteTicketId}/cancel`), 5_000, 'cancel request');
    t.match(cancel.parsed, {});
    t.equal(env.sandbox.get('h-q').received.length, 1, 'the queued one got nothing more');
    t.equal((await env.source().post(`/v1/alerts/${alertId}/cancel`, {})).status, 400, 'reason required');
    t.equal((await env.source().post('/v1/alerts/alt_nope/cancel', { reason: 'x' })).status, 404);
  });

  await t.test('update: platforms holding the case get the supplement', async (t) => {
    const sourceAlertId = `UPD-${process.pid}`;
    const body = { source: { system: 'test-110-a', alertId: sourceAlertId }, reportedAt: '2026-11-29T09:12:00+08:00', category: 'consumer.refund', summary: '消费纠纷', location: { address: `更新路 ${sourceAlertId}`, regionCode: '420204' } };
    const created = await env.source().post('/v1/alerts', body);
    t.equal(created.status, 202);
    const d = await env.waitFor(created.body.deliveries[0].id, 'delivered');
    const same = await env.source().post(`/v1/alerts/${created.body.id}/update`, body);
    t.equal(same.status, 200, 'an identical version is a no-op');
    const res = await env.source().post(`/v1/alerts/${created.body.id}/update`, { ...body, description: '补充：商家同意部分退款' });
    t.equal(res.status, 200);
    const sup = await until(() => env.sandbox.get('h-c').received.find((r) => r.path === `/api/workorders/${d.remoteTicketId}/supplement`), 5_000, 'supplement');
    t.match(JSON.stringify(sup.parsed), /部分退款/);
    t.equal(env.sandbox.get('h-c').received.filter((r) => r.path.endsWith('/supplement')).length, 1);
    const wrong = await env.source().post(`/v1/alerts/${created.body.id}/update`, { ...body, source: { system: 'test-110-a', alertId: 'OTHER' } });
    t.equal(wrong.status, 422);
    // A new version in a police-only category is refused: nothing of it reaches the platforms.
    const police = await env.source().post(`/v1/alerts/${created.body.id}/update`, { ...body, category: 'violence.assault', description: '升级为殴打' });
    t.equal(police.status, 422, police.text);
    t.match(police.body, { code: 'FENLIU_ERR_POLICE_ONLY', errors: [{ pointer: '/category' }] });
    t.equal((await env.source().get(`/v1/alerts/${created.body.id}`)).body.alert.category, 'consumer.refund', 'the stored version is unchanged');
    // An operator (admin key) acting on a source's alert must say why.
    const bare = await env.admin().post(`/v1/alerts/${created.body.id}/update`, { ...body, description: '管理员补充' });
    t.equal(bare.status, 400, 'an admin update without a reason is refused');
    t.match(bare.body, { code: 'FENLIU_ERR_BAD_REQUEST', errors: [{ pointer: '/reason' }] });
    const blank = await env.admin().post(`/v1/alerts/${created.body.id}/update`, { reason: '  ', alert: { ...body, description: '管理员补充' } });
    t.equal(blank.status, 400, 'a blank reason is no reason');
    const withReason = await env.admin().post(`/v1/alerts/${created.body.id}/update`, { reason: '110 来电更正地址', alert: { ...body, description: '管理员补充' } });
    t.equal(withReason.status, 200, withReason.text);
    const audit = await until(async () => {
      const ev = await env.auditor().get(`/v1/audit?alertId=${created.body.id}`);
      return ev.status === 200 ? ev.body.items.map((i: any) => i.event).find((e: any) => e.type === 'alert.updated' && e.data?.reason) : undefined;
    }, 5_000, 'alert.updated with the reason');
    t.match(audit, { actor: { kind: 'operator' }, data: { reason: '110 来电更正地址', version: 3 } });
    const srcEnvelope = await env.source().post(`/v1/alerts/${created.body.id}/update`, { alert: { ...body, description: '来源补充' } });
    t.equal(srcEnvelope.status, 200, 'a source may use the envelope without a reason');
    t.equal((await env.admin().post(`/v1/alerts/${created.body.id}/cancel`, { reason: ' ' })).status, 400, 'cancel needs a real reason');
    // An operator's cancel of a source's alert: the reason and the operator reach the audit record.
    const cancelled = await env.admin().post(`/v1/alerts/${created.body.id}/cancel`, { reason: '110 核实为误报' });
    t.equal(cancelled.status, 200, cancelled.text);
    const cancelAudit = await until(async () => {
      const ev = await env.auditor().get(`/v1/audit?alertId=${created.body.id}&type=delivery.state`);
      return ev.status === 200 ? ev.body.items.map((i: any) => i.event).find((e: any) => e.data?.to === 'cancelled') : undefined;
    }, 5_000, 'delivery.state cancelled');
    t.match(cancelAudit, { actor: { kind: 'operator' }, reason: '110 核实为误报', data: { source: 'operator', note: '110 核实为误报' } });
  });

  await t.test('feedback to 110 is retried (receiver 5xx once, then ok)', async (t) => {
    const recv = env.sandbox.get(FEEDBACK_ID);
    const { sourceAlertId, deliveries } = await env.submit();
    const d = await env.waitFor(deliveries['h-c'], 'delivered');
    recv.setFault({ fault: '5xx', times: 1 });
    const before = recv.received.length;
    await hot(env, 'h-c', d.remoteTicketId, 'accepted', eid());
    const ok = await until(() => recv.received.slice(before).find((r) => r.fault === 'none' && (r.parsed as any)?.alertId === sourceAlertId), 5_000, 'feedback after the retry');
    const tries = recv.received.slice(before).filter((r) => (r.parsed as any)?.alertId === sourceAlertId);
    t.same(tries.map((r) => r.fault), ['5xx', 'none']);
    t.match(ok.parsed, { type: 'state', state: 'accepted', platformId: 'h-c', remoteTicketId: d.remoteTicketId });
    const notice = await until(async () => {
      const v = await env.source().get(`/v1/alerts/${d.alertId}`);
      return v.body.notices?.find((x: any) => x.state === 'delivered');
    }, 5_000, 'feedback delivery delivered');
    t.equal(Number(notice.attempts), 2);
    t.equal(notice.platformId, FEEDBACK_ID);
  });
});

t.test('stats against a scripted scenario', async (t) => {
  const env = await startLifecycleEnv(t, { platforms: [{ id: 'h', kind: 'hotline-12345' }], sla: { interveneBy: '1500ms' } });
  const say = (ticket: string, state: string, id: string) => hot(env, 'h', ticket, state, id);
  const cases = [];
  for (const i of [1, 2, 3, 4]) cases.push(await env.submit(i === 1 ? { caller: { phone: '13912345678' } } : {}));
  const ds = [];
  for (const c of cases) ds.push(await env.waitFor(c.deliveries.h, 'delivered'));
  const [A, B, C, D] = ds;
  await say(A.remoteTicketId, 'accepted', 'S1');
  await say(B.remoteTicketId, 'accepted', 'S2');
  await say(D.remoteTicketId, 'resolved', 'S3');
  const repeat = await env.source().post('/v1/alerts', { source: { system: 'test-110-a', alertId: `SR-${process.pid}` }, reportedAt: '2026-11-29T10:00:00+08:00', category: 'consumer.refund', summary: '再次报警', location: { address: '另一处', regionCode: '420204' }, caller: { phone: '13912345678' } });
  t.equal(repeat.status, 200);
  await say(A.remoteTicketId, 'resolved', 'S4');
  const police = await env.source().post('/v1/alerts', { source: { system: 'test-110-a', alertId: `SP-${process.pid}` }, reportedAt: '2026-11-29T10:00:00+08:00', category: 'violence.assault', summary: '打架', location: { address: '某处', regionCode: '420204' } });
  t.equal(police.status, 422);
  // C never signs for: wait for its deadline to be flagged.
  await until(async () => (await env.delivery(C.id)).overdue, 5_000, 'C overdue');
  const s = (await env.auditor().get('/v1/stats')).body;
  const recs = await Promise.all([A, B, D].map((x) => env.delivery(x.id)));
  const toAccept = recs.map((x) => Date.parse(x.acceptedAt) - Date.parse(x.createdAt)).sort((a, b) => a - b);
  t.match(s, {
    received: 6,
    diverted: 4,
    refusedPoliceOnly: 1,
    refusedNoRoute: 0,
    diversionRate: 0.6667,
    delivered: 4,
    completed: 2,
    completionRate: 0.5,
    interventionCompliance: 0.75,
    medianTimeToAcceptMs: toAccept[1],
    repeats: 1,
    repeatRate: 0.2,
    failures: 0,
  });
  t.ok(toAccept[1] > 0 && toAccept[1] < 1500);
  t.match(s.byPlatform, [{ platformId: 'h', delivered: 4, completed: 2 }]);
  const byH = (await env.auditor().get('/v1/stats?platform=h')).body;
  t.match(byH, { diverted: 4, repeats: 1, refusedPoliceOnly: 0 });
  const none = (await env.auditor().get('/v1/stats?platform=elsewhere')).body;
  t.match(none, { diverted: 0, repeats: 0 });
  const own = await env.source().get('/v1/stats');
  t.equal(own.status, 200);
  t.equal(own.body.diverted, 4);
  t.equal((await env.source().get('/v1/stats?source=test-110-b')).status, 403);
  t.equal((await env.auditor().get('/v1/stats?from=2030-01-01T00:00:00Z&to=2029-01-01T00:00:00Z')).status, 400);
});
