import t from 'tap';
import { request } from 'undici';
import { sampleAlerts } from '../adapters/common.js';
import { conformanceContext } from '../adapters/conformance.js';
import { builtinAdapters } from '../adapters/index.js';
import type { Adapter, InboundResponse, OutboundRequest, TranslateContext } from '../adapters/sdk.js';
import { prepare } from '../src/delivery/http.js';
import { sendCallback, startSandbox, type Sandbox, type SandboxKind } from '../src/sandbox/index.js';

const KINDS: SandboxKind[] = ['hotline-12345', 'grid-governance', 'city-ops', 'open311', 'webhook'];

/** What the engine does with an OutboundRequest (its own serialiser, `prepare`), plus the idempotency header. */
async function send(baseUrl: string, req: OutboundRequest, deliveryId: string, opts: { headersTimeout?: number } = {}): Promise<InboundResponse> {
  const wire = prepare(baseUrl, req);
  const res = await request(wire.url, {
    method: req.method,
    headers: { ...wire.headers, 'idempotency-key': deliveryId },
    body: wire.body,
    headersTimeout: opts.headersTimeout,
  });
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
  return { status: res.statusCode, headers, body: await res.body.text() };
}

function ctxFor<C>(adapter: Adapter<C>, deliveryId: string, remoteTicketId?: string): TranslateContext<C> {
  return {
    ...conformanceContext,
    platform: { id: adapter.id, config: adapter.exampleConfig },
    delivery: { id: deliveryId, alertId: 'alt_test_0001', ...(remoteTicketId ? { remoteTicketId } : {}) },
  } as TranslateContext<C>;
}

let sandbox: Sandbox;
t.before(async () => {
  sandbox = await startSandbox({
    platforms: [
      ...KINDS.map((kind) => ({ id: `sbx-${kind}`, kind })),
      { id: 'sbx-open311-batch', kind: 'open311', open311Mode: 'batch' },
      { id: 'sbx-feedback', kind: 'feedback-110' },
      { id: 'sbx-faults', kind: 'hotline-12345' },
    ],
  });
});
t.teardown(() => sandbox.close());

t.test('every protocol: translate → sandbox → interpretResponse reads a ticket id', async (t) => {
  for (const kind of KINDS) {
    await t.test(kind, async (t) => {
      const adapter = builtinAdapters[kind];
      const platform = sandbox.get(`sbx-${kind}`);
      t.match(platform.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      const deliveryId = `dlv_sbx_${kind}`;
      for (const alert of [sampleAlerts.noodleShop, sampleAlerts.minimal]) {
        const ctx = ctxFor(adapter, `${deliveryId}_${alert.source.alertId}`);
        const req = adapter.translate(alert, ctx);
        const res = await send(platform.url, req, ctx.delivery.id);
        const i = adapter.interpretResponse(res, ctx);
        t.equal(i.outcome, 'delivered', `${alert.source.alertId}: ${i.reason ?? res.body}`);
        t.type(i.remoteTicketId, 'string');
        t.ok(platform.tickets.has(i.remoteTicketId!), 'the sandbox issued that ticket');
        const last = platform.received.at(-1)!;
        t.equal(last.method, req.method);
        t.equal(last.path, req.path);
        t.equal(last.headers['idempotency-key'], ctx.delivery.id, 'headers are recorded');
        t.ok(last.body.length > 0, 'raw body is recorded');
      }
      // Resending the same delivery (an engine retry) must not open a second ticket.
      const ctx = ctxFor(adapter, `${deliveryId}_again`);
      const req = adapter.translate(sampleAlerts.minimal, ctx);
      const a = adapter.interpretResponse(await send(platform.url, req, ctx.delivery.id), ctx);
      const b = adapter.interpretResponse(await send(platform.url, req, ctx.delivery.id), ctx);
      t.equal(a.remoteTicketId, b.remoteTicketId, 'idempotent by delivery id');
    });
  }
});

t.test('12345 ticket ids and follow-ups', async (t) => {
  const adapter = builtinAdapters['hotline-12345'];
  const platform = sandbox.get('sbx-hotline-12345');
  const ctx = ctxFor(adapter, 'dlv_followup');
  const created = adapter.interpretResponse(await send(platform.url, adapter.translate(sampleAlerts.noodleShop, ctx), ctx.delivery.id), ctx);
  t.match(created.remoteTicketId, /^GD\d{8}\d{4}$/, 'GD + date + sequence');
  const fctx = ctxFor(adapter, 'dlv_followup', created.remoteTicketId);
  const urge = await send(platform.url, adapter.translateUrge!(sampleAlerts.noodleShop, fctx, { alertId: 'HS2', reportedAt: '2026-11-29T12:00:00+08:00', summary: '再次报警' }), ctx.delivery.id);
  t.equal(adapter.interpretResponse(urge, fctx).outcome, 'delivered');
  const cancel = await send(platform.url, adapter.translateCancel!(sampleAlerts.noodleShop, fctx, '报警人撤警'), ctx.delivery.id);
  t.equal(adapter.interpretResponse(cancel, fctx).outcome, 'delivered');
  const ticket = platform.tickets.get(created.remoteTicketId!)!;
  t.same(ticket.operations.map((o) => o.op), ['urge', 'cancel']);
  t.equal(ticket.status, 'cancelled');
  const unknown = ctxFor(adapter, 'dlv_x', 'GD000000000000');
  const res = await send(platform.url, adapter.translateCancel!(sampleAlerts.minimal, unknown, 'x'), 'dlv_x');
  t.equal(res.status, 200, '12345 answers business errors with HTTP 200');
  t.match(adapter.interpretResponse(res, unknown), { outcome: 'reject', reason: /工单不存在/ });
  const missing = await send(platform.url, { method: 'POST', path: '/api/workorders', body: { 外部编号: 'x' } }, 'dlv_y');
  t.equal(missing.status, 400);
  t.match(adapter.interpretResponse(missing, ctx), { outcome: 'reject', reason: /4001/ });
});

t.test('open311 batch service: token, then poll for the id and the status', async (t) => {
  const adapter = builtinAdapters.open311;
  const platform = sandbox.get('sbx-open311-batch');
  const ctx = ctxFor(adapter, 'dlv_batch');
  const i = adapter.interpretResponse(await send(platform.url, adapter.translate(sampleAlerts.confidentialLeak, ctx), ctx.delivery.id), ctx);
  t.equal(i.outcome, 'delivered');
  t.type(i.pendingToken, 'string');
  t.notOk(i.remoteTicketId);
  const sent = platform.received.at(-1)!;
  t.equal(sent.headers['content-type'], 'application/x-www-form-urlencoded; charset=utf-8');
  t.match(sent.body, /^api_key=demo-open311-key&service_code=WATER-LEAK&lat=30\.2&long=115\.1&address_string=%E8%A5%BF.*&description=/);
  t.match(platform.received.at(-1)!.path, /^\/requests\.xml/, 'XML by default');

  const pctx = { platform: { id: 'p', config: adapter.exampleConfig }, now: conformanceContext.now, deliveries: [{ id: 'dlv_batch', pendingToken: i.pendingToken }] };
  const [tokenReq] = adapter.poll!.requests(pctx);
  const tokenEvents = adapter.poll!.parse(await send(platform.url, tokenReq, 'poll'), pctx);
  t.equal(tokenEvents.length, 1);
  t.match(tokenEvents[0], { state: 'delivered', deliveryId: 'dlv_batch' });
  const id = tokenEvents[0].remoteTicketId!;

  platform.setTicketStatus(id, 'closed', 'Leak repaired');
  const pctx2 = { ...pctx, deliveries: [{ id: 'dlv_batch', remoteTicketId: id }] };
  const reqs = adapter.poll!.requests(pctx2);
  t.same(reqs, [{ method: 'GET', path: '/requests.xml', headers: { accept: 'text/xml' }, query: { service_request_id: id } }]);
  const events = adapter.poll!.parse(await send(platform.url, reqs[0], 'poll'), pctx2);
  t.match(events, [{ state: 'resolved', remoteTicketId: id, deliveryId: 'dlv_batch', note: 'Leak repaired' }]);
});

t.test('fault modes, observed over real HTTP', async (t) => {
  const adapter = builtinAdapters['hotline-12345'];
  const platform = sandbox.get('sbx-faults');
  const ctx = ctxFor(adapter, 'dlv_fault');
  const req = adapter.translate(sampleAlerts.minimal, ctx);
  const attempt = (opts: { headersTimeout?: number } = {}) => send(platform.url, req, ctx.delivery.id, opts);
  t.afterEach(() => platform.setFault('none'));

  await t.test('5xx', async (t) => {
    platform.setFault('5xx');
    const res = await attempt();
    t.equal(res.status, 503);
    t.same(JSON.parse(res.body), { code: 5000, msg: '系统繁忙，请稍后重试' }, 'in the platform’s own format');
    t.equal(adapter.interpretResponse(res, ctx).outcome, 'retry');
  });

  await t.test('429 with Retry-After', async (t) => {
    platform.setFault({ fault: '429', retryAfterSeconds: 3 });
    const res = await attempt();
    t.equal(res.status, 429);
    t.equal(res.headers['retry-after'], '3');
    t.match(adapter.interpretResponse(res, ctx), { outcome: 'retry', retryAfterMs: 3000 });
  });

  await t.test('hang: no answer at all', async (t) => {
    platform.setFault('hang');
    const before = platform.received.length;
    await t.rejects(attempt({ headersTimeout: 300 }), { code: 'UND_ERR_HEADERS_TIMEOUT' });
    t.equal(platform.received.length, before + 1, 'the request was still received and recorded');
  });

  await t.test('reset: the socket is destroyed', async (t) => {
    platform.setFault('reset');
    const err = await attempt().then(
      () => undefined,
      (e: unknown) => e as { code?: string },
    );
    t.ok(err, 'the request fails');
    t.ok(err?.code === 'ECONNRESET' || err?.code === 'UND_ERR_SOCKET', `connection error (${err?.code})`);
  });

  await t.test('slow-body: headers at once, body trickles', async (t) => {
    platform.setFault({ fault: 'slow-body', slowBodyMs: 600 });
    const started = performance.now();
    const res = await attempt();
    const elapsed = performance.now() - started;
    t.ok(elapsed >= 450, `took ${Math.round(elapsed)} ms`);
    t.equal(res.status, 200);
    t.equal(adapter.interpretResponse(res, ctx).outcome, 'delivered', 'the complete body still parses');
  });

  await t.test('malformed-2xx: a 200 HTML page', async (t) => {
    platform.setFault('malformed-2xx');
    const res = await attempt();
    t.equal(res.status, 200);
    t.equal(res.body, '<html>oops</html>');
    t.match(res.headers['content-type'], /text\/html/);
    t.equal(adapter.interpretResponse(res, ctx).outcome, 'retry');
  });

  await t.test('4xx: a validation error in the platform’s format', async (t) => {
    platform.setFault('4xx');
    const res = await attempt();
    t.equal(res.status, 400);
    t.match(JSON.parse(res.body), { code: 4001 });
    t.equal(adapter.interpretResponse(res, ctx).outcome, 'reject');
  });

  await t.test('times: n applies to the next n requests only', async (t) => {
    platform.setFault({ fault: '5xx', times: 2 });
    t.equal((await attempt()).status, 503);
    t.equal((await attempt()).status, 503);
    t.equal((await attempt()).status, 200);
    t.equal(platform.currentFault.fault, 'none');
    t.same(platform.received.slice(-3).map((r) => r.fault), ['5xx', '5xx', 'none']);
  });

  await t.test('every fault renders in each platform’s own error format', async (t) => {
    const formats: Record<string, RegExp> = {
      'hotline-12345': /"code":5000/,
      'grid-governance': /"error":\{"code":"UNAVAILABLE"/,
      'city-ops': /"errors":\[/,
      open311: /^\[\{"code":503/,
      webhook: /"error":\{"message"/,
    };
    for (const kind of KINDS) {
      const p = sandbox.get(`sbx-${kind}`);
      p.setFault({ fault: '5xx', times: 1 });
      const a = builtinAdapters[kind];
      const c = ctxFor(a, 'dlv_fmt');
      const res = await send(p.url, a.translate(sampleAlerts.minimal, c), 'dlv_fmt');
      t.match(res.body, formats[kind], kind);
      t.equal(a.interpretResponse(res, c).outcome, 'retry', `${kind} retries`);
      p.setFault({ fault: '4xx', times: 1 });
      const res4 = await send(p.url, a.translate(sampleAlerts.minimal, c), 'dlv_fmt');
      t.ok(res4.status >= 400 && res4.status < 500, `${kind} 4xx`);
      t.match(a.interpretResponse(res4, c), { outcome: 'reject', reason: /\S/ }, `${kind} rejects with a reason`);
    }
  });
});

t.test('control API, waitFor and the request event', async (t) => {
  const platform = sandbox.get('sbx-faults');
  platform.reset();
  const set = await request(`${platform.url}/_sandbox/fault`, { method: 'POST', body: JSON.stringify({ fault: '429', times: 1, retryAfterSeconds: 9 }) });
  t.equal(set.statusCode, 200);
  t.match(await set.body.json(), { fault: { fault: '429', times: 1, retryAfterSeconds: 9 } });
  const bad = await request(`${platform.url}/_sandbox/fault`, { method: 'POST', body: JSON.stringify({ fault: 'meteor' }) });
  t.equal(bad.statusCode, 400);
  t.match(await bad.body.json(), { error: /unknown fault "meteor"/ });

  const seen: string[] = [];
  platform.on('request', (r) => seen.push(r.fault));
  const waiting = platform.waitFor(2, 2000);
  const r1 = await request(`${platform.url}/api/workorders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  t.equal(r1.statusCode, 429);
  t.equal(r1.headers['retry-after'], '9');
  await r1.body.dump();
  const r2 = await request(`${platform.url}/api/workorders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  t.equal(r2.statusCode, 400, 'missing fields: the platform validates');
  await r2.body.dump();
  const got = await waiting;
  t.equal(got.length, 2);
  t.same(seen, ['429', 'none']);

  const listed = await request(`${platform.url}/_sandbox/received`);
  const received = (await listed.body.json()) as { method: string; path: string; body: string }[];
  t.equal(received.length, 2, 'control calls are not recorded');
  t.match(received[0], { method: 'POST', path: '/api/workorders', body: '{}' });

  await t.rejects(platform.waitFor(5, 50), /sbx-faults: 2 of 5 requests after 50 ms/);
  t.throws(() => platform.setFault('meteor' as never), /unknown fault/);
  t.throws(() => sandbox.get('nope'), /no platform nope/);
});

t.test('feedback-110 receiver and sendCallback', async (t) => {
  const feedback = sandbox.get('sbx-feedback');
  const res = await sendCallback(`${feedback.url}/feedback`, { alertId: 'HS1', state: 'accepted' }, { 'x-signature': 'sig' });
  t.equal(res.status, 200);
  t.same(JSON.parse(res.body), { code: 0, msg: 'ok' });
  const [got] = await feedback.waitFor(1, 1000);
  t.equal(got.headers['x-signature'], 'sig');
  t.same(got.parsed, { alertId: 'HS1', state: 'accepted' });
});

t.test('startSandbox refuses bad platform lists and frees what it bound', async (t) => {
  await t.rejects(startSandbox({ platforms: [{ id: 'a', kind: 'fax' as SandboxKind }] }), /unknown kind "fax"/);
  await t.rejects(startSandbox({ platforms: [{ id: 'a', kind: 'webhook' }, { id: 'a', kind: 'webhook' }] }), /duplicate platform id a/);
});
