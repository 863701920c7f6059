import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { useRedis } from './helpers/redis.js';
import { KEYS, ROOT, SOURCE_A, SOURCE_B, alert, api, logged, materialise, startTestFenliu, testConfig, type TestFenliu } from './helpers/fenliu.js';
import { RedisInspector } from './helpers/inspect.js';
import { each, zcardAll } from '../src/store/fanout.js';
import { keys } from '../src/store/keys.js';

const redis = await useRedis(t);

/** A fenliu on the shared private Redis, isolated by its own key prefix. */
async function fenliu(prefix: string, over: Record<string, any> = {}): Promise<{ f: TestFenliu; ins: RedisInspector }> {
  const f = await startTestFenliu({ redisUrl: redis.url, cfg: testConfig({ ...over, redis: { prefix } }) });
  const ins = new RedisInspector(redis.url, prefix);
  t.teardown(async () => {
    await f.stop();
    await ins.close();
  });
  return { f, ins };
}

const { f, ins } = await fenliu('main');
const A = api(f.url, KEYS.sourceA);

const isProblem = (t: Test, res: { headers: Record<string, unknown>; body: any }, status: number, code: string) => {
  t.match(String(res.headers['content-type']), /^application\/problem\+json/, 'problem+json');
  t.equal(res.body?.status, status, 'status in body');
  t.equal(res.body?.code, code, `code ${code}`);
  t.type(res.body?.type, 'string');
  t.type(res.body?.title, 'string');
  t.match(res.body?.instance, /^\/v1\/alerts/, 'instance is the request path');
};

t.test('202: stored, routed, one job per delivery with jobId = delivery id', async (t) => {
  const res = await A.post('/v1/alerts', alert('ING-1'));
  t.equal(res.status, 202);
  const body = res.body;
  t.match(body.id, /^alt_[0-9a-z]{26}$/);
  t.equal(res.headers.location, `/v1/alerts/${body.id}`);
  t.equal(body.status, 'queued');
  t.same(body.source, { system: SOURCE_A, alertId: 'ING-1' });
  t.same(body.route, { ruleId: 'consumer-huangshi', targets: ['p-grid', 'p-12345'] });
  t.same(body.deliveries.map((d: any) => [d.platformId, d.state]), [
    ['p-grid', 'queued'],
    ['p-12345', 'queued'],
  ]);
  t.same(body.links, { self: `/v1/alerts/${body.id}` });
  t.notOk(JSON.stringify(body).includes('米粉店'), 'the receipt does not echo the alert');

  const rec = await ins.alertRecord(body.id);
  t.ok(rec, 'alert record in Redis');
  t.equal(rec.alert.source.alertId, 'ING-1');
  t.same(rec.route.targets, ['p-grid', 'p-12345']);
  t.same(rec.deliveryIds, body.deliveries.map((d: any) => d.id));
  // An api-role process materialises nothing (the workers' dispatcher does): what a worker would do, now.
  t.equal(await materialise(f), logged(f, 1), 'one alert materialised (none: written through)');
  for (const d of body.deliveries) {
    const h = await ins.delivery(d.id);
    t.equal(h.state, 'queued', `delivery ${d.platformId} record`);
    t.equal(h.alertId, body.id);
    const job = await ins.job(d.platformId, d.id);
    t.ok(job, `job for ${d.platformId}`);
    t.equal(job!.id, d.id, 'jobId = delivery id');
    t.same(job!.data, { alertId: body.id, deliveryId: d.id, platformId: d.platformId, kind: 'deliver' });
  }
  t.equal((await ins.jobs('p-cityops')).length, 0, 'no job for a platform the route does not name');
});

t.test('idempotency: same body 200 + idempotent-replayed, different body 409', async (t) => {
  const first = await A.post('/v1/alerts', alert('ING-2'));
  t.equal(first.status, 202);
  const again = await A.post('/v1/alerts', alert('ING-2'));
  t.equal(again.status, 200);
  t.equal(again.headers['idempotent-replayed'], 'true');
  t.equal(again.body.id, first.body.id);
  t.equal(again.headers.location, `/v1/alerts/${first.body.id}`);
  t.same(again.body.deliveries.map((d: any) => d.id), first.body.deliveries.map((d: any) => d.id));
  // Key order does not matter: the body hash is over canonical JSON.
  const reordered = Object.fromEntries(Object.entries(alert('ING-2')).reverse());
  t.equal((await A.post('/v1/alerts', reordered)).status, 200, 'same alert with keys reordered is a replay');
  // The rotation key of the same source is the same source.
  t.equal((await api(f.url, KEYS.sourceANext).post('/v1/alerts', alert('ING-2'))).status, 200);

  const changed = await A.post('/v1/alerts', alert('ING-2', { summary: '另一个警情' }));
  t.equal(changed.status, 409);
  isProblem(t, changed, 409, 'FENLIU_ERR_IDEMPOTENCY_CONFLICT');
  t.equal(changed.body.existingId, first.body.id);

  // Same alertId from another source is another alert.
  const other = await api(f.url, KEYS.sourceB).post('/v1/alerts', alert('ING-2', {}, SOURCE_B));
  t.equal(other.status, 202);
  t.not(other.body.id, first.body.id);
});

t.test('Idempotency-Key header overrides source.alertId', async (t) => {
  const h = { headers: { 'idempotency-key': 'retry-token-77' } };
  const a = await A.post('/v1/alerts', alert('ING-3a'), h);
  t.equal(a.status, 202);
  // A different alertId but the same key and a different body: conflict on the header key.
  const b = await A.post('/v1/alerts', alert('ING-3b'), h);
  t.equal(b.status, 409);
  t.equal(b.body.code, 'FENLIU_ERR_IDEMPOTENCY_CONFLICT');
  t.equal((await A.post('/v1/alerts', alert('ING-3a'), h)).status, 200, 'same key, same body: replay');
  // Without the header, ING-3a's own alertId was never claimed.
  t.equal((await A.post('/v1/alerts', alert('ING-3a'))).status, 202);
  const bad = await A.post('/v1/alerts', alert('ING-3c'), { headers: { 'idempotency-key': 'x'.repeat(129) } });
  t.equal(bad.status, 400);
  t.equal(bad.body.code, 'FENLIU_ERR_BAD_REQUEST');
});

t.test('50 concurrent submissions of one alert: one record, one job per target', async (t) => {
  const { f: g, ins: gi } = await fenliu('conc');
  const client = api(g.url, KEYS.sourceA);
  const results = await Promise.all(Array.from({ length: 50 }, () => client.post('/v1/alerts', alert('CONC-1'))));
  const statuses = results.map((r) => r.status);
  t.equal(statuses.filter((s) => s === 202).length, 1, 'exactly one 202');
  t.equal(statuses.filter((s) => s === 200).length, 49, 'the other 49 are replays');
  const ids = new Set(results.map((r) => r.body.id));
  t.equal(ids.size, 1, 'every answer names the same alert');
  t.same(await gi.alertIds(), [...ids], 'exactly one alert record in Redis');
  t.equal(await materialise(g), logged(g, 1), 'one alert materialised (none: written through)');
  for (const p of ['p-grid', 'p-12345']) t.equal((await gi.jobs(p)).length, 1, `one job in deliver.${p}`);
  t.equal((await gi.jobs('p-cityops')).length, 0);
  t.equal(await zcardAll(gi.redis, each(keys('conc').bucketList, keys('conc').alerts)), 1);
});

t.test('400 malformed JSON', async (t) => {
  const res = await A.post('/v1/alerts', undefined, { raw: '{"source": {' });
  t.equal(res.status, 400);
  isProblem(t, res, 400, 'FENLIU_ERR_MALFORMED_JSON');
  const empty = await A.post('/v1/alerts', undefined, { raw: '' });
  t.equal(empty.status, 400);
  t.equal(empty.body.code, 'FENLIU_ERR_MALFORMED_JSON');
});

t.test('422 lists every schema violation with its JSON pointer', async (t) => {
  const body = JSON.parse(readFileSync(join(ROOT, 'schemas/examples/invalid/several-errors.json'), 'utf8'));
  body.source.system = SOURCE_A;
  const res = await A.post('/v1/alerts', body);
  t.equal(res.status, 422);
  isProblem(t, res, 422, 'FENLIU_ERR_VALIDATION');
  const pointers = res.body.errors.map((e: any) => e.pointer).sort();
  t.same(pointers, ['/caller/phone', '/location/address', '/priority'].sort());
  for (const e of res.body.errors) t.type(e.message, 'string');
  t.equal(await ins.redis.exists('main:idem:test-110-a:A1'), 0, 'nothing stored');
});

t.test('401 missing or unknown key', async (t) => {
  const none = await api(f.url).post('/v1/alerts', alert('AUTH-1'));
  t.equal(none.status, 401);
  isProblem(t, none, 401, 'FENLIU_ERR_UNAUTHENTICATED');
  t.equal(none.headers['www-authenticate'], 'Bearer');
  const unknown = await api(f.url, 'not-a-key').post('/v1/alerts', alert('AUTH-1'));
  t.equal(unknown.status, 401);
  t.equal(unknown.body.code, 'FENLIU_ERR_UNAUTHENTICATED');
  const demo = await api(f.url, 'demo-110-key').post('/v1/alerts', alert('AUTH-1'));
  t.equal(demo.status, 401, 'a demo key is not a key of this config');
  const viaHeader = await api(f.url).post('/v1/alerts', alert('AUTH-2'), { headers: { 'x-api-key': KEYS.sourceA } });
  t.equal(viaHeader.status, 202, 'X-Api-Key works too');
});

t.test('403 wrong scope, and a key bound to another source', async (t) => {
  const auditor = await api(f.url, KEYS.auditor).post('/v1/alerts', alert('AUTH-3'));
  t.equal(auditor.status, 403);
  isProblem(t, auditor, 403, 'FENLIU_ERR_FORBIDDEN');
  const otherSource = await api(f.url, KEYS.sourceB).post('/v1/alerts', alert('AUTH-3'));
  t.equal(otherSource.status, 403);
  isProblem(t, otherSource, 403, 'FENLIU_ERR_SOURCE_MISMATCH');
  t.same(otherSource.body.errors, [{ pointer: '/source/system', message: 'is not the source this key is bound to' }]);
});

t.test('413 body over server.bodyLimitBytes', async (t) => {
  const res = await A.post('/v1/alerts', alert('BIG-1', { description: 'x'.repeat(17_000) }));
  t.equal(res.status, 413);
  isProblem(t, res, 413, 'FENLIU_ERR_PAYLOAD_TOO_LARGE');
});

t.test('415 non-JSON content types', async (t) => {
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml']) {
    const res = await A.post('/v1/alerts', undefined, { raw: JSON.stringify(alert('CT-1')), contentType: type });
    t.equal(res.status, 415, type);
    t.equal(res.body?.code, 'FENLIU_ERR_UNSUPPORTED_MEDIA_TYPE', type);
  }
  const ok = await A.post('/v1/alerts', undefined, { raw: JSON.stringify(alert('CT-2')), contentType: 'application/json; charset=utf-8' });
  t.equal(ok.status, 202, 'application/json with a charset is fine');
});

t.test('429 with Retry-After over the source rate limit', async (t) => {
  const sources = testConfig().sources.map((s: any) => (s.id === SOURCE_A ? { ...s, rateLimit: { max: 3, perSeconds: 60 } } : s));
  const { f: g } = await fenliu('rl', { sources });
  const client = api(g.url, KEYS.sourceA);
  const statuses: number[] = [];
  for (let i = 0; i < 3; i++) statuses.push((await client.post('/v1/alerts', alert(`RL-${i}`))).status);
  t.same(statuses, [202, 202, 202], 'within the limit');
  const over = await client.post('/v1/alerts', alert('RL-3'));
  t.equal(over.status, 429);
  isProblem(t, over, 429, 'FENLIU_ERR_RATE_LIMITED');
  const retryAfter = Number(over.headers['retry-after']);
  t.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${over.headers['retry-after']} in 1..60`);
  // The limit is per source: source B is not affected.
  t.equal((await api(g.url, KEYS.sourceB).post('/v1/alerts', alert('RL-B', {}, SOURCE_B))).status, 202);
});

t.test('422 police-only and no route', async (t) => {
  for (const category of ['violence.assault', 'person.missing', 'fire']) {
    const res = await A.post('/v1/alerts', alert(`PO-${category}`, { category }));
    t.equal(res.status, 422, category);
    isProblem(t, res, 422, 'FENLIU_ERR_POLICE_ONLY');
    t.equal(res.body.errors[0].pointer, '/category');
  }
  const routes = testConfig().routes.filter((r: any) => !r.default);
  const { f: g, ins: gi } = await fenliu('noroute', { routes });
  const res = await api(g.url, KEYS.sourceA).post('/v1/alerts', alert('NR-1', { category: 'nuisance.noise' }));
  t.equal(res.status, 422);
  isProblem(t, res, 422, 'FENLIU_ERR_NO_ROUTE');
  t.same(await gi.alertIds(), [], 'nothing stored');
});

t.test('both rotation keys are valid at once', async (t) => {
  const a = await api(f.url, KEYS.sourceA).post('/v1/alerts', alert('ROT-1'));
  const b = await api(f.url, KEYS.sourceANext).post('/v1/alerts', alert('ROT-2'));
  t.same([a.status, b.status], [202, 202]);
  t.equal((await api(f.url, KEYS.sourceANext).get(`/v1/alerts/${a.body.id}`)).status, 200, 'the next key reads what the old one wrote');
});

t.test('GET /v1/alerts/:id: own source, other source, auditor', async (t) => {
  const created = await A.post('/v1/alerts', alert('READ-1', { caller: { name: '张三', phone: '13800138000' } }));
  t.equal(created.status, 202);
  const id = created.body.id;
  const own = await A.get(`/v1/alerts/${id}`);
  t.equal(own.status, 200);
  t.equal(own.body.id, id);
  t.equal(own.body.status, 'queued');
  t.equal(own.body.sourceId, SOURCE_A);
  t.equal(own.body.alert.source.alertId, 'READ-1');
  t.equal(own.body.route.ruleId, 'consumer-huangshi');
  t.same(own.body.deliveries.map((d: any) => d.state), ['queued', 'queued']);

  const other = await api(f.url, KEYS.sourceB).get(`/v1/alerts/${id}`);
  t.equal(other.status, 404, 'another source sees nothing');
  t.equal(other.body.code, 'FENLIU_ERR_NOT_FOUND');
  const auditor = await api(f.url, KEYS.auditor).get(`/v1/alerts/${id}`);
  t.equal(auditor.status, 200);
  t.equal(auditor.body.id, id);
  const missing = await A.get('/v1/alerts/alt_doesnotexist');
  t.equal(missing.status, 404);
  t.equal((await api(f.url).get(`/v1/alerts/${id}`)).status, 401);
});

t.test('GET /v1/alerts: filters and cursor pagination', async (t) => {
  const { f: g } = await fenliu('list');
  const a = api(g.url, KEYS.sourceA);
  const created: { id: string; category: string }[] = [];
  const cats = ['consumer.refund', 'dispute.debt', 'dispute.neighbor', 'utility.water-leak', 'consumer.refund', 'dispute.family', 'assist.unlock'];
  for (const [i, category] of cats.entries()) {
    const r = await a.post('/v1/alerts', alert(`L-${i}`, { category }));
    t.equal(r.status, 202);
    created.push({ id: r.body.id, category });
  }
  const b = await api(g.url, KEYS.sourceB).post('/v1/alerts', alert('LB-1', { category: 'dispute.debt' }, SOURCE_B));
  t.equal(b.status, 202);

  const all = await a.get('/v1/alerts');
  t.equal(all.status, 200);
  t.same(all.body.items.map((x: any) => x.id), created.map((c) => c.id).reverse(), 'own alerts only, newest first');
  t.equal(all.body.nextCursor, null);

  // Pages of 3 walk the whole list without gaps or repeats.
  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const page: any = await a.get(`/v1/alerts?limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    t.equal(page.status, 200);
    t.ok(page.body.items.length <= 3);
    seen.push(...page.body.items.map((x: any) => x.id));
    cursor = page.body.nextCursor;
    pages++;
  } while (cursor && pages < 10);
  t.same(seen, created.map((c) => c.id).reverse(), 'pagination returns every alert once, in order');
  t.ok(pages >= 3);

  const disputes = await a.get('/v1/alerts?category=dispute');
  t.same(disputes.body.items.map((x: any) => x.id).sort(), created.filter((c) => c.category.startsWith('dispute.')).map((c) => c.id).sort(), 'category prefix');
  const exact = await a.get('/v1/alerts?category=consumer.refund');
  t.equal(exact.body.items.length, 2);

  t.equal((await a.get('/v1/alerts?state=queued')).body.items.length, created.length);
  t.equal((await a.get('/v1/alerts?state=delivered')).body.items.length, 0);
  t.equal((await a.get('/v1/alerts?state=bogus')).status, 400);

  const future = new Date(Date.now() + 3_600_000).toISOString();
  const past = new Date(Date.now() - 3_600_000).toISOString();
  t.equal((await a.get(`/v1/alerts?since=${encodeURIComponent(future)}`)).body.items.length, 0, 'since in the future');
  t.equal((await a.get(`/v1/alerts?until=${encodeURIComponent(past)}`)).body.items.length, 0, 'until in the past');
  t.equal((await a.get(`/v1/alerts?since=${encodeURIComponent(past)}&until=${encodeURIComponent(future)}`)).body.items.length, created.length);

  t.equal((await a.get(`/v1/alerts?source=${SOURCE_B}`)).status, 403, 'a source lists only its own alerts');
  t.equal((await a.get('/v1/alerts?limit=0')).status, 400);
  t.equal((await a.get('/v1/alerts?nonsense=1')).status, 400);

  const aud = api(g.url, KEYS.auditor);
  t.equal((await aud.get('/v1/alerts')).body.items.length, created.length + 1, 'auditor sees every source');
  t.same((await aud.get(`/v1/alerts?source=${SOURCE_B}`)).body.items.map((x: any) => x.id), [b.body.id]);
});

t.test('healthz, readyz, openapi.json, docs', async (t) => {
  const h = await api(f.url).get('/healthz');
  t.equal(h.status, 200);
  t.same(h.body, { status: 'ok' });
  const r = await api(f.url).get('/readyz');
  t.equal(r.status, 200);
  t.equal(r.body.status, 'ready');
  t.equal(r.body.checks.redis, 'ok');
  const o = await api(f.url).get('/openapi.json');
  t.equal(o.status, 200);
  t.equal(o.body.openapi, '3.1.0');
  t.ok(o.body.paths['/v1/alerts'].post);
  const d = await api(f.url).get('/docs');
  t.ok([200, 302].includes(d.status), `/docs answers (${d.status})`);
  const page = await api(f.url).get('/docs/');
  t.equal(page.status, 200);
  t.match(page.text, /swagger/i);
  const nf = await api(f.url).get('/nope');
  t.equal(nf.status, 404);
  t.equal(nf.body.code, 'FENLIU_ERR_NOT_FOUND');
});
