/**
 * The engine's two scripts against real Redis: the claim (read + circuit check + queued → sending
 * in one step) and a transition carrying an attempt's writes, which land with the state change
 * or, for the conditional ones, only with the outcome they belong to.
 */
import { relayAllAudit } from '../src/store/audit-relay.js';
import { auditStreamKey } from '../src/audit/events.js';
import t from 'tap';
import { Redis } from 'ioredis';
import { claim } from '../src/delivery/claim.js';
import { transition } from '../src/lifecycle/transition.js';
import { keys } from '../src/store/keys.js';
import { useRedis } from './helpers/redis.js';

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
