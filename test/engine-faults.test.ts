/**
 * Every sandbox fault ends right: delivered after retries, or failed with the right reason.
 * Real Redis, real loopback HTTP; tiny retry delays (50/100/200 ms, no jitter).
 */
import t from 'tap';
import { startRedis } from './helpers/redis.js';
import { freePort, startEngineEnv, type EnginePlatform } from './helpers/engine.js';
import { bucketOf } from '../src/store/keys.js';

const redis = await startRedis();

const env = (t: { teardown(fn: () => unknown): void }, platforms: EnginePlatform[]) => startEngineEnv(t, { platforms, redis });

t.test('5xx twice, then ok: delivered on the third attempt, every attempt logged', async (t) => {
  const e = await env(t, [{ id: 'p1', kind: 'hotline-12345' }]);
  e.sandbox.get('p1').setFault({ fault: '5xx', times: 2 });
  const { deliveries } = await e.submit();
  const d = await e.waitForState(deliveries.p1, 'delivered');
  t.equal(d.attempts, 3);
  t.match(d.remoteTicketId, /^GD\d+/);
  t.same(d.attemptLog.map((a: any) => [a.n, a.outcome, a.status, a.errorClass]), [
    [1, 'retry', 503, 'http-5xx'],
    [2, 'retry', 503, 'http-5xx'],
    [3, 'delivered', 200, undefined],
  ]);
  t.ok(d.attemptLog[0].nextAttemptAt && d.attemptLog[1].nextAttemptAt, 'retries carry their next attempt time');
  t.notOk(d.attemptLog[2].nextAttemptAt);
  t.match(d.attemptLog[0].reason, /^HTTP 503: /);
  t.notMatch(d.attemptLog[0].reason, /HTTP 503: HTTP 503/, 'status not repeated in the reason');
  t.match(d.attemptLog[0].response, /系统繁忙/, 'response body recorded');
  t.equal(e.sandbox.get('p1').received.length, 3);
  t.notOk(d.lastError, 'lastError cleared on delivery');
  // The API shows the same thing.
  const api = await e.admin.get(`/v1/deliveries/${deliveries.p1}`);
  t.equal(api.status, 200);
  t.equal(api.body.attemptLog.length, 3);
  t.same(api.body.history.map((h: any) => h.to), ['queued', 'sending', 'queued', 'sending', 'queued', 'sending', 'delivered']);
});

t.test('429 + Retry-After is honoured, and bounded by maxRetryAfterMs', async (t) => {
  const e = await env(t, [
    { id: 'honour', kind: 'hotline-12345', retry: { delaysMs: [50, 50], jitter: 'none', maxRetryAfterMs: 5000 } },
    { id: 'bounded', kind: 'hotline-12345', retry: { delaysMs: [50, 50], jitter: 'none', maxRetryAfterMs: 300 } },
  ]);
  e.sandbox.get('honour').setFault({ fault: '429', times: 1, retryAfterSeconds: 1 });
  e.sandbox.get('bounded').setFault({ fault: '429', times: 1, retryAfterSeconds: 30 });
  const { deliveries } = await e.submit();
  const h = await e.waitForState(deliveries.honour, 'delivered', 5000);
  const b = await e.waitForState(deliveries.bounded, 'delivered', 5000);
  const gap = (id: string) => {
    const r = e.sandbox.get(id).received;
    return Date.parse(r[1].at) - Date.parse(r[0].at);
  };
  t.equal(h.attempts, 2);
  t.equal(h.attemptLog[0].errorClass, 'http-retryable');
  t.equal(h.attemptLog[0].status, 429);
  t.ok(gap('honour') >= 950, `Retry-After: 1 waited ${gap('honour')} ms (>= ~1 s)`);
  t.ok(gap('honour') < 4000, 'and not much longer');
  const planned = Date.parse(h.attemptLog[0].nextAttemptAt) - Date.parse(h.attemptLog[0].at);
  t.ok(planned >= 1000 && planned < 1500, `nextAttemptAt ~1 s after the attempt (${planned} ms)`);
  t.equal(b.attempts, 2);
  t.ok(gap('bounded') >= 250 && gap('bounded') < 2000, `Retry-After: 30 cut to maxRetryAfterMs 300 (${gap('bounded')} ms)`);
});

t.test('hang past headersMs: timeout, retried, delivered', async (t) => {
  const e = await env(t, [{ id: 'p1', kind: 'hotline-12345', timeouts: { connectMs: 1000, headersMs: 300, bodyMs: 300 } }]);
  e.sandbox.get('p1').setFault({ fault: 'hang', times: 1 });
  const { deliveries } = await e.submit();
  const d = await e.waitForState(deliveries.p1, 'delivered');
  t.equal(d.attempts, 2);
  t.equal(d.attemptLog[0].outcome, 'retry');
  t.equal(d.attemptLog[0].errorClass, 'timeout');
  t.ok(d.attemptLog[0].durationMs >= 250 && d.attemptLog[0].durationMs < 3000, `gave up after ~headersMs (${d.attemptLog[0].durationMs} ms)`);
});

t.test('connection reset: connection class, retried, delivered', async (t) => {
  const e = await env(t, [{ id: 'p1', kind: 'grid-governance' }]);
  e.sandbox.get('p1').setFault({ fault: 'reset', times: 1 });
  const { deliveries } = await e.submit();
  const d = await e.waitForState(deliveries.p1, 'delivered');
  t.equal(d.attempts, 2);
  t.equal(d.attemptLog[0].errorClass, 'connection');
  t.match(d.remoteTicketId, /^GE-/);
});

t.test('slow body beyond bodyMs (even in chunks closer together than bodyMs): timeout, retried', async (t) => {
  // The overall deadline (connect + headers + body = 6.5 s) is longer than the trickle, so only
  // the whole-body bound can cut it.
  const e = await env(t, [{ id: 'p1', kind: 'city-ops', timeouts: { connectMs: 3000, headersMs: 3000, bodyMs: 500 } }]);
  // 10 pieces over 4 s: each gap (400 ms) is under bodyMs, the whole body is not.
  e.sandbox.get('p1').setFault({ fault: 'slow-body', times: 1, slowBodyMs: 4000 });
  const { deliveries } = await e.submit();
  const d = await e.waitForState(deliveries.p1, 'delivered');
  t.equal(d.attempts, 2);
  t.equal(d.attemptLog[0].errorClass, 'timeout');
  t.ok(d.attemptLog[0].durationMs < 3000, `cut at ~bodyMs, not after the whole trickle (${d.attemptLog[0].durationMs} ms)`);
});

t.test('malformed 2xx (HTML): retried as unreadable, then failed and dead-lettered with that reason', async (t) => {
  const e = await env(t, [{ id: 'p1', kind: 'hotline-12345' }]);
  e.sandbox.get('p1').setFault('malformed-2xx');
  const { deliveries } = await e.submit();
  const d = await e.waitForState(deliveries.p1, 'failed');
  t.equal(d.attempts, 4, 'first attempt + 3 retries');
  t.same(d.attemptLog.map((a: any) => a.errorClass), ['unreadable', 'unreadable', 'unreadable', 'unreadable']);
  t.same(d.attemptLog.map((a: any) => a.status), [200, 200, 200, 200]);
  t.match(d.lastError, /^unreadable: /);
  t.match(d.lastError, /<html>oops/);
  t.equal(e.sandbox.get('p1').received.length, 4);
  const dl = await e.admin.get('/v1/platforms/p1/dead-letters');
  t.equal(dl.status, 200);
  t.same(dl.body.items.map((x: any) => x.id), [deliveries.p1]);
  t.match(dl.body.items[0].lastError, /unreadable/);
  const plats = await e.admin.get('/v1/platforms');
  const p1 = plats.body.items.find((p: any) => p.id === 'p1');
  t.equal(p1.deadLetters, 1);
  t.match(p1.lastError, /unreadable/);
  t.equal(p1.circuit, 'closed', 'an answering platform does not trip the circuit');
});

t.test('4xx validation error: failed at once, no retry, with the platform message', async (t) => {
  const e = await env(t, [{ id: 'p1', kind: 'hotline-12345' }]);
  e.sandbox.get('p1').setFault('4xx');
  const { deliveries } = await e.submit();
  const d = await e.waitForState(deliveries.p1, 'failed');
  t.equal(d.attempts, 1);
  t.equal(d.attemptLog[0].outcome, 'reject');
  t.equal(d.attemptLog[0].errorClass, 'http-4xx');
  t.notOk(d.attemptLog[0].nextAttemptAt);
  t.match(d.lastError, /^http-4xx: HTTP 400/);
  t.match(d.lastError, /诉求内容不能为空（模拟故障）/, "the platform's own message");
  t.equal(e.sandbox.get('p1').received.length, 1, 'sent once');
  t.equal(await e.r.zscore(e.k.deadLetters(bucketOf(deliveries.p1), 'p1'), deliveries.p1) !== null, true, 'dead-lettered');
});

t.test('connection refused and DNS failure are retried (then failed after the schedule)', async (t) => {
  const port = await freePort();
  const e = await env(t, [
    { id: 'refused', adapter: 'hotline-12345', url: `http://127.0.0.1:${port}` },
    { id: 'nodns', adapter: 'hotline-12345', url: 'http://no-such-host.invalid' },
  ]);
  const { deliveries } = await e.submit();
  const r = await e.waitForState(deliveries.refused, 'failed');
  const n = await e.waitForState(deliveries.nodns, 'failed');
  t.equal(r.attempts, 4, 'refused: retried three times');
  t.same(r.attemptLog.map((a: any) => a.errorClass), ['connection', 'connection', 'connection', 'connection']);
  t.match(r.attemptLog[0].reason, /ECONNREFUSED/);
  t.equal(n.attempts, 4, 'DNS: retried three times');
  t.same(n.attemptLog.map((a: any) => a.errorClass), ['dns', 'dns', 'dns', 'dns']);
  t.match(n.lastError, /^dns: /);
  t.ok(r.attemptLog.slice(0, 3).every((a: any) => a.outcome === 'retry' && a.nextAttemptAt));
});

t.test('output-schema violation: failed with errorClass output-schema, never sent, never retried', async (t) => {
  const e = await env(t, [
    {
      id: 'hook',
      kind: 'webhook',
      options: {
        path: '/hook',
        mapping: { ref: { path: '$delivery.id' }, title: { path: 'summary' } },
        response: { ticketIdPath: 'id' },
        // The integrator's schema wants a field the mapping never produces: a configuration bug.
        outputSchema: { type: 'object', required: ['ref', 'title', 'jobKind'] },
      },
    },
  ]);
  const { deliveries } = await e.submit();
  const d = await e.waitForState(deliveries.hook, 'failed');
  t.equal(d.attempts, 1);
  t.equal(d.attemptLog.length, 1);
  t.equal(d.attemptLog[0].errorClass, 'output-schema');
  t.equal(d.attemptLog[0].outcome, 'reject');
  t.notOk(d.attemptLog[0].request, 'no request went out');
  t.match(d.lastError, /^output-schema: .*jobKind/);
  t.equal(e.sandbox.get('hook').received.length, 0, 'the platform never saw it');
  const dl = await e.admin.get('/v1/platforms/hook/dead-letters');
  t.same(dl.body.items.map((x: any) => x.id), [deliveries.hook]);
});

// Last: the redis-server child would keep the event loop (and so tap's root test) alive.
t.test('stop redis', async () => redis.stop());
