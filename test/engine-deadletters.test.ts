/**
 * Dead letters: listed per platform, retried one by one or platform-wide by an admin with a
 * reason, and delivered once the platform is fixed.
 */
import t from 'tap';
import { startRedis } from './helpers/redis.js';
import { KEYS, api, startEngineEnv } from './helpers/engine.js';
import { each, zcardAll } from '../src/store/fanout.js';
import { bucketOf } from '../src/store/keys.js';

const redis = await startRedis();

t.test('dead letters: list, operator retry (admin, reason, 403, 409), platform-wide retry', async (t) => {
  const e = await startEngineEnv(t, {
    redis,
    platforms: [{ id: 'p1', kind: 'hotline-12345', retry: { delaysMs: [20], jitter: 'none' }, circuitBreaker: { failureThreshold: 100, cooldownMs: 1000 } }],
  });
  const sb = e.sandbox.get('p1');
  sb.setFault({ fault: '5xx', status: 502 });
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) ids.push((await e.submit()).deliveries.p1);
  for (const id of ids) await e.waitForState(id, 'failed');

  const auditor = api(e.url, KEYS.auditor);
  const source = e.source;

  t.test('listed, newest first, for admin and audit:read; not for a source key', async (t) => {
    const dl = await e.admin.get('/v1/platforms/p1/dead-letters');
    t.equal(dl.status, 200);
    t.same(new Set(dl.body.items.map((x: any) => x.id)), new Set(ids));
    t.ok(dl.body.items.every((x: any) => x.state === 'failed' && /^http-5xx: HTTP 502/.test(x.lastError) && x.attempts === 2));
    t.equal(dl.body.nextCursor, null);
    const page = await e.admin.get('/v1/platforms/p1/dead-letters?limit=3');
    t.equal(page.body.items.length, 3);
    t.equal(page.body.nextCursor, '3');
    const rest = await e.admin.get(`/v1/platforms/p1/dead-letters?limit=3&cursor=${page.body.nextCursor}`);
    t.equal(rest.body.items.length, 1);
    t.equal((await auditor.get('/v1/platforms/p1/dead-letters')).status, 200);
    t.equal((await source.get('/v1/platforms/p1/dead-letters')).status, 403);
    t.equal((await e.admin.get('/v1/platforms/nope/dead-letters')).status, 404);
  });

  t.test('GET /v1/platforms: the last failed attempt and the circuit as the engine counts it', async (t) => {
    const p1 = (await e.admin.get('/v1/platforms')).body.items[0];
    t.match(p1, { id: 'p1', circuit: 'closed', circuitFailures: 8, circuitThreshold: 100, queueDepth: 0, deadLetters: 4 }, 'four deliveries × two 502s, none waiting');
    t.match(p1.lastFailure, { errorClass: 'http-5xx', status: 502, message: /^HTTP 502/ });
    t.ok(ids.includes(p1.lastFailure.deliveryId), 'names the delivery');
    t.ok(Date.now() - Date.parse(p1.lastFailure.at) < 60_000, 'recent');
    t.match(p1.lastError, /^http-5xx: HTTP 502/);
    t.notOk('oldestWaitingAt' in p1, 'nothing waiting, no age');
  });

  t.test('POST /v1/deliveries/:id/retry: admin only, reason required, failed only', async (t) => {
    const [first] = ids;
    t.equal((await source.post(`/v1/deliveries/${first}/retry`, { reason: 'x' })).status, 403, 'source key: 403');
    t.equal((await auditor.post(`/v1/deliveries/${first}/retry`, { reason: 'x' })).status, 403, 'audit:read: 403');
    t.equal((await e.admin.post(`/v1/deliveries/${first}/retry`, {})).status, 400, 'reason required');
    t.equal((await e.admin.post(`/v1/deliveries/${first}/retry`, { reason: '' })).status, 400, 'reason not empty');
    t.equal((await e.admin.post('/v1/deliveries/dlv_nope.p1/retry', { reason: 'x' })).status, 404);

    const before = sb.received.length;
    sb.setFault('none');
    const res = await e.admin.post(`/v1/deliveries/${first}/retry`, { reason: 'platform fixed its gateway (ticket OPS-1)' });
    t.equal(res.status, 202);
    t.equal(res.body.id, first);
    const d = await e.waitForState(first, 'delivered');
    t.equal(sb.received.length, before + 1, 'one new request');
    t.equal(sb.received.at(-1)!.headers['idempotency-key'], first, 'same idempotency key as the failed attempts');
    t.equal(d.attempts, 3, 'attempts count across the operator retry');
    t.same((await e.admin.get(`/v1/deliveries/${first}`)).body.attemptLog.map((a: any) => a.n), [1, 2, 3], 'attempt rows numbered 1, 2, 3');
    t.equal(d.retries, '1');
    t.notOk(d.lastError);
    t.equal(await e.r.zscore(e.k.deadLetters(bucketOf(first), 'p1'), first), null, 'no longer a dead letter');
    const hist = (await e.admin.get(`/v1/deliveries/${first}`)).body.history;
    const op = hist.find((h: any) => h.source === 'operator');
    t.match(op, { from: 'failed', to: 'queued', note: 'platform fixed its gateway (ticket OPS-1)' }, 'the operator and reason are in the history');

    const again = await e.admin.post(`/v1/deliveries/${first}/retry`, { reason: 'again' });
    t.equal(again.status, 409, 'delivered: 409');
    t.match(again.body.detail ?? again.text, /delivered/);
  });

  t.test('an operator retry gets a fresh retry budget, numbered on from the earlier attempts', async (t) => {
    const id = ids[1];
    sb.setFault({ fault: '5xx', status: 502 });
    t.equal((await e.admin.post(`/v1/deliveries/${id}/retry`, { reason: 'try once more' })).status, 202);
    const d = await e.waitForState(id, 'failed');
    t.equal(d.attempts, 4, 'two more attempts (the whole budget), not one');
    t.same((await e.admin.get(`/v1/deliveries/${id}`)).body.attemptLog.map((a: any) => a.n), [1, 2, 3, 4]);
    sb.setFault('none');
  });

  t.test('POST /v1/platforms/:id/dead-letters/retry retries every dead letter', async (t) => {
    t.equal((await source.post('/v1/platforms/p1/dead-letters/retry', { reason: 'x' })).status, 403);
    t.equal((await e.admin.post('/v1/platforms/p1/dead-letters/retry', {})).status, 400);
    t.equal((await e.admin.post('/v1/platforms/nope/dead-letters/retry', { reason: 'x' })).status, 404);
    const res = await e.admin.post('/v1/platforms/p1/dead-letters/retry', { reason: 'outage over' });
    t.equal(res.status, 202);
    t.same(res.body, { retried: 3 });
    for (const id of ids.slice(1)) await e.waitForState(id, 'delivered');
    t.equal(await zcardAll(e.r, each(e.k.bucketList, (b) => e.k.deadLetters(b, 'p1'))), 0, 'dead-letter store empty');
    const dl = await e.admin.get('/v1/platforms/p1/dead-letters');
    t.same(dl.body.items, []);
    const tickets = new Set([...sb.tickets.values()].map((x) => x.externalId));
    for (const id of ids) t.ok(tickets.has(id), `ticket for ${id}`);
    const plats = await e.admin.get('/v1/platforms');
    t.equal(plats.body.items[0].deadLetters, 0);
  });
});

t.test('stop redis', async () => redis.stop());
