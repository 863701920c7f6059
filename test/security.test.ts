/**
 * Security: every route × every kind of key (and no key) against the expected allow/deny
 * matrix; source isolation; an auditor changes nothing; platform keys post only their own
 * events; callback signatures (tolerance, replay, constant time); secrets never logged;
 * rate limits shared through Redis by several API processes; body and header size limits.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { createHash, randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { standardWebhookSignature } from '../src/delivery/http.js';
import { useRedis } from './helpers/redis.js';
import { KEYS, LogCapture, ROOT, SOURCE_A, SOURCE_B, alert, api, sha256hex, startTestFenliu, testConfig, type ConfigDoc } from './helpers/fenliu.js';

const EXTRA = {
  opWrite: 'sec-op-alerts-write',
  opRead: 'sec-op-alerts-read',
  opEvents: 'sec-op-events-write',
  platHook: 'sec-platform-hook-key',
  platOther: 'sec-platform-12345-key',
} as const;

const PRINCIPALS: Record<string, string | undefined> = {
  none: undefined,
  bogus: 'not-a-configured-key',
  srcA: KEYS.sourceA,
  srcB: KEYS.sourceB,
  opWrite: EXTRA.opWrite,
  opRead: EXTRA.opRead,
  opEvents: EXTRA.opEvents,
  auditor: KEYS.auditor,
  admin: KEYS.admin,
  platHook: EXTRA.platHook,
  platOther: EXTRA.platOther,
};
const ALL = Object.keys(PRINCIPALS);

const CALLBACK_SECRET = 'whsec_c2lnbmVkLXBsYXRmb3JtLWNhbGxiYWNrLXNlY3JldC0wMTIz';
const BEARER_TOKEN = 'outbound-bearer-token-SECRET-9f8e7d';

function securityConfig(over: ConfigDoc = {}): ConfigDoc {
  const base = testConfig();
  return testConfig({
    keys: [
      ...base.keys,
      { id: 'op-write', sha256: sha256hex(EXTRA.opWrite), scopes: ['alerts:write'] },
      { id: 'op-read', sha256: sha256hex(EXTRA.opRead), scopes: ['alerts:read'] },
      { id: 'op-events', sha256: sha256hex(EXTRA.opEvents), scopes: ['events:write'] },
    ],
    platforms: [
      { ...base.platforms[0], keys: [{ id: 'p12345-key', sha256: sha256hex(EXTRA.platOther), scopes: ['events:write'] }] },
      base.platforms[1],
      base.platforms[2],
      {
        id: 'p-hook',
        adapter: 'webhook',
        url: 'http://127.0.0.1:9',
        auth: { type: 'bearer', token: BEARER_TOKEN },
        keys: [{ id: 'hook-key', sha256: sha256hex(EXTRA.platHook), scopes: ['events:write'] }],
        options: { path: '/hook', response: { ticketIdPath: 'id' }, callback: { statePath: 'state', stateMap: { ACCEPTED: 'accepted' }, deliveryIdPath: 'ref', eventIdPath: 'eventId' } },
      },
      {
        id: 'p-signed',
        adapter: 'webhook',
        url: 'http://127.0.0.1:9',
        callback: { secret: CALLBACK_SECRET, toleranceSeconds: 300 },
        options: { path: '/hook', response: { ticketIdPath: 'id' }, callback: { statePath: 'state', stateMap: { ACCEPTED: 'accepted' }, deliveryIdPath: 'ref', eventIdPath: 'eventId' } },
      },
    ],
    routes: [
      { id: 'hooks', match: { category: ['assist.*'] }, targets: ['p-hook'] },
      ...base.routes,
    ],
    ...over,
  });
}

/** Method + path of every route the server registered, parsed from fastify's route tree. */
function routesOf(tree: string): { method: string; url: string }[] {
  const out: { method: string; url: string }[] = [];
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const i = line.indexOf('── ');
    if (i < 0) continue;
    const depth = Math.round((i + 3) / 4) - 1;
    const m = /^(.*?)(?: \(([A-Z, ]+)\))?$/.exec(line.slice(i + 3))!;
    stack.length = depth;
    stack[depth] = m[1];
    if (m[2]) for (const method of m[2].split(', ')) if (method !== 'HEAD' && method !== 'OPTIONS') out.push({ method, url: stack.join('') });
  }
  return out;
}

type Expect = { allow: string[]; kind?: 'public' | 'session' };
const PUBLIC: Expect = { allow: ALL, kind: 'public' };

/** The matrix: who may call what. A route missing here fails the test. */
function expected(method: string, url: string): Expect | undefined {
  if (['/healthz', '/readyz', '/openapi.json'].includes(url) || url.startsWith('/docs')) return PUBLIC;
  if (url === '/console' || url === '/console/' || (url.startsWith('/console/') && !url.startsWith('/console/api'))) return PUBLIC;
  if (url === '/console/api/session') return method === 'GET' ? { allow: [], kind: 'session' } : PUBLIC;
  if (url === '/metrics') return { allow: ['none', 'admin'] }; // open on loopback without a key; otherwise admin
  if (url.startsWith('/admin/queues')) return { allow: ['admin'] };
  const m = `${method} ${url}`;
  const table: Record<string, string[]> = {
    // Only source keys submit alerts (FENLIU_ERR_NOT_A_SOURCE for operator and admin keys).
    'POST /v1/alerts': ['srcA', 'srcB'],
    // Operator keys with alerts:read (duty officers) read every alert, personal data masked.
    'GET /v1/alerts': ['srcA', 'srcB', 'opRead', 'auditor', 'admin'],
    'GET /v1/alerts/:id': ['srcA', 'opRead', 'auditor', 'admin'],
    'GET /v1/alerts/:id/timeline': ['srcA', 'opRead', 'auditor', 'admin'],
    'POST /v1/alerts/:id/cancel': ['srcA', 'admin'],
    'POST /v1/alerts/:id/update': ['srcA', 'admin'],
    'GET /v1/deliveries/:id': ['srcA', 'opRead', 'auditor', 'admin'],
    'POST /v1/deliveries/:id/retry': ['admin'],
    'POST /v1/deliveries/:id/redeliver': ['admin'],
    'GET /v1/platforms': ['srcA', 'srcB', 'opRead', 'auditor', 'admin'],
    'GET /v1/platforms/:id/dead-letters': ['auditor', 'admin'],
    'POST /v1/platforms/:id/dead-letters/retry': ['admin'],
    'POST /v1/platforms/:id/events': ['platHook', 'admin'],
    'GET /v1/stats': ['srcA', 'srcB', 'opRead', 'auditor', 'admin'],
    'GET /v1/sla': ['auditor', 'admin'],
    'GET /v1/audit': ['auditor', 'admin'],
    'GET /v1/audit/checkpoint': ['srcA', 'srcB', 'opRead', 'auditor', 'admin'],
    'POST /v1/audit/checkpoint': ['admin'],
    'GET /v1/alerts/:id/proof': ['srcA', 'opRead', 'auditor', 'admin'],
    'POST /v1/replays': ['admin'],
    'POST /v1/replays/:id/finish': ['admin'],
    'GET /v1/flow': ['opRead', 'auditor', 'admin'],
  };
  return table[m] ? { allow: table[m] } : undefined;
}

let seq = 0;

t.test('every route × every key: the allow/deny matrix', async (t) => {
  const redis = await useRedis(t);
  const f = await startTestFenliu({ redisUrl: redis.url, cfg: securityConfig() });
  t.teardown(() => f.stop());
  const routes = routesOf(f.app!.printRoutes());
  t.ok(routes.length >= 20, `${routes.length} routes enumerated from the server`);
  const unknown = routes.filter((r) => !expected(r.method, r.url)).map((r) => `${r.method} ${r.url}`);
  t.same(unknown, [], 'every route has an entry in the matrix (add new routes to expected())');

  /** A fresh alert of source A, so mutating calls never disturb each other. */
  const fresh = async () => {
    const res = await api(f.url, KEYS.sourceA).post('/v1/alerts', alert(`SEC-${++seq}`, { category: 'assist.unlock' }));
    if (res.status !== 202) throw new Error(`fresh alert: ${res.status} ${res.text}`);
    return { id: res.body.id as string, delivery: res.body.deliveries[0].id as string, body: alert(`SEC-${seq}`, { category: 'assist.unlock' }) };
  };

  const call = async (who: string, method: string, url: string) => {
    const key = PRINCIPALS[who];
    const headers: Record<string, string> = {};
    if (key) headers.authorization = `Bearer ${key}`;
    let path = url.replace(/\*$/, 'x');
    let body: unknown;
    if (path.includes(':id')) {
      if (path.startsWith('/v1/platforms/')) path = path.replace(':id', 'p-hook');
      else {
        const a = await fresh();
        if (path.startsWith('/v1/deliveries/')) path = path.replace(':id', a.delivery);
        else path = path.replace(':id', a.id);
        if (path.endsWith('/update')) body = { ...a.body, summary: 'updated summary' };
      }
    }
    path = path.replace(/:[A-Za-z]+/g, 'x');
    if (method === 'POST' && body === undefined) {
      if (path === '/v1/alerts') body = alert(`SEC-NEW-${++seq}`, {}, who === 'srcB' ? SOURCE_B : SOURCE_A);
      else if (path.endsWith('/events')) {
        const a = await fresh();
        body = { eventId: `e-${++seq}`, ref: a.delivery, state: 'ACCEPTED' };
      } else if (path === '/console/api/session') body = { key: key ?? 'x' };
      else body = { reason: 'security matrix' };
    }
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await request(f.url + path, { method: method as 'GET', headers, body: body === undefined ? undefined : JSON.stringify(body) });
    await res.body.dump();
    return res.statusCode;
  };

  const mismatches: string[] = [];
  let calls = 0;
  for (const r of routes) {
    const exp = expected(r.method, r.url)!;
    for (const who of ALL) {
      const status = await call(who, r.method, r.url);
      calls++;
      expect: {
        if (status >= 500) {
          mismatches.push(`${r.method} ${r.url} as ${who}: ${status}`);
          break expect;
        }
        // 404 on an existing resource is how another owner's data is hidden: a denial.
        const hidden = status === 404 && r.url.includes(':id') && !r.url.startsWith('/admin/queues');
        const denied = status === 401 || status === 403 || hidden;
        if (exp.kind === 'public') break expect;
        if (exp.kind === 'session') {
          if (status !== 401) mismatches.push(`${r.method} ${r.url} as ${who}: ${status}, expected 401 without a console session`);
          break expect;
        }
        const want = exp.allow.includes(who);
        if (want === denied) mismatches.push(`${r.method} ${r.url} as ${who}: ${status}, expected ${want ? 'allowed' : 'denied'}`);
        if (denied && who === 'none' && status !== 401 && r.url !== '/metrics') mismatches.push(`${r.method} ${r.url} without a key: ${status}, expected 401`);
      }
    }
  }
  t.same(mismatches, [], `${calls} calls (${routes.length} routes × ${ALL.length} principals) match the matrix`);
  process.stdout.write(`# security matrix: ${routes.length} routes × ${ALL.length} principals = ${calls} calls\n`);
});

t.test('source isolation, auditor read-only, platform keys bound to their platform', async (t) => {
  const redis = await useRedis(t);
  // API role only: a delivery worker retrying in the background would rewrite delivery and job keys
  // while the auditor's calls run, and the byte-for-byte check below would blame the auditor.
  const f = await startTestFenliu({ redisUrl: redis.url, cfg: securityConfig(), role: 'api' });
  t.teardown(() => f.stop());
  const A = api(f.url, KEYS.sourceA);
  const B = api(f.url, KEYS.sourceB);
  const a = await A.post('/v1/alerts', alert('ISO-1', { category: 'assist.unlock', caller: { name: '欧阳娜娜', phone: '13800138000' } }));
  t.equal(a.status, 202);
  const b = await B.post('/v1/alerts', alert('ISO-2', {}, SOURCE_B));
  t.equal(b.status, 202);

  // B cannot see or touch A's alert, by any route.
  t.equal((await B.get(`/v1/alerts/${a.body.id}`)).status, 404, 'B reads A: 404 (not 403: existence is not revealed)');
  t.equal((await B.get(`/v1/alerts/${a.body.id}/timeline`)).status, 404);
  t.equal((await B.get(`/v1/deliveries/${a.body.deliveries[0].id}`)).status, 404);
  t.equal((await B.post(`/v1/alerts/${a.body.id}/cancel`, { reason: 'not mine' })).status, 404, 'B cancels A: 404');
  t.equal((await B.post(`/v1/alerts/${a.body.id}/update`, alert('ISO-1', { summary: 'hijack' }))).status, 404, 'B updates A: 404');
  t.equal((await B.post('/v1/alerts', alert('ISO-3'))).status, 403, 'B submits in A’s name: 403');
  t.equal((await B.get(`/v1/alerts?source=${SOURCE_A}`)).status, 403, 'B lists A: 403');
  const listB = await B.get('/v1/alerts');
  t.same(listB.body.items.map((x: any) => x.id), [b.body.id], 'B’s list holds only B’s alert');
  const statsB = await B.get(`/v1/stats?source=${SOURCE_A}`);
  t.equal(statsB.status, 403, 'B reads A’s statistics: 403');
  const still = await A.get(`/v1/alerts/${a.body.id}`);
  t.equal(still.body.alert.summary, alert('ISO-1').summary, 'A’s alert unchanged');
  t.same(still.body.deliveries.map((d: any) => d.state), ['queued'], 'A’s delivery not cancelled');

  // An operator key with alerts:read (a duty officer) lists every source's alerts, people masked.
  const opList = await api(f.url, EXTRA.opRead).get('/v1/alerts');
  t.equal(opList.status, 200, 'operator alerts:read key lists alerts');
  const opOne = await api(f.url, EXTRA.opRead).get(`/v1/alerts/${a.body.id}`);
  t.equal(opOne.status, 200, 'and reads one');
  t.notMatch(opList.text + opOne.text, /13800138000|欧阳娜娜/, 'with the caller’s name and phone masked');
  t.equal((await api(f.url, EXTRA.opRead).post(`/v1/alerts/${a.body.id}/cancel`, { reason: 'op' })).status, 403, 'but cannot cancel');
  t.equal(still.body.alert.caller.name, '欧阳娜娜', 'the owning source reads the caller unmasked');

  // Platform keys: their own platform only.
  const ev = (key: string, platform: string) =>
    api(f.url, key).post(`/v1/platforms/${platform}/events`, undefined, { raw: JSON.stringify({ eventId: `e-${randomUUID()}`, ref: a.body.deliveries[0].id, state: 'ACCEPTED' }), contentType: 'application/json' });
  t.equal((await ev(EXTRA.platOther, 'p-hook')).status, 403, 'p-12345’s key posts for p-hook: 403');
  t.equal((await ev(EXTRA.opEvents, 'p-hook')).status, 403, 'an operator events:write key is no platform: 403');
  t.equal((await ev(KEYS.sourceA, 'p-hook')).status, 403, 'a source key: 403');
  t.not((await ev(EXTRA.platHook, 'p-hook')).status, 403, 'p-hook’s own key passes authentication');

  // The auditor calls every route with every method it might try: Redis is unchanged.
  const r = new Redis(redis.url);
  t.teardown(() => r.disconnect());
  // Per key, so that a failure names the keys that changed. Hashes are compared by content
  // (fields sorted), not by DUMP: a hash re-stored with the same content may change its field
  // order (and the lifecycle queue is BullMQ's).
  const snapshot = async () => {
    const keys = (await r.keys('*')).filter((k) => !k.includes(':rl:')).sort();
    const out: Record<string, string> = {};
    for (const k of keys) {
      const raw = (await r.type(k)) === 'hash' ? JSON.stringify(Object.entries(await r.hgetall(k)).sort()) : String(await r.dump(k));
      out[k] = createHash('sha256').update(raw).digest('hex').slice(0, 16);
    }
    return out;
  };
  const before = await snapshot();
  const aud = api(f.url, KEYS.auditor);
  const tries = [
    aud.post('/v1/alerts', alert('AUD-1')),
    aud.post(`/v1/alerts/${a.body.id}/cancel`, { reason: 'auditor' }),
    aud.post(`/v1/alerts/${a.body.id}/update`, alert('ISO-1', { summary: 'auditor' })),
    aud.post(`/v1/deliveries/${a.body.deliveries[0].id}/retry`, { reason: 'auditor' }),
    aud.post('/v1/platforms/p-hook/dead-letters/retry', { reason: 'auditor' }),
    ev(KEYS.auditor, 'p-hook'),
  ];
  const statuses = (await Promise.all(tries)).map((x) => x.status);
  t.ok(statuses.every((s) => s === 401 || s === 403 || s === 404), `auditor refused every change: ${statuses}`);
  for (const p of ['/v1/alerts', `/v1/alerts/${a.body.id}`, `/v1/alerts/${a.body.id}/timeline`, '/v1/audit', '/v1/stats', '/v1/sla', '/v1/platforms', '/v1/flow']) {
    t.equal((await aud.get(p)).status, 200, `auditor reads ${p}`);
  }
  t.same(await snapshot(), before, 'Redis is byte-for-byte unchanged after the auditor’s calls');
});

t.test('callback signatures: tolerance, replay, constant-time comparison', async (t) => {
  const redis = await useRedis(t);
  const f = await startTestFenliu({ redisUrl: redis.url, cfg: securityConfig() });
  t.teardown(() => f.stop());
  const post = async (opts: { skew?: number; id?: string; sig?: string; body?: string }) => {
    const id = opts.id ?? `msg_${randomUUID()}`;
    const body = opts.body ?? JSON.stringify({ eventId: id, ref: 'dlv_unknown', state: 'ACCEPTED' });
    const ts = Math.floor(Date.now() / 1000) + (opts.skew ?? 0);
    const res = await request(`${f.url}/v1/platforms/p-signed/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': opts.sig ?? standardWebhookSignature(CALLBACK_SECRET, id, ts, body) },
      body,
    });
    const text = await res.body.text();
    return { status: res.statusCode, code: (JSON.parse(text) as { code: string }).code, id };
  };
  // A valid, fresh message passes authentication and then names no known delivery (404).
  const ok = await post({});
  t.same([ok.status, ok.code], [404, 'FENLIU_ERR_NOT_FOUND'], 'valid signature: authenticated');
  t.same((await post({ id: ok.id })).code, 'FENLIU_ERR_REPLAYED', 'same webhook-id again: replay refused');
  // 5 s either side of the 300 s tolerance: the timestamp is in whole seconds and a loaded
  // machine may take a second to answer, so ±299 would test the clock, not the rule.
  t.same((await post({ skew: 295 })).status, 404, '295 s skew: within tolerance');
  t.same((await post({ skew: -295 })).status, 404, '-295 s skew: within tolerance');
  t.same((await post({ skew: 305 })).code, 'FENLIU_ERR_BAD_SIGNATURE', '305 s ahead: refused');
  t.same((await post({ skew: -305 })).code, 'FENLIU_ERR_BAD_SIGNATURE', '305 s behind: refused');
  t.same((await post({ sig: 'v1,AAAA' })).code, 'FENLIU_ERR_BAD_SIGNATURE', 'wrong signature: refused');
  const id = `msg_${randomUUID()}`;
  const ts = Math.floor(Date.now() / 1000);
  const signed = standardWebhookSignature(CALLBACK_SECRET, id, ts, '{"a":1}');
  t.same((await post({ id, sig: signed, body: '{"a":2}' })).code, 'FENLIU_ERR_BAD_SIGNATURE', 'body changed after signing: refused');
  t.same((await api(f.url, KEYS.admin).post('/v1/platforms/p-signed/events', { x: 1 })).body.code, 'FENLIU_ERR_BAD_SIGNATURE', 'a signed platform takes signed callbacks only, even from admin');

  // Constant time: signatures and key digests are compared with timingSafeEqual, never ===.
  const lifecycle = readFileSync(join(ROOT, 'src/routes/lifecycle.ts'), 'utf8');
  const auth = readFileSync(join(ROOT, 'src/plugins/app/auth.ts'), 'utf8');
  t.match(lifecycle, /timingSafeEqual\(got, expected\)/, 'callback signatures: timingSafeEqual');
  t.match(auth, /timingSafeEqual\(entry\.digest, digest\)/, 'API keys: timingSafeEqual on the SHA-256');
  t.notMatch(lifecycle, /\b(sig|got|header)\s*===\s*expected\b|\bexpected\s*===\s*(sig|got)\b|\.equals\(expected\)/, 'no === on signatures');
});

t.test('secrets and personal data never reach a log line (full scenario at debug level)', async (t) => {
  const redis = await useRedis(t);
  const logs = new LogCapture();
  const f = await startTestFenliu({ redisUrl: redis.url, cfg: securityConfig({ log: { level: 'debug' } }), role: 'all', logStream: logs, logLevel: 'debug' });
  t.teardown(() => f.stop());
  const personal = {
    callerName: '欧阳娜娜',
    callerPhone: '13912345678',
    partyName: '司马懿明',
    partyPhone: '+86 138 0013 8000',
    idNumber: '42020419800101123X',
    landline: '0714-6281234',
  };
  const body = alert('LOG-1', {
    category: 'assist.unlock',
    caller: { name: personal.callerName, phone: personal.callerPhone, confidential: true },
    parties: [{ role: 'respondent', name: personal.partyName, phone: personal.partyPhone }],
    description: `身份证 ${personal.idNumber}，座机 ${personal.landline}`,
  });
  const res = await api(f.url, KEYS.sourceA).post('/v1/alerts', body);
  t.equal(res.status, 202, res.text);
  // Failures on the way: a bad key, a malformed body, a wrong signature, a refused callback.
  await api(f.url, 'wrong-key-that-is-secret-too').post('/v1/alerts', body);
  await api(f.url, KEYS.sourceA).post('/v1/alerts', undefined, { raw: `{"caller":{"phone":"${personal.callerPhone}"`, contentType: 'application/json' });
  await api(f.url, KEYS.sourceA).post('/v1/alerts', { ...body, priority: 'bogus' });
  await request(`${f.url}/v1/platforms/p-signed/events`, { method: 'POST', headers: { 'content-type': 'application/json', 'webhook-id': 'm1', 'webhook-timestamp': String(Math.floor(Date.now() / 1000)), 'webhook-signature': `v1,${Buffer.from(CALLBACK_SECRET).toString('base64')}` }, body: '{}' }).then((r) => r.body.dump());
  await api(f.url, KEYS.admin).get(`/v1/alerts/${res.body.id}`);
  // The engine tries to deliver (bearer token outbound) to a closed port: errors get logged.
  await new Promise((r) => setTimeout(r, 1_500));
  const text = logs.text;
  t.ok(logs.lines.length >= 5, `${logs.lines.length} log lines captured`);
  const secrets = [...Object.values(KEYS), ...Object.values(EXTRA), 'wrong-key-that-is-secret-too', CALLBACK_SECRET, BEARER_TOKEN, ...Object.values(personal)];
  const leaks = secrets.filter((s) => text.includes(s) || text.includes(s.replace(/\s/g, '')));
  t.same(leaks, [], 'no key, secret, token, name, phone or ID number in any log line');
});

t.test('rate limits: per source, shared by two API processes through Redis', async (t) => {
  const redis = await useRedis(t);
  const doc = securityConfig();
  doc.sources[0].rateLimit = { max: 6, perSeconds: 30 };
  const f1 = await startTestFenliu({ redisUrl: redis.url, cfg: doc });
  const f2 = await startTestFenliu({ redisUrl: redis.url, cfg: doc });
  t.teardown(async () => {
    await f1.stop();
    await f2.stop();
  });
  const statuses: number[] = [];
  for (let i = 0; i < 5; i++) {
    // Both keys of source A, alternating instances: one budget for the source.
    statuses.push((await api(f1.url, KEYS.sourceA).post('/v1/alerts', alert(`RL-${i}-a`))).status);
    statuses.push((await api(f2.url, KEYS.sourceANext).post('/v1/alerts', alert(`RL-${i}-b`))).status);
  }
  t.equal(statuses.filter((s) => s === 202).length, 6, `exactly the budget of 6 accepted across both instances: ${statuses}`);
  t.equal(statuses.filter((s) => s === 429).length, 4, 'the rest refused with 429');
  const limited = await api(f2.url, KEYS.sourceA).post('/v1/alerts', alert('RL-x'));
  t.equal(limited.body.code, 'FENLIU_ERR_RATE_LIMITED');
  t.ok(Number(limited.headers['retry-after']) > 0, 'Retry-After is sent');
  t.equal((await api(f1.url, KEYS.sourceB).post('/v1/alerts', alert('RL-B', {}, SOURCE_B))).status, 202, 'source B has its own budget');
});

t.test('rate limits: per key on every other route, shared by API processes; probes never limited', async (t) => {
  const redis = await useRedis(t);
  const doc = securityConfig();
  doc.server = { ...doc.server, rateLimitPerKey: { max: 3, perSeconds: 30 } };
  const f1 = await startTestFenliu({ redisUrl: redis.url, cfg: doc });
  const f2 = await startTestFenliu({ redisUrl: redis.url, cfg: doc });
  t.teardown(async () => {
    await f1.stop();
    await f2.stop();
  });
  const statuses: number[] = [];
  for (let i = 0; i < 3; i++) {
    statuses.push((await api(f1.url, KEYS.auditor).get('/v1/alerts')).status);
    statuses.push((await api(f2.url, KEYS.auditor).get('/v1/alerts')).status);
  }
  t.same(statuses.sort(), [200, 200, 200, 429, 429, 429], `one budget of 3 for the key across both instances: ${statuses}`);
  const limited = await api(f1.url, KEYS.auditor).get('/v1/platforms');
  t.equal(limited.body.code, 'FENLIU_ERR_RATE_LIMITED', 'the budget covers every route of the key');
  t.equal((await api(f1.url, KEYS.admin).get('/v1/alerts')).status, 200, 'another key has its own budget');
  for (let i = 0; i < 5; i++) t.equal((await api(f1.url).get('/healthz')).status, 200, `probe ${i} not limited`);
});

t.test('body and header size limits', async (t) => {
  const redis = await useRedis(t);
  const f = await startTestFenliu({ redisUrl: redis.url, cfg: securityConfig() });
  t.teardown(() => f.stop());
  const limit = f.cfg.server.bodyLimitBytes;
  const big = alert('BIG-1', { description: 'x'.repeat(limit + 10) });
  const res = await api(f.url, KEYS.sourceA).post('/v1/alerts', big);
  t.same([res.status, res.body.code], [413, 'FENLIU_ERR_PAYLOAD_TOO_LARGE'], `body over ${limit} bytes: 413`);
  const cb = await api(f.url, KEYS.admin).post('/v1/platforms/p-hook/events', undefined, { raw: 'x'.repeat(limit + 10), contentType: 'text/plain' });
  t.equal(cb.status, 413, 'callback bodies have the same limit');
  // A header block over Node's 16 KB limit: 431, before any handler runs.
  const status = await new Promise<string>((resolve) => {
    const u = new URL(f.url);
    const s = connect(Number(u.port), u.hostname, () => s.write(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`));
    let buf = '';
    s.on('data', (d) => (buf += d));
    s.on('close', () => resolve(buf.split('\r\n')[0]));
    s.on('error', () => resolve(buf.split('\r\n')[0]));
  });
  t.match(status, /^HTTP\/1\.1 431/, `oversized headers: ${status}`);
  t.equal(f.app!.server.requestTimeout, 30_000, 'requestTimeout bounds a slow client’s whole request');
  t.ok(f.app!.server.headersTimeout > 0 && f.app!.server.headersTimeout <= f.app!.server.requestTimeout, `headersTimeout ${f.app!.server.headersTimeout} ms ≤ requestTimeout`);
});
