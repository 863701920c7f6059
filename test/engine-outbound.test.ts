/**
 * What goes on the wire: data minimisation (`fields`), outbound auth (Standard Webhooks HMAC,
 * bearer, OAuth2 client credentials with a cached token), the idempotency header, and secrets
 * kept out of the attempt log.
 */
import { auditStreamKey } from '../src/audit/events.js';
import t from 'tap';
import { Webhook } from 'standardwebhooks';
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { startRedis } from './helpers/redis.js';
import { startEngineEnv } from './helpers/engine.js';

const redis = await startRedis();

const PERSONAL = {
  description: '顾客张三称店主李四拒绝退款，双方发生争执，店内有监控。',
  caller: { name: '王五', phone: '13800000001', confidential: true },
  parties: [
    { role: '顾客', name: '张三', phone: '13800000002', idNumber: '42020019800101001X' },
    { role: '店主', name: '李四', phone: '13800000003' },
  ],
  police: { unit: '下陆派出所', officerId: 'P12345', sceneStatus: 'controlled', assessment: '消费纠纷，建议分流' },
  location: { address: '湖北省黄石市下陆区杭州西路88号', regionCode: '420204', lat: 30.2, lon: 115.0, crs: 'WGS84' },
};

t.test('data minimisation: a platform gets only its fields; the default carries no personal data', async (t) => {
  const e = await startEngineEnv(t, {
    redis,
    platforms: [
      // A locksmith: the place and a phone number, not the narrative, not the parties.
      { id: 'lock', kind: 'webhook', fields: ['location', 'caller.phone'] },
      { id: 'dflt', kind: 'webhook' },
      { id: 'full', kind: 'webhook', fields: ['caller', 'parties.phone', 'description'] },
    ],
  });
  const { deliveries } = await e.submit(PERSONAL);
  for (const id of Object.values(deliveries)) await e.waitForState(id, 'delivered');
  const raw = (id: string) => e.sandbox.get(id).received[0].body;
  const sent = (id: string) => JSON.parse(raw(id)).alert;

  const lock = raw('lock');
  for (const s of ['王五', '张三', '李四', '13800000002', '13800000003', '42020019800101001X', '监控', '下陆派出所', 'P12345']) t.notOk(lock.includes(s), `locksmith body has no "${s}"`);
  t.ok(lock.includes('13800000001'), 'locksmith gets the caller phone');
  const l = sent('lock');
  t.same(l.caller, { phone: '13800000001', confidential: true }, 'caller: phone and the confidentiality flag only');
  t.notOk('parties' in l, 'no parties');
  t.notOk('description' in l, 'no description');
  t.notOk('police' in l, 'no police block');
  t.same(l.location, PERSONAL.location, 'the whole location');
  t.ok(l.summary && l.category && l.source && l.reportedAt, 'what every platform gets');

  const d = sent('dflt');
  t.notOk('caller' in d, 'default: no caller');
  t.notOk('parties' in d, 'default: no parties');
  for (const s of ['王五', '13800000001', '13800000002', '42020019800101001X']) t.notOk(raw('dflt').includes(s), `default body has no "${s}"`);
  t.equal(d.description, PERSONAL.description, 'default: the narrative');
  t.same(d.police, PERSONAL.police, 'default: the police view');

  const f = sent('full');
  t.same(f.caller, PERSONAL.caller, 'granted caller: all of it');
  t.same(f.parties, [
    { role: '顾客', phone: '13800000002' },
    { role: '店主', phone: '13800000003' },
  ], 'parties.phone: phone and role, no names, no id numbers');
});

t.test('outbound auth, idempotency key, redacted attempt log', async (t) => {
  const HMAC_KEY = Buffer.from('a-thirty-two-byte-secret-for-hm!');
  const HMAC_SECRET = `whsec_${HMAC_KEY.toString('base64')}`;
  const BEARER = 'static-bearer-token-7f3a';
  const OAUTH_SECRET = 'client-secret-9b1c';
  const ACCESS_TOKEN = 'issued-access-token-42';
  const OPEN311_KEY = 'open311-api-key-5d2e';

  // A loopback OAuth2 token endpoint.
  const tokenRequests: { body: string; headers: IncomingMessage['headers'] }[] = [];
  const tokenServer = createServer(async (req, res) => {
    let body = '';
    for await (const c of req) body += c;
    tokenRequests.push({ body, headers: req.headers });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ access_token: ACCESS_TOKEN, token_type: 'Bearer', expires_in: 3600 }));
  });
  tokenServer.listen(0, '127.0.0.1');
  await once(tokenServer, 'listening');
  t.teardown(() => new Promise<void>((r) => { tokenServer.closeAllConnections(); tokenServer.close(() => r()); }));
  const tokenUrl = `http://127.0.0.1:${(tokenServer.address() as AddressInfo).port}/oauth/token`;

  const e = await startEngineEnv(t, {
    redis,
    platforms: [
      { id: 'hmac', kind: 'webhook', auth: { type: 'hmac', secret: HMAC_SECRET } },
      { id: 'bearer', kind: 'city-ops', auth: { type: 'bearer', token: BEARER } },
      { id: 'oauth', kind: 'grid-governance', auth: { type: 'oauth2', tokenUrl, clientId: 'fenliu-gw', clientSecret: OAUTH_SECRET, scope: 'events:write' } },
      // Open311 carries its credential in the form body.
      { id: 'o311', kind: 'open311', options: { apiKey: OPEN311_KEY, defaultServiceCode: 'GENERAL' } },
    ],
  });
  const subs = await Promise.all([e.submit(), e.submit(), e.submit()]);
  for (const s of subs) for (const id of Object.values(s.deliveries)) await e.waitForState(id, 'delivered');

  t.test('hmac: Standard Webhooks headers a receiver can verify', async (t) => {
    const got = e.sandbox.get('hmac').received;
    t.equal(got.length, 3);
    for (const r of got) {
      const id = r.headers['webhook-id'];
      const ts = r.headers['webhook-timestamp'];
      t.equal(id, r.headers['idempotency-key'], 'webhook-id = delivery id');
      t.ok(Math.abs(Number(ts) - Date.now() / 1000) < 60, 'timestamp is now (seconds)');
      const expected = createHmac('sha256', HMAC_KEY).update(`${id}.${ts}.${r.body}`).digest('base64');
      t.equal(r.headers['webhook-signature'], `v1,${expected}`, 'signature recomputed from the raw body');
      const forged = createHmac('sha256', HMAC_KEY).update(`${id}.${ts}.${r.body} `).digest('base64');
      t.not(r.headers['webhook-signature'], `v1,${forged}`, 'a changed body would not verify');
      // The spec's reference library, not our own arithmetic, has the last word.
      t.same(new Webhook(HMAC_SECRET).verify(r.body, r.headers), JSON.parse(r.body), 'standardwebhooks verifies it');
      t.throws(() => new Webhook(HMAC_SECRET).verify(`${r.body} `, r.headers), 'standardwebhooks refuses a changed body');
    }
  });

  t.test('bearer', async (t) => {
    for (const r of e.sandbox.get('bearer').received) t.equal(r.headers.authorization, `Bearer ${BEARER}`);
  });

  t.test('oauth2: one token request for several deliveries, token on every request', async (t) => {
    t.equal(tokenRequests.length, 1, 'token endpoint hit once (cached)');
    const form = new URLSearchParams(tokenRequests[0].body);
    t.equal(form.get('grant_type'), 'client_credentials');
    t.equal(form.get('client_id'), 'fenliu-gw');
    t.equal(form.get('client_secret'), OAUTH_SECRET);
    t.equal(form.get('scope'), 'events:write');
    const got = e.sandbox.get('oauth').received;
    t.equal(got.length, 3);
    for (const r of got) t.equal(r.headers.authorization, `Bearer ${ACCESS_TOKEN}`);
  });

  t.test('every request carries idempotency-key = delivery id', async (t) => {
    for (const p of ['hmac', 'bearer', 'oauth', 'o311']) {
      // Open311 also gets fenliu's GET services (discovery) at start; deliveries are the POSTs.
      const sentKeys = e.sandbox.get(p).received.filter((r) => r.method === 'POST').map((r) => r.headers['idempotency-key']).sort();
      t.same(sentKeys, subs.map((s) => s.deliveries[p]).sort(), p);
    }
  });

  t.test('secrets never reach the attempt log', async (t) => {
    for (const s of subs) {
      for (const [p, id] of Object.entries(s.deliveries)) {
        const res = await e.admin.get(`/v1/deliveries/${id}`);
        const log = JSON.stringify(res.body.attemptLog);
        for (const secret of [HMAC_SECRET, HMAC_KEY.toString('base64'), BEARER, OAUTH_SECRET, ACCESS_TOKEN, OPEN311_KEY]) t.notOk(log.includes(secret), `${p}: no secret in the log`);
        const h = res.body.attemptLog[0].request.headers;
        t.equal(h['idempotency-key'], id);
        if (p === 'hmac') t.equal(h['webhook-signature'], '[redacted]');
        else if (p !== 'o311') t.equal(h.authorization, '[redacted]');
      }
    }
    // Nor the audit stream.
    const stream = JSON.stringify(await e.r.xrange(auditStreamKey(e.f.cfg.redis.prefix), '-', '+'));
    for (const secret of [HMAC_SECRET, BEARER, OAUTH_SECRET, ACCESS_TOKEN, OPEN311_KEY]) t.notOk(stream.includes(secret), 'no secret in the audit stream');
    const posts = e.sandbox.get('o311').received.filter((r) => r.method === 'POST');
    t.equal(posts.length, 3);
    t.ok(posts.every((r) => new URLSearchParams(r.body).get('api_key') === OPEN311_KEY), 'while the platform gets the real api_key');
    t.match(stream, /api_key=%5Bredacted%5D/, 'the audited Open311 body says where the key was');
  });
});

t.test('oauth2: a token endpoint that is down is retried, not a permanent failure', async (t) => {
  let hits = 0;
  const tokenServer = createServer((_req, res) => {
    hits++;
    if (hits === 1) {
      res.writeHead(503).end('busy');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: 'later-token', expires_in: 60 }));
  });
  tokenServer.listen(0, '127.0.0.1');
  await once(tokenServer, 'listening');
  t.teardown(() => new Promise<void>((r) => { tokenServer.closeAllConnections(); tokenServer.close(() => r()); }));
  const tokenUrl = `http://127.0.0.1:${(tokenServer.address() as AddressInfo).port}/token`;
  const e = await startEngineEnv(t, {
    redis,
    platforms: [{ id: 'oauth', kind: 'grid-governance', auth: { type: 'oauth2', tokenUrl, clientId: 'c', clientSecret: 'client-secret-x' } }],
  });
  const { deliveries } = await e.submit();
  const d = await e.waitForState(deliveries.oauth, ['delivered', 'failed']);
  t.equal(d.state, 'delivered');
  t.equal(d.attempts, 2);
  t.equal(d.attemptLog[0].outcome, 'retry');
  t.match(d.attemptLog[0].reason, /token endpoint answered 503/);
  t.equal(e.sandbox.get('oauth').received.length, 1, 'the platform saw only the authorised request');
});

t.test('stop redis', async () => redis.stop());
