/**
 * Repeat-call matching under concurrency (issue 17): of many simultaneous calls about one place
 * or one phone, exactly one opens a case and the others link to it, in one process or across
 * two fenliu instances sharing one Redis; a copy's claims are released; a closed case's key is
 * taken by exactly one of the calls racing for it. Real HTTP, a private redis-server, no mocks.
 */
import t, { type Test } from 'tap';
import { Redis } from 'ioredis';
import { KEYS, alert, api, startTestFenliu, type TestFenliu } from './helpers/fenliu.js';
import { useRedis } from './helpers/redis.js';
import { newId } from '../src/store/ids.js';
import { keys } from '../src/store/keys.js';
import { sweepRetention } from '../src/store/retention.js';

t.test('repeat calls under concurrency', async (t) => {
  const redis = await useRedis(t);
  const r = new Redis(redis.url);
  // Two instances of one installation (one Redis, one prefix): each has its own matcher, so a
  // holder of the other is only known through Redis (the path of two processes).
  const one = await startTestFenliu({ redisUrl: redis.url });
  const two = await startTestFenliu({ redisUrl: redis.url });
  t.teardown(async () => {
    await one.stop();
    await two.stop();
    r.disconnect();
  });
  const matcher = (f: TestFenliu) => f.rt.ingest['repeat']!;
  const post = (f: TestFenliu, body: Record<string, unknown>, headers?: Record<string, string>) => api(f.url, KEYS.sourceA).post('/v1/alerts', body, headers ? { headers } : undefined);
  let n = 0;
  const place = (address: string) => ({ location: { address, regionCode: '420204' } });

  /** One case and the others linked to it; returns the case id. */
  function oneCase(t: Test, res: { status: number; body: any }[], key: 'place+category' | 'phone+family'): string {
    const created = res.filter((x) => x.status === 202);
    t.equal(created.length, 1, 'exactly one call opens a case');
    const caseId = created[0]?.body.id;
    const linked = res.filter((x) => x.status === 200);
    t.equal(linked.length, res.length - 1, 'every other call is linked');
    t.same([...new Set(linked.map((x) => x.body.repeatOf))], [caseId], 'all to that case');
    t.ok(linked.every((x) => x.body.repeatMatch?.key === key), `by ${key}`);
    return caseId;
  }

  await t.test('20 simultaneous calls about one place, one instance: one case, 19 linked', async (t) => {
    const res = await Promise.all(Array.from({ length: 20 }, () => post(one, alert(`RC-${++n}`, place('杭州西路1号')))));
    const caseId = oneCase(t, res, 'place+category');
    const k = matcher(one).keysFor(alert('x', place('杭州西路1号')) as any);
    t.equal(await r.get(k.place), caseId, 'the place key names the case');
    const view = await api(one.url, KEYS.sourceA).get(`/v1/alerts/${res.find((x) => x.status === 200)!.body.id}`);
    t.equal(view.body.repeatOf, caseId, 'the stored repeat says so too');
  });

  await t.test('20 simultaneous calls from one phone about one kind of problem, elsewhere each: one case, no key held by a repeat', async (t) => {
    const phone = { caller: { phone: '13900000001' } };
    const bodies = Array.from({ length: 20 }, (_, i) => alert(`RC-${++n}`, { ...place(`黄石大道${i}号`), ...phone }));
    const res = await Promise.all(bodies.map((b) => post(one, b)));
    const caseId = oneCase(t, res, 'phone+family');
    const keys = bodies.map((b) => matcher(one).keysFor(b as any));
    t.equal(await r.get(keys[0].phone!), caseId, 'the phone key names the case');
    const places = await r.mget(...keys.map((k) => k.place));
    t.same(places.filter((x) => x !== null), [caseId], "only the case holds its place key: the linked calls gave theirs back");
  });

  await t.test('20 simultaneous calls about one place over two instances: one case', async (t) => {
    const res = await Promise.all(Array.from({ length: 20 }, (_, i) => post(i % 2 ? two : one, alert(`RC-${++n}`, place('杭州西路2号')))));
    const caseId = oneCase(t, res, 'place+category');
    t.equal(await r.get(matcher(two).keysFor(alert('x', place('杭州西路2号')) as any).place), caseId);
  });

  await t.test('20 simultaneous calls from one phone over two instances: one case', async (t) => {
    const phone = { caller: { phone: '13900000002' } };
    const res = await Promise.all(Array.from({ length: 20 }, (_, i) => post(i % 2 ? two : one, alert(`RC-${++n}`, { ...place(`黄石大道${100 + i}号`), ...phone }))));
    oneCase(t, res, 'phone+family');
  });

  await t.test('copies of one alert: one stored, the copies are no repeats and claim nothing', async (t) => {
    const body = alert(`RC-${++n}`, place('杭州西路3号'));
    const res = await Promise.all(Array.from({ length: 10 }, (_, i) => post(i % 2 ? two : one, body)));
    t.equal(res.filter((x) => x.status === 202).length, 1);
    t.equal(res.filter((x) => x.status === 200 && x.headers['idempotent-replayed'] === 'true' && !x.body.repeatOf).length, 9, 'nine idempotent replays, none linked');
    const stored = res.find((x) => x.status === 202)!.body.id;
    t.ok(res.every((x) => x.body.id === stored));
    t.equal(await r.get(matcher(one).keysFor(body as any).place), stored);
  });

  await t.test('a claim made by a copy (idempotent duplicate) is released', async (t) => {
    const phone = { caller: { phone: '13900000003' } };
    const body = alert(`RC-${++n}`, { ...place('杭州西路4号'), ...phone });
    const first = await post(one, body);
    t.equal(first.status, 202);
    const k = matcher(one).keysFor(body as any);
    // The window ends: the alert's keys expire, its idempotency claim stays.
    await r.del(k.place, k.phone!);
    const again = await post(two, body);
    t.equal(again.status, 200);
    t.equal(again.headers['idempotent-replayed'], 'true');
    t.equal(again.body.id, first.body.id);
    t.same(await r.mget(k.place, k.phone!), [null, null], 'the copy claimed both keys while its lookup ran, and gave them back before answering');
    // Same for a conflicting copy (same source alert id, another place): 409, and its key is free.
    const conflicting = alert(body.source.alertId, place('杭州西路5号'));
    const res = await post(one, conflicting);
    t.equal(res.status, 409);
    t.equal(await r.get(matcher(one).keysFor(conflicting as any).place), null);
    const next = await post(two, alert(`RC-${++n}`, place('杭州西路5号')));
    t.equal(next.status, 202, 'a later call about that place opens a case: it is not linked to an alert never stored');
  });

  await t.test("a closed case's key is taken by exactly one of the calls racing for it", async (t) => {
    const first = await post(one, alert(`RC-${++n}`, place('杭州西路6号')));
    t.equal(first.status, 202);
    const cancel = await api(one.url, KEYS.sourceA).post(`/v1/alerts/${first.body.id}/cancel`, { reason: '已自行解决' });
    t.equal(cancel.status, 200);
    const res = await Promise.all(Array.from({ length: 12 }, (_, i) => post(i % 2 ? two : one, alert(`RC-${++n}`, place('杭州西路6号')))));
    const caseId = oneCase(t, res, 'place+category');
    t.not(caseId, first.body.id);
    t.equal(await r.get(matcher(one).keysFor(alert('x', place('杭州西路6号')) as any).place), caseId, 'the key names the new case');
  });

  await t.test('a holder left by a crash (claimed, never stored) is replaced', async (t) => {
    const body = alert(`RC-${++n}`, place('杭州西路7号'));
    const k = matcher(one).keysFor(body as any);
    // Older than any request in flight: replaced at once.
    await r.set(k.place, newId('alt', Date.now() - 120_000));
    const a = await post(one, body);
    t.equal(a.status, 202);
    t.equal(await r.get(k.place), a.body.id);
    // Recent: waited for (it may be in flight in another process), then replaced.
    const body2 = alert(`RC-${++n}`, place('杭州西路8号'));
    const k2 = matcher(one).keysFor(body2 as any);
    matcher(one).inFlightMs = 200;
    t.teardown(() => void (matcher(one).inFlightMs = 2_000));
    await r.set(k2.place, newId('alt'));
    const b = await post(one, body2);
    t.equal(b.status, 202);
    t.equal(await r.get(k2.place), b.body.id);
  });

  await t.test('two copies of one alert racing for a key a closed case held: the stored copy holds the keys, the next call links', async (t) => {
    // A 110 system retrying after a timeout sends the same alert twice at once. The first copy
    // takes the key over from a dead holder; the second finds it in flight in this process. If the
    // second were written first (it need not wait for anything), the first would be the duplicate
    // and release the keys, leaving the stored case without them.
    for (let i = 0; i < 3; i++) {
      const body = alert(`RC-${++n}`, { ...place(`杭州西路9${i}号`), caller: { phone: `139000001${10 + i}` } });
      const k = matcher(one).keysFor(body as any);
      await r.set(k.place, newId('alt', Date.now() - 120_000), 'PX', 600_000);
      const res = await Promise.all([post(one, body), post(one, body)]);
      const created = res.filter((x) => x.status === 202);
      t.equal(created.length, 1, 'one copy stored');
      t.equal(res.filter((x) => x.status === 200 && !x.body.repeatOf).length, 1, 'the other is its duplicate');
      t.same(await r.mget(k.place, k.phone!), [created[0]?.body.id, created[0]?.body.id], 'the stored case holds its place and phone keys');
      const again = await post(one, alert(`RC-${++n}`, { ...place(`杭州西路9${i}号`), caller: { phone: `139000001${10 + i}` } }));
      t.equal(again.body.repeatOf, created[0]?.body.id, 'a later call about the place links to it');
    }
  });

  await t.test('retention forgets the repeat keys of the alerts it removes, and only those', async (t) => {
    const k = matcher(one).keysFor(alert('x', place('杭州西路1号')) as any);
    t.ok(await r.get(k.place), 'held before');
    // A key taken over by a later call after its case was removed is left alone.
    const other = matcher(one).keysFor(alert('x', place('杭州西路2号')) as any);
    await r.set(other.place, 'alt_someone-else');
    await sweepRetention(r, keys('fenliu'), 'fenliu', Date.now() + 1, { repeat: matcher(one) });
    t.equal(await r.get(k.place), null);
    t.equal(await r.get(other.place), 'alt_someone-else');
  });
});
