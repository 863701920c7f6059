/**
 * The Open311 adapter against GeoReport v2 itself (open311/open311.github.io, GeoReport_v2/index.md,
 * see ../shared/realdocs/SOURCES.md), not against our own samples: the POST Service Request
 * argument list and example request, the content type the spec gives, Chinese text through a real
 * server that decodes form bodies by the declared charset, XML answers through the sandbox with
 * the real engine, the service-list check (start and `fenliu adapter test --url`), and the status
 * table whose default does not count `open` as signed for.
 */
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { sampleAlerts } from '../adapters/common.js';
import { conformanceContext } from '../adapters/conformance.js';
import open311, { attributeValue, FORM_CONTENT_TYPE, readBody, type Open311Config } from '../adapters/open311/index.js';
import type { Alert, TranslateContext } from '../adapters/sdk.js';
import { discover } from '../src/delivery/discovery.js';
import { createAgent, DEFAULT_TIMEOUTS, PlatformClient, prepare } from '../src/delivery/http.js';
import { startSandbox, type SandboxPlatformOptions } from '../src/sandbox/index.js';
import { childEnv, cli, LogCapture, ROOT, startTestFenliu, testConfig } from './helpers/fenliu.js';
import { startEngineEnv } from './helpers/engine.js';
import { startRedis } from './helpers/redis.js';

/** GeoReport v2, "POST Service Request": Required Arguments and Optional Arguments, as the spec lists them. */
const SPEC_REQUIRED = ['jurisdiction_id', 'service_code', 'attribute'];
const SPEC_LOCATION = ['lat', 'long', 'address_string', 'address_id'];
const SPEC_OPTIONAL = ['lat', 'long', 'address_string', 'address_id', 'email', 'device_id', 'account_id', 'first_name', 'last_name', 'phone', 'description', 'media_url'];
/** "Requires API Key: Yes"; the spec's example request sends it as `api_key`. */
const SPEC_KEY = 'api_key';
/** The spec's "Example Request" body, verbatim. */
const SPEC_EXAMPLE_BODY =
  'api_key=xyz&jurisdiction_id=city.gov&service_code=001&lat=37.76524078&long=-122.4212043&address_string=1234+5th+street&email=smit333%40sfgov.edu&device_id=tt222111&account_id=123456&first_name=john&last_name=smith&phone=111111111&description=A+large+sinkhole+is+destroying+the+street&media_url=http%3A%2F%2Ffarm3.static.flickr.com%2F2002%2F2212426634_5ed477a060.jpg&attribute[WHISPAWN]=123456&attribute[WHISDORN]=COISL001';
const SPEC_CONTENT_TYPE = 'application/x-www-form-urlencoded; charset=utf-8';

const redis = await startRedis();
t.teardown(() => redis.stop());

function ctx(config: Partial<Open311Config> = {}): TranslateContext<Open311Config> {
  return { ...conformanceContext, platform: { id: 'o311', config: { ...(open311.exampleConfig as Open311Config), ...config } } } as TranslateContext<Open311Config>;
}

/** The spec's argument name for a form key: `attribute[CODE]` and `attribute[CODE][]` are `attribute`. */
const specName = (k: string) => (/^attribute\[[^\]]+\](\[\])?$/.test(k) ? 'attribute' : k);

const withWgs84: Alert = {
  ...sampleAlerts.confidentialLeak,
  caller: { name: 'John Smith', phone: '111111111' },
  parties: [
    { role: 'owner', name: '李四' },
    { role: 'tenant', name: '王五' },
  ],
};
const ATTRS: Open311Config['attributes'] = {
  'WATER-LEAK': { WHISPAWN: { value: '123456' }, REGION: 'location.regionCode', ROLES: 'parties.role', MISSING: 'police.unit' },
};

t.test('POST Service Request: the spec\'s argument names, content type and encoding', async (t) => {
  const allowed = new Set([...SPEC_REQUIRED, ...SPEC_OPTIONAL, SPEC_KEY]);
  const schemaNames = Object.keys((open311.outputSchema as { properties: Record<string, unknown> }).properties);
  t.same(schemaNames.filter((n) => !allowed.has(n)), [], 'the output schema has no argument the spec does not list');
  t.same([...allowed].filter((n) => n !== 'attribute' && !schemaNames.includes(n)), [], 'and every argument the spec lists');
  const spec = new URLSearchParams(SPEC_EXAMPLE_BODY);
  t.ok([...spec.keys()].every((k) => allowed.has(specName(k))), 'the argument list read here covers the spec\'s own example');

  for (const [name, alert, config] of [
    ['wgs84 + attributes', withWgs84, { attributes: ATTRS }],
    ['gcj02', sampleAlerts.noodleShop, {}],
    ['minimal', sampleAlerts.minimal, {}],
  ] as const) {
    const req = open311.translate(alert, ctx(config));
    t.equal(req.contentType, SPEC_CONTENT_TYPE, `${name}: the spec's content type`);
    t.equal(req.method, 'POST');
    t.match(req.path, /^\/requests\.xml$/, `${name}: XML unless told otherwise`);
    const wire = prepare('http://open311.example/dev/v2/', req);
    t.equal(wire.headers['content-type'], SPEC_CONTENT_TYPE, `${name}: sent as the spec writes it`);
    t.equal(wire.headers.accept, 'text/xml');
    t.equal(wire.url, 'http://open311.example/dev/v2/requests.xml');
    const form = new URLSearchParams(wire.body!);
    const keys = [...form.keys()];
    t.same(keys.filter((k) => !allowed.has(specName(k))), [], `${name}: only the spec's arguments`);
    t.ok(form.get('service_code') && form.get(SPEC_KEY), `${name}: service_code and api_key`);
    t.ok(SPEC_LOCATION.some((k) => form.get(k)) && (!form.has('lat') || form.has('long')), `${name}: a full location parameter`);
    t.ok(Array.from(form.get('description') ?? '').length <= 4000);
  }

  const form = new URLSearchParams(prepare('http://x/', open311.translate(withWgs84, ctx({ attributes: ATTRS }))).body!);
  t.equal(form.get('lat'), '30.2');
  t.equal(form.get('long'), '115.1');
  t.equal(form.get('address_string'), withWgs84.location.address, 'address_string with lat/long, as in the spec example');
  t.equal(form.get('first_name'), 'John');
  t.equal(form.get('last_name'), 'Smith');
  t.equal(form.get('attribute[WHISPAWN]'), '123456', 'attribute[CODE]=value, as in the spec example');
  t.equal(form.get('attribute[REGION]'), '420203002001', 'from an alert field');
  t.same(form.getAll('attribute[ROLES][]'), ['owner', 'tenant'], 'multivaluelist: attribute[code][]=v1&attribute[code][]=v2');
  t.notOk(form.has('attribute[MISSING]'), 'no value, no attribute');
  t.equal(attributeValue(sampleAlerts.noodleShop, { path: 'priority', map: { urgent: 'Y' }, default: 'N' }), 'N');
  // The order of the spec's example: credentials, jurisdiction, service, location, person, description, media, attributes.
  const order = [...form.keys()];
  t.ok(order.indexOf('api_key') < order.indexOf('service_code') && order.indexOf('service_code') < order.indexOf('lat') && order.indexOf('description') < order.indexOf('attribute[WHISPAWN]'));
});

t.test('Chinese text survives a server that decodes form bodies by the declared charset', async (t) => {
  // Like servlet containers: the charset parameter decides; without one, ISO-8859-1.
  const got: Record<string, string>[] = [];
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const charset = /charset=([^;\s]+)/i.exec(req.headers['content-type'] ?? '')?.[1]?.toLowerCase() ?? 'iso-8859-1';
    const text = new TextDecoder(charset).decode(Buffer.concat(chunks));
    // Form decoding per the URL Standard, but with the declared charset for the percent-decoded bytes.
    const fields: Record<string, string> = {};
    for (const pair of text.split('&')) {
      const [k, v = ''] = pair.split('=').map((x) => new TextDecoder(charset).decode(Buffer.from(unescape(x.replace(/\+/g, ' ')), 'latin1')));
      fields[k] = v;
    }
    got.push(fields);
    res.writeHead(200, { 'content-type': 'text/xml; charset=utf-8' });
    res.end('<?xml version="1.0" encoding="utf-8"?><service_requests><request><service_request_id>1</service_request_id></request></service_requests>');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const req = open311.translate(sampleAlerts.noodleShop, ctx());
  const wire = prepare(base, req);
  const res = await request(wire.url, { method: 'POST', headers: wire.headers, body: wire.body });
  const answer = { status: res.statusCode, headers: { 'content-type': String(res.headers['content-type']) }, body: await res.body.text() };
  t.same(open311.interpretResponse(answer, ctx()), { outcome: 'delivered', remoteTicketId: '1' }, 'XML answer read');
  const sent = req.body as Record<string, string>;
  t.equal(got[0].description, sent.description, 'description round-trips');
  t.equal(got[0].address_string, '湖北省黄石市下陆区团城山街道杭州西路88号', 'address round-trips');
  t.equal(got[0].last_name, '张');
  // Control: the same bytes without the charset parameter are garbled by this server.
  const bare = await request(wire.url, { method: 'POST', headers: { ...wire.headers, 'content-type': 'application/x-www-form-urlencoded' }, body: wire.body });
  await bare.body.text();
  t.not(got[1].address_string, got[0].address_string, 'without charset=utf-8 the text would be garbled');
});

t.test('XML and JSON answers and errors, both formats', async (t) => {
  const xmlErr = '<?xml version="1.0" encoding="utf-8"?>\n<errors>\n  <error>\n    <code>403</code>\n    <description>Invalid api_key</description>\n  </error>\n  <error>\n    <code>404</code>\n    <description>service_code 9 not found</description>\n  </error>\n</errors>';
  t.same(readBody(xmlErr), [{ code: '403', description: 'Invalid api_key' }, { code: '404', description: 'service_code 9 not found' }]);
  t.match(open311.interpretResponse({ status: 403, headers: {}, body: xmlErr }, ctx()), { outcome: 'reject', reason: 'HTTP 403: 403: Invalid api_key; 404: service_code 9 not found' });
  t.match(open311.interpretResponse({ status: 200, headers: {}, body: xmlErr }, ctx()), { outcome: 'reject', reason: /Invalid api_key/ }, 'an error list in a 200 is a rejection');
  t.match(open311.interpretResponse({ status: 400, headers: {}, body: '[{"code":400,"description":"service_code was not provided"}]' }, ctx()), { outcome: 'reject', reason: /service_code was not provided/ });
  t.same(open311.interpretResponse({ status: 200, headers: {}, body: '<?xml version="1.0"?><service_requests><request><token>T9</token></request></service_requests>' }, ctx()), { outcome: 'delivered', pendingToken: 'T9' });
  t.match(open311.interpretResponse({ status: 200, headers: {}, body: '<!DOCTYPE x [<!ENTITY a "b">]><service_requests/>' }, ctx()), { outcome: 'retry' }, 'a DTD is refused by the hardened reader: unreadable, resent');
});

t.test('status table: open is received, not signed for; per-platform overrides', async (t) => {
  const pctx = (statusMap?: Open311Config['statusMap']) => ({ platform: { id: 'p', config: { ...(open311.exampleConfig as Open311Config), ...(statusMap ? { statusMap } : {}) } }, now: conformanceContext.now, deliveries: [{ id: 'd1', remoteTicketId: '7' }] });
  const body = (status: string) => ({ status: 200, headers: {}, body: `<service_requests><request><service_request_id>7</service_request_id><status>${status}</status><updated_datetime>2026-11-29T01:00:00Z</updated_datetime></request></service_requests>` });
  t.equal(open311.poll!.parse(body('open'), pctx())[0].state, 'delivered', 'default: open = received (受理)');
  t.equal(open311.poll!.parse(body('closed'), pctx())[0].state, 'resolved');
  t.equal(open311.poll!.parse(body('acknowledged'), pctx({ acknowledged: 'accepted' }))[0].state, 'accepted', 'an extended status mapped by the platform');
  t.throws(() => open311.poll!.parse(body('acknowledged'), pctx()), /statusMap/, 'an unknown status says where to map it');
});

t.test('POST answers: a blackbox service (no id, no token) is delivered, not sent again', async (t) => {
  const rctx = { ...conformanceContext, platform: { id: 'p', config: open311.exampleConfig as Open311Config } } as Parameters<typeof open311.interpretResponse>[1];
  const answer = (body: string) => open311.interpretResponse({ status: 200, headers: {}, body }, rctx);
  t.same(answer('<service_requests><request><service_notice>The City will inspect</service_notice><account_id/></request></service_requests>'), { outcome: 'delivered' });
  t.same(answer('[{"service_notice":"Thanks","account_id":null}]'), { outcome: 'delivered' });
  t.equal(answer('[{"something":"else"}]').outcome, 'retry', 'not the spec\'s answer shape: retried');
  t.equal(answer('<html>proxy error</html>').outcome, 'retry');
});

t.test('the sandbox speaks XML: a delivery with the real engine, and discovery', async (t) => {
  const e = await startEngineEnv(t, {
    redis,
    platforms: [
      { id: 'o-xml', kind: 'open311', options: { apiKey: 'k', defaultServiceCode: 'GENERAL' } },
      // Service Discovery offers JSON: fenliu takes it at start.
      { id: 'o-disc', kind: 'open311', options: { apiKey: 'k', defaultServiceCode: 'GENERAL', discoveryUrl: 'discovery.xml' } },
    ],
  });
  const s = await e.submit({ summary: '门锁坏了，无法进门' });
  const x = await e.waitForState(s.deliveries['o-xml'], 'delivered');
  const d = await e.waitForState(s.deliveries['o-disc'], 'delivered');
  t.ok(e.sandbox.get('o-xml').tickets.has(x.remoteTicketId), 'ticket id read from the XML answer');
  const post = e.sandbox.get('o-xml').received.find((r) => r.method === 'POST')!;
  t.match(post.path, /^\/requests\.xml$/);
  t.equal(post.headers['content-type'], SPEC_CONTENT_TYPE);
  t.equal((post.parsed as Record<string, string>).description.split('\n')[0], '门锁坏了，无法进门', 'Chinese text arrives intact');
  t.ok(e.sandbox.get('o-xml').received.some((r) => r.method === 'GET' && r.path.startsWith('/services.xml')), 'service list checked at start');
  t.ok(e.sandbox.get('o-disc').received.some((r) => r.path === '/discovery.xml'), 'discovery document read at start');
  t.match(e.sandbox.get('o-disc').received.find((r) => r.method === 'POST')!.path, /^\/requests\.json$/, 'the format discovery offered');
  t.ok(e.sandbox.get('o-disc').tickets.has(d.remoteTicketId));
});

/** A sandbox Open311 platform and a client for discover(), closed when the test ends. */
async function discoveryEnv(t: Test, opts: Omit<SandboxPlatformOptions, 'id' | 'kind'>) {
  const sandbox = await startSandbox({ platforms: [{ id: 'o', kind: 'open311', ...opts }] });
  t.teardown(() => sandbox.close());
  const url = sandbox.get('o').url;
  const agent = createAgent(DEFAULT_TIMEOUTS);
  t.teardown(() => agent.close());
  return { sandbox, url, agent, client: new PlatformClient('o', url, agent, { type: 'none' }, DEFAULT_TIMEOUTS) };
}

t.test('discovery: a discovery document on another host is fetched without the platform\'s credentials', async (t) => {
  const { sandbox, url, agent } = await discoveryEnv(t, { open311Services: ['GENERAL'] });
  const seen: { path?: string; authorization?: string }[] = [];
  const other = createServer((req, res) => {
    seen.push({ path: req.url, authorization: req.headers.authorization });
    res.writeHead(200, { 'content-type': 'text/xml' }).end('<?xml version="1.0" encoding="utf-8"?><discovery><endpoints/></discovery>');
  });
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
  t.teardown(() => other.close());
  const elsewhere = `http://127.0.0.1:${(other.address() as AddressInfo).port}/discovery.xml`;
  const client = new PlatformClient('o', url, agent, { type: 'bearer', token: 'platform-secret' }, DEFAULT_TIMEOUTS);
  await discover({ id: 'o', url, options: { apiKey: 'k', defaultServiceCode: 'GENERAL', discoveryUrl: elsewhere }, adapter: open311, client });
  t.equal(seen.length, 1, 'the discovery document was read');
  t.equal(seen[0].authorization, undefined, 'no bearer token sent to another origin');
  const own = sandbox.get('o').received.find((r) => r.path.startsWith('/services'));
  t.equal(own?.headers.authorization, 'Bearer platform-secret', 'the platform itself still gets its credentials');
});

/** The fenliu CLI as users run it: exit code and stdout. */
function runCli(args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    const c = cli(args);
    execFile(c.command, c.args, { cwd: ROOT, env: childEnv(), timeout: 60_000 }, (err, stdout) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout }));
  });
}

t.test('discovery: a configured service code the platform does not list is a warning', async (t) => {
  const { url, agent, client } = await discoveryEnv(t, { open311Services: ['GENERAL', 'META'] });
  const options = { apiKey: 'k', defaultServiceCode: 'GENERAL', serviceCodes: { 'assist.*': 'LOCK-99' } };
  const report = (await discover({ id: 'o', url, options, adapter: open311, client }))!;
  t.equal(report.warnings.length, 1);
  t.match(report.warnings[0], /service_code "LOCK-99" is configured but the platform does not list it/);
  t.match(report.info[0], /2 services \(GENERAL, META\)/);
  t.notOk(report.defaults, 'no discovery document: no format decided (XML stays)');
  const json = (await discover({ id: 'o', url, options: { ...options, format: 'json', serviceCodes: {} }, adapter: open311, client }))!;
  t.same(json.warnings, [], 'GET services.json read too');
  const down = (await discover({ id: 'o', url: 'http://127.0.0.1:9/', options, adapter: open311, client: new PlatformClient('o', 'http://127.0.0.1:9/', agent, { type: 'none' }, DEFAULT_TIMEOUTS) }))!;
  t.match(down.warnings[0], /no answer/, 'an unreachable platform is a warning, not a crash');

  // What users run: `fenliu adapter test adapters/open311 --url ...`.
  const out = await runCli(['adapter', 'test', 'adapters/open311', '--url', url, '--options', JSON.stringify(options)]);
  t.equal(out.code, 0, 'conformance passes; discovery findings are warnings');
  t.match(out.stdout, /discovery against http:\/\/127\.0\.0\.1:\d+:/);
  t.match(out.stdout, /WARN service_code "LOCK-99" is configured but the platform does not list it/);
});

t.test('at start: a configured service code the platform does not offer is a logged warning', async (t) => {
  const sandbox = await startSandbox({ platforms: [{ id: 'o', kind: 'open311', open311Services: ['GENERAL'], open311Required: { GENERAL: { AREA: 'Area' } } }] });
  t.teardown(() => sandbox.close());
  const logs = new LogCapture();
  const f = await startTestFenliu({
    redisUrl: redis.url,
    role: 'all',
    logStream: logs,
    cfg: testConfig({
      redis: { prefix: `o311start${process.pid}` },
      platforms: [{ id: 'o', adapter: 'open311', url: sandbox.get('o').url, options: { apiKey: 'k', defaultServiceCode: 'GENERAL', serviceCodes: { 'assist.*': 'LOCK-99' } } }],
      routes: [{ id: 'default', default: true, targets: ['o'] }],
    }),
  });
  t.teardown(() => f.stop());
  const warn = logs.lines.map((l) => JSON.parse(l) as { level: number; msg: string; platformId?: string }).find((l) => /LOCK-99/.test(l.msg));
  t.ok(warn, 'warned before the first delivery');
  t.match(warn, { level: 40, platformId: 'o', msg: /service_code "LOCK-99" is configured but the platform does not list it/ });
  t.notOk(logs.text.includes('"GENERAL" is configured but'), 'a listed code is not warned about');
  t.ok(
    logs.lines.some((l) => /service_code "GENERAL" requires attribute "AREA"/.test((JSON.parse(l) as { msg: string }).msg)),
    'an unmapped required attribute is warned about at start',
  );
});

t.test('service definitions: required attributes not mapped are warned of (discover, adapter test, fenliu send)', async (t) => {
  // GeoReport v2 "GET Service Definition": a service listed with metadata=true defines attributes;
  // those with variable and required true must be sent, or the server refuses the request.
  const { sandbox, url, agent, client } = await discoveryEnv(t, { open311Services: ['GENERAL', 'WATER-LEAK'], open311Required: { 'WATER-LEAK': { REGION: '行政区划代码', FLOOR: 'Floor' } } });
  const base = { apiKey: 'k', defaultServiceCode: 'GENERAL', serviceCodes: { 'utility.*': 'WATER-LEAK' } };
  const partly = { ...base, attributes: { 'WATER-LEAK': { REGION: 'location.regionCode' } } };
  const full = { ...base, attributes: { 'WATER-LEAK': { REGION: 'location.regionCode', FLOOR: { value: '1' } } } };

  for (const format of ['xml', 'json'] as const) {
    const r = (await discover({ id: 'o', url, options: { ...partly, format }, adapter: open311, client }))!;
    t.same(r.warnings.length, 1, `${format}: one unmapped required attribute`);
    t.match(r.warnings[0], /service_code "WATER-LEAK" requires attribute "FLOOR" \(Floor\), which options\.attributes\["WATER-LEAK"\] does not map/);
    t.match(r.info, [/services/, new RegExp(`GET /services/WATER-LEAK\\.${format}: 2 required attribute\\(s\\) \\(REGION, FLOOR\\)`)]);
  }
  const none = (await discover({ id: 'o', url, options: base, adapter: open311, client }))!;
  t.equal(none.warnings.length, 2, 'both unmapped');
  t.same((await discover({ id: 'o', url, options: full, adapter: open311, client }))!.warnings, [], 'all mapped: no warning');
  t.notOk(sandbox.get('o').received.some((r) => r.path.startsWith('/services/GENERAL')), 'a service without metadata is not asked for its definition');
  const broken = (await discover({ id: 'o', url: 'http://127.0.0.1:9/', options: base, adapter: open311, client: new PlatformClient('o', 'http://127.0.0.1:9/', agent, { type: 'none' }, DEFAULT_TIMEOUTS) }))!;
  t.equal(broken.warnings.length, 1, 'no service list: no definitions asked for, one warning');
  t.same(open311.discovery!.read([{ request: { method: 'GET', path: '/services/WATER-LEAK.xml' }, response: { status: 200, headers: {}, body: '<nothing/>' } }], { platform: { id: 'o', url, config: base } }).warnings, [
    'GET /services/WATER-LEAK.xml: the answer is not a GeoReport service definition; its required attributes were not checked',
  ]);

  const work = mkdtempSync(join(tmpdir(), 'fenliu-o311-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const alertFile = join(work, 'leak.json');
  writeFileSync(alertFile, JSON.stringify(sampleAlerts.confidentialLeak));
  const config = (options: object) => {
    const file = join(work, `${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(
      file,
      JSON.stringify({
        log: { level: 'silent' },
        sources: [{ id: 'hubei-huangshi-110', keys: [{ sha256: '0'.repeat(64) }] }],
        // discovery.xml offers JSON: `fenliu send` takes the format from it, as start does.
        platforms: [{ id: 'o', adapter: 'open311', url, options: { ...options, discoveryUrl: 'discovery.xml' } }],
        routes: [{ id: 'default', default: true, targets: ['o'] }],
      }),
    );
    return file;
  };
  const [kit, refused, sent, notObject] = await Promise.all([
    runCli(['adapter', 'test', 'adapters/open311', '--url', url, '--options', JSON.stringify(partly)]),
    runCli(['send', alertFile, '--to', 'o', '--config', config(partly)]),
    runCli(['send', alertFile, '--to', 'o', '--config', config(full)]),
    runCli(['adapter', 'test', 'adapters/open311', '--url', url, '--options', 'null']),
  ]);
  t.equal(notObject.code, 2, '--options that is not an object is a usage error, not a crash');
  t.equal(kit.code, 0, 'adapter test: findings are warnings');
  t.match(kit.stdout, /WARN service_code "WATER-LEAK" requires attribute "FLOOR"/);
  t.equal(refused.code, 1, 'send without the required attribute: exit 1');
  t.match(refused.stdout, /WARN platform discovery: service_code "WATER-LEAK" requires attribute "FLOOR"/, 'send warns before sending');
  t.match(refused.stdout, /> POST \S+\/requests\.json/, 'send uses the format discovery found');
  t.match(refused.stdout, /attribute\[FLOOR\] was not provided/, 'and the server refuses what was warned of');
  t.equal(sent.code, 0, 'send with every required attribute: exit 0');
  t.notMatch(sent.stdout, /WARN/);
  t.match(sent.stdout, /> POST \S+\/requests\.json/);
  t.match(sent.stdout, /= delivered: ticket \S+/);
});
