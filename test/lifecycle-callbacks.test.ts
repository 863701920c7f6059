/**
 * Status callbacks from platforms: Standard Webhooks signatures (bad, stale, replayed), platform
 * keys, every platform-reported transition of the table, illegal ones refused (409, recorded, not
 * applied), out-of-order and duplicate events.
 */
import t from 'tap';
import { HOTLINE_WORD, hotlineEvent, platformKey, startLifecycleEnv, type LcEnv } from './helpers/lifecycle.js';

const SECRET = 'whsec_dGVzdC1jYWxsYmFjay1zZWNyZXQtMDEyMzQ1Njc4OQ==';
const CITY = platformKey('p-city');
const OTHER = platformKey('p-other');

t.test('callbacks', async (t) => {
  const env: LcEnv = await startLifecycleEnv(t, {
    platforms: [
      { id: 'p-hot', kind: 'hotline-12345', callback: { secret: SECRET, toleranceSeconds: 60 } },
      { id: 'p-city', kind: 'city-ops', keys: [CITY.config] },
      { id: 'p-other', kind: 'city-ops', keys: [OTHER.config] },
    ],
    routes: [
      { id: 'utilities', match: { category: ['utility.*'] }, targets: ['p-city'] },
      { id: 'default', default: true, targets: ['p-hot'] },
    ],
    sla: {},
  });
  let ev = 0;
  const eid = () => `E-${++ev}`;

  /** A fresh case at p-hot, delivered, and its ticket id. */
  const hotCase = async () => {
    const { alertId, deliveries } = await env.submit();
    const d = await env.waitFor(deliveries['p-hot'], 'delivered');
    return { alertId, id: d.id as string, ticket: d.remoteTicketId as string };
  };
  const say = (ticket: string, state: string, eventId = eid()) => env.callback('p-hot', hotlineEvent(ticket, HOTLINE_WORD[state], eventId));

  await t.test('signature: missing, bad, stale and replayed messages are refused', async (t) => {
    const c = await hotCase();
    const body = hotlineEvent(c.ticket, '签收', eid());
    const unsigned = await env.callback('p-hot', body, { secret: '' });
    t.equal(unsigned.status, 401);
    t.equal(unsigned.body.code, 'FENLIU_ERR_BAD_SIGNATURE');
    t.match(unsigned.headers['content-type'], /application\/problem\+json/);
    const bad = await env.callback('p-hot', body, { secret: 'whsec_YW5vdGhlci1zZWNyZXQtMDEyMzQ1Njc4OQ==' });
    t.equal(bad.status, 401);
    t.equal(bad.body.code, 'FENLIU_ERR_BAD_SIGNATURE');
    const stale = await env.callback('p-hot', body, { timestamp: Math.floor(Date.now() / 1000) - 120 });
    t.equal(stale.status, 401, 'outside the 60 s tolerance');
    t.match(stale.body.detail, /60 s/);
    const future = await env.callback('p-hot', body, { timestamp: Math.floor(Date.now() / 1000) + 120 });
    t.equal(future.status, 401);
    t.equal((await env.delivery(c.id)).state, 'delivered', 'nothing applied');
    const ok = await env.callback('p-hot', body, { msgId: 'msg_replay_1' });
    t.equal(ok.status, 200);
    t.match(ok.body.results[0], { applied: true, to: 'accepted' });
    const replay = await env.callback('p-hot', body, { msgId: 'msg_replay_1' });
    t.equal(replay.status, 409);
    t.equal(replay.body.code, 'FENLIU_ERR_REPLAYED');
    // A platform key does not replace the signature when the platform has a secret.
    const keyed = await env.callback('p-hot', hotlineEvent(c.ticket, '办结', eid()), { secret: '', key: CITY.plain });
    t.equal(keyed.status, 401);
  });

  await t.test('platform key (events:write) when the platform has no secret', async (t) => {
    const { deliveries } = await env.submit({ category: 'utility.water-leak' });
    const d = await env.waitFor(deliveries['p-city'], 'delivered');
    const body = { eventId: eid(), caseId: d.remoteTicketId, status: 'acknowledged', at: new Date().toISOString(), department: '自来水公司' };
    t.equal((await env.callback('p-city', body)).status, 401, 'no key');
    t.equal((await env.callback('p-city', body, { key: 'test-src-a-key' })).status, 403, 'a source key');
    t.equal((await env.callback('p-city', body, { key: OTHER.plain })).status, 403, "another platform's key");
    const ok = await env.callback('p-city', body, { key: CITY.plain });
    t.equal(ok.status, 200);
    t.match(ok.body.results, [{ applied: true, from: 'delivered', to: 'accepted' }]);
    t.match(await env.delivery(d.id), { state: 'accepted', handler: '自来水公司' });
    // Events about another platform's ticket never touch it.
    const foreign = await env.callback('p-other', { ...body, eventId: eid(), status: 'resolved' }, { key: OTHER.plain });
    t.equal(foreign.status, 404);
    t.equal((await env.delivery(d.id)).state, 'accepted');
    t.equal((await env.callback('p-nope', body, { key: CITY.plain })).status, 404, 'unknown platform');
    const unreadable = await env.callback('p-city', '{"status":', { key: CITY.plain });
    t.equal(unreadable.status, 400);
  });

  await t.test('every platform-reported transition of the table, through callbacks', async (t) => {
    const paths: string[][] = [
      ['accepted', 'in_progress', 'resolved', 'closed', 'reopened', 'accepted', 'resolved', 'reopened', 'in_progress', 'returned'],
      ['in_progress', 'cancelled'],
      ['resolved', 'reopened', 'resolved', 'reopened', 'cancelled'],
      ['returned'],
      ['rejected'],
      ['cancelled'],
      ['accepted', 'returned'],
      ['accepted', 'cancelled'],
      ['resolved', 'reopened', 'returned'],
    ];
    const seen = new Set<string>();
    for (const path of paths) {
      const c = await hotCase();
      let from = 'delivered';
      for (const to of path) {
        const res = await say(c.ticket, to);
        t.equal(res.status, 200, `${from} → ${to}: ${res.text}`);
        t.match(res.body.results[0], { applied: true, from, to });
        t.equal((await env.delivery(c.id)).state, to);
        seen.add(`${from}>${to}`);
        from = to;
      }
      const h = await env.history(c.id);
      t.same(
        h.filter((x) => x.source === 'callback').map((x) => x.to),
        path,
        'history lists each applied state once',
      );
    }
    t.equal(seen.size, 21, 'all 21 platform-reported edges were taken');
    // The first sign-for time survives a reopened case signed for again.
    const c = await hotCase();
    await say(c.ticket, 'accepted');
    const first = (await env.delivery(c.id)).acceptedAt;
    await say(c.ticket, 'resolved');
    await say(c.ticket, 'reopened');
    await say(c.ticket, 'accepted');
    t.equal((await env.delivery(c.id)).acceptedAt, first);
  });

  await t.test('illegal transitions: 409 problem+json, recorded in history and audit, not applied', async (t) => {
    const c = await hotCase();
    const res = await say(c.ticket, 'closed', 'E-illegal-1');
    t.equal(res.status, 409);
    t.match(res.headers['content-type'], /application\/problem\+json/);
    t.equal(res.body.code, 'FENLIU_ERR_ILLEGAL_TRANSITION');
    t.match(res.body.detail, /delivered → closed/);
    t.match(res.body.results, [{ reason: 'illegal', current: 'delivered', state: 'closed' }]);
    t.equal((await env.delivery(c.id)).state, 'delivered', 'not applied');
    const h = await env.history(c.id);
    t.match(h[h.length - 1], { from: 'delivered', to: 'delivered', refused: 'closed', source: 'callback', eventId: 'E-illegal-1' });
    const audit = await env.auditor().get(`/v1/audit?alertId=${c.alertId}&type=delivery.transition-refused`);
    t.equal(audit.status, 200);
    t.match(audit.body.items, [{ event: { type: 'delivery.transition-refused', deliveryId: c.id, data: { from: 'delivered', to: 'closed', eventId: 'E-illegal-1' } } }]);

    // From final states, nothing moves.
    for (const [setup, to] of [
      [['returned'], 'accepted'],
      [['cancelled'], 'resolved'],
      [['rejected'], 'reopened'],
      [['resolved'], 'returned'],
      [['resolved'], 'cancelled'],
      [['accepted', 'in_progress', 'resolved', 'closed'], 'returned'],
    ] as [string[], string][]) {
      const x = await hotCase();
      for (const s of setup) t.equal((await say(x.ticket, s)).status, 200);
      const r = await say(x.ticket, to);
      t.equal(r.status, 409, `${setup.at(-1)} → ${to} refused`);
      t.equal((await env.delivery(x.id)).state, setup.at(-1));
    }
  });

  await t.test('out of order: resolved before accepted applies; accepted after resolved is stale', async (t) => {
    const c = await hotCase();
    const r1 = await say(c.ticket, 'resolved');
    t.match(r1.body.results[0], { applied: true, from: 'delivered', to: 'resolved' });
    const d = await env.delivery(c.id);
    t.ok(d.resolvedAt);
    t.equal(d.acceptedAt, d.resolvedAt, 'resolution implies the case was taken');
    const r2 = await say(c.ticket, 'accepted');
    t.equal(r2.status, 200);
    t.match(r2.body.results[0], { applied: false, reason: 'stale', current: 'resolved' });
    t.equal((await env.delivery(c.id)).state, 'resolved');
    const h = await env.history(c.id);
    t.match(h[h.length - 1], { to: 'resolved', note: /stale accepted event ignored/ });
    const r3 = await say(c.ticket, 'in_progress');
    t.match(r3.body.results[0], { reason: 'stale' });
    // A view of the alert derives its state from the deliveries.
    const view = await env.source().get(`/v1/alerts/${c.alertId}`);
    t.equal(view.body.status, 'resolved');
  });

  await t.test('duplicate event ids are idempotent', async (t) => {
    const c = await hotCase();
    const a = await say(c.ticket, 'accepted', 'E-dup');
    t.match(a.body.results[0], { applied: true });
    const b = await say(c.ticket, 'accepted', 'E-dup');
    t.equal(b.status, 200);
    t.match(b.body.results[0], { applied: false, reason: 'duplicate' });
    // Same event id, even claiming another state: still the same event, not applied twice.
    const c2 = await say(c.ticket, 'resolved', 'E-dup');
    t.match(c2.body.results[0], { applied: false, reason: 'duplicate' });
    t.equal((await env.delivery(c.id)).state, 'accepted');
    t.equal((await env.history(c.id)).filter((x) => x.eventId === 'E-dup').length, 1);
    // A new event id with the state the delivery is already in is a no-op.
    const same = await say(c.ticket, 'accepted');
    t.match(same.body.results[0], { applied: false, reason: 'duplicate' });
    // One body with the same event twice.
    const x = await hotCase();
    const both = await env.callback('p-hot', [hotlineEvent(x.ticket, '签收', 'E-twice'), hotlineEvent(x.ticket, '签收', 'E-twice')]);
    t.match(both.body.results, [{ applied: true }, { applied: false, reason: 'duplicate' }]);
  });

  await t.test('unknown tickets: 404', async (t) => {
    const res = await say('GD-NOPE', 'accepted');
    t.equal(res.status, 404);
    t.equal(res.body.code, 'FENLIU_ERR_NOT_FOUND');
  });
});
