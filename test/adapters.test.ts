import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { sampleAlerts } from '../adapters/common.js';
import { conformanceContext, formatResults, goldenFile, runConformance, runGuarded, type CheckResult } from '../adapters/conformance.js';
import hotline from '../adapters/hotline-12345/index.js';
import { builtinAdapters, loadAdapter } from '../adapters/index.js';
import open311, { DESCRIPTION_MAX, splitName } from '../adapters/open311/index.js';
import { defineAdapter, type Adapter, type Alert, type TranslateContext } from '../adapters/sdk.js';
import webhook, { evaluate, type WebhookConfig } from '../adapters/webhook/index.js';

const ADAPTERS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'adapters');

function ctxFor<C>(adapter: Adapter<C>, config: C = adapter.exampleConfig, extra: Partial<TranslateContext<C>> = {}): TranslateContext<C> {
  return { ...conformanceContext, platform: { id: 'test-platform', config }, ...extra } as TranslateContext<C>;
}

function failures(results: CheckResult[]): CheckResult[] {
  return results.filter((r) => !r.ok);
}

t.test('every built-in adapter passes the conformance suite', async (t) => {
  t.same(Object.keys(builtinAdapters).sort(), ['city-ops', 'feedback-110', 'grid-governance', 'hotline-12345', 'open311', 'webhook']);
  for (const [id, adapter] of Object.entries(builtinAdapters)) {
    await t.test(id, async (t) => {
      t.ok((adapter.fixtures ?? []).length >= 2, 'at least two fixtures');
      const results = await runConformance(adapter, { goldenDir: join(ADAPTERS_DIR, id, 'golden') });
      t.ok(results.length >= 20, `ran ${results.length} checks`);
      t.ok(results.some((r) => r.name.endsWith('matches golden')), 'golden files were compared');
      for (const r of results) t.ok(r.ok, r.message ? `${r.name} — ${r.message}` : r.name);
    });
  }
});

t.test('hotline-12345', async (t) => {
  await t.test('a confidential caller (是否保密) is neither named nor reachable', async (t) => {
    const out = hotline.translate(sampleAlerts.confidentialLeak, ctxFor(hotline)).body as Record<string, unknown>;
    t.equal(out.是否保密, '是');
    t.notOk('来电人' in out, 'no 来电人');
    t.notOk('联系电话' in out, 'no 联系电话');
    t.notMatch(JSON.stringify(out), /王五|138-0013-8001/, 'name and phone appear nowhere in the body');
    const open = hotline.translate(sampleAlerts.noodleShop, ctxFor(hotline)).body as Record<string, unknown>;
    t.equal(open.来电人, '张三');
    t.equal(open.联系电话, '13800138000');
    t.equal(open.是否保密, '否');
  });

  await t.test('field mapping', async (t) => {
    const out = hotline.translate(sampleAlerts.noodleShop, ctxFor(hotline)).body as Record<string, unknown>;
    t.equal(out.外部编号, 'dlv_test_0001');
    t.equal(out.关联警情号, 'HS20261129000123');
    t.equal(out.受理时间, conformanceContext.now);
    t.equal(out.办理时限, conformanceContext.interveneBy);
    t.equal(out.紧急程度, '一般');
    t.equal(out.转办单位, '黄石市公安局110指挥中心');
    t.match(out.诉求内容, /米粉店[\s\S]*异物[\s\S]*民警研判：属消费纠纷/);
    const code = (category: string) =>
      (hotline.translate({ ...sampleAlerts.minimal, category }, ctxFor(hotline)).body as Record<string, unknown>).诉求类型;
    t.equal(code('dispute.debt'), '0305', 'exact code wins over the prefix');
    t.equal(code('dispute.family'), '0301', 'prefix dispute.*');
    t.equal(code('fraud.phone'), '9999', 'default');
    const noUnit = hotline.translate(sampleAlerts.minimal, ctxFor(hotline, { defaultCategoryCode: 'X' })).body as Record<string, unknown>;
    t.equal(noUnit.转办单位, 'hubei-huangshi-110', '转办单位 falls back to the 110 system');
    const urgent = hotline.translate(sampleAlerts.confidentialLeak, ctxFor(hotline)).body as Record<string, unknown>;
    t.equal(urgent.紧急程度, '紧急');
  });

  await t.test('follow-ups address the ticket and need one', async (t) => {
    const ctx = ctxFor(hotline, hotline.exampleConfig, { delivery: { id: 'dlv_1', alertId: 'alt_1', remoteTicketId: 'GD202611290001' } });
    t.equal(hotline.translateCancel!(sampleAlerts.minimal, ctx, '已自行解决').path, '/api/workorders/GD202611290001/cancel');
    t.equal(hotline.translateUrge!(sampleAlerts.minimal, ctx, { alertId: 'A2', reportedAt: '2026-11-29T12:00:00Z', summary: 's' }).path, '/api/workorders/GD202611290001/urge');
    t.equal(hotline.translateUpdate!(sampleAlerts.minimal, ctx).path, '/api/workorders/GD202611290001/supplement');
    t.throws(() => hotline.translateCancel!(sampleAlerts.minimal, ctxFor(hotline), 'x'), /ticket id/);
  });

  await t.test('business codes listed in retryCodes are retried', async (t) => {
    const ctx = ctxFor(hotline, { ...hotline.exampleConfig, retryCodes: [5003] });
    const busy = hotline.interpretResponse({ status: 200, headers: {}, body: '{"code":5003,"msg":"系统繁忙"}' }, ctx);
    t.equal(busy.outcome, 'retry');
    t.match(busy.reason, /系统繁忙/);
  });

  await t.test('callback times without offset are Beijing time', async (t) => {
    const [ev] = hotline.parseCallback!({ headers: {}, body: JSON.stringify({ 工单编号: 'GD1', 工单状态: '办结', 时间: '2026-11-29 16:30:00' }) }, { platform: { id: 'p', config: hotline.exampleConfig }, now: conformanceContext.now });
    t.equal(ev.at, '2026-11-29T08:30:00.000Z');
    t.equal(ev.eventId, 'GD1:办结:2026-11-29T08:30:00.000Z', 'derived event id is deterministic');
    t.same(hotline.parseCallback!({ headers: {}, body: JSON.stringify({ 工单编号: 'GD1', 工单状态: '派单' }) }, { platform: { id: 'p', config: hotline.exampleConfig }, now: conformanceContext.now }), [], '派单 has no canonical state');
  });
});

t.test('open311', async (t) => {
  await t.test('description is cut to 4000 characters, never inside a surrogate pair', async (t) => {
    const alert: Alert = { ...sampleAlerts.minimal, summary: '漏', description: '😀'.repeat(5000) };
    const body = open311.translate(alert, ctxFor(open311)).body as Record<string, string>;
    t.equal(Array.from(body.description).length, DESCRIPTION_MAX);
    t.notMatch(body.description.slice(-1), /[\uD800-\uDBFF]$/, 'no lone high surrogate at the end');
  });

  await t.test('form body: flat strings, lat/long for WGS84 and the address too, address only for GCJ-02', async (t) => {
    const req = open311.translate(sampleAlerts.confidentialLeak, ctxFor(open311));
    t.equal(req.contentType, 'application/x-www-form-urlencoded; charset=utf-8', 'the spec\'s POST content type, charset included');
    t.equal(req.path, '/requests.xml', 'XML, the format every GeoReport v2 server has, by default');
    const body = req.body as Record<string, unknown>;
    t.ok(Object.values(body).every((v) => typeof v === 'string'), 'all values are strings');
    t.equal(body.lat, '30.2');
    t.equal(body.long, '115.1');
    t.equal(body.address_string, sampleAlerts.confidentialLeak.location.address, 'address sent with the coordinates, as the spec example does');
    t.equal(body.service_code, 'WATER-LEAK');
    t.equal(body.media_url, 'https://110.example.gov.cn/media/1.jpg');
    t.notOk('first_name' in body || 'last_name' in body || 'phone' in body, 'confidential caller stays out');
    const gcj = open311.translate(sampleAlerts.noodleShop, ctxFor(open311)).body as Record<string, string>;
    t.notOk('lat' in gcj, 'GCJ-02 coordinates are not sent as WGS84');
    t.equal(gcj.address_string, sampleAlerts.noodleShop.location.address);
    t.equal(gcj.last_name, '张');
    t.equal(gcj.first_name, '三');
    const form = new URLSearchParams(gcj).toString();
    t.match(form, /^api_key=demo-open311-key&service_code=CONSUMER&/);
    const stripped = open311.translate({ ...sampleAlerts.minimal, category: 'dispute.neighbor' }, ctxFor(open311)).body as Record<string, string>;
    t.equal(stripped.service_code, 'MEDIATION', 'prefix dispute.*');
    t.notOk('phone' in stripped || 'first_name' in stripped, 'minimised alert: no contact fields');
    t.same(splitName('John Smith'), { first_name: 'John', last_name: 'Smith' });
  });

  await t.test('token answers and polling', async (t) => {
    const i = open311.interpretResponse({ status: 200, headers: {}, body: '[{"token":"12345"}]' }, ctxFor(open311));
    t.same(i, { outcome: 'delivered', pendingToken: '12345' });
    const reqs = open311.poll!.requests({
      platform: { id: 'p', config: { ...open311.exampleConfig, pollBatchSize: 2 } },
      now: conformanceContext.now,
      deliveries: [
        { id: 'd1', remoteTicketId: 'a' },
        { id: 'd2', remoteTicketId: 'b' },
        { id: 'd3', remoteTicketId: 'c' },
        { id: 'd4', pendingToken: 'tok' },
      ],
    });
    const accept = { accept: 'text/xml' };
    t.same(reqs, [
      { method: 'GET', path: '/requests.xml', headers: accept, query: { service_request_id: 'a,b' } },
      { method: 'GET', path: '/requests.xml', headers: accept, query: { service_request_id: 'c' } },
      { method: 'GET', path: '/tokens/tok.xml', headers: accept },
    ]);
    const events = open311.poll!.parse(
      { status: 200, headers: {}, body: JSON.stringify([{ service_request_id: 'a', status: 'closed', status_notes: 'done', updated_datetime: '2026-11-29T10:00:00+08:00' }]) },
      { platform: { id: 'p', config: open311.exampleConfig }, now: conformanceContext.now, deliveries: [{ id: 'd1', remoteTicketId: 'a' }] },
    );
    t.same(events, [{ eventId: 'a:closed:2026-11-29T02:00:00.000Z', state: 'resolved', at: '2026-11-29T02:00:00.000Z', remoteTicketId: 'a', deliveryId: 'd1', note: 'done' }]);
  });
});

t.test('webhook', async (t) => {
  const cfg = webhook.exampleConfig;
  await t.test('mapping follows the config', async (t) => {
    const body = webhook.translate(sampleAlerts.noodleShop, ctxFor(webhook)).body as Record<string, unknown>;
    t.equal(body.ref, 'dlv_test_0001', '$delivery.id');
    t.equal(body.kind, 'OTHER', 'map default');
    t.equal(body.title, `${sampleAlerts.noodleShop.summary} @ ${sampleAlerts.noodleShop.location.address}`, 'template');
    t.same(body.contact, { name: '张三', phone: '13800138000' });
    t.same(body.people, [{ role: 'merchant', phone: '13900139000' }, { role: 'customer', phone: '13800138000' }], 'each');
    t.equal(body.schema, 'jobs/v1', 'const');
    const unlock = webhook.translate(sampleAlerts.minimal, ctxFor(webhook)).body as Record<string, unknown>;
    t.equal(unlock.kind, 'UNLOCK', 'map exact');
    t.notOk('people' in unlock && (unlock.people as unknown[]).length, 'no parties, no people');
    t.equal(unlock.text, sampleAlerts.minimal.summary, 'join skips missing parts');
    t.same(unlock.where, { address: sampleAlerts.minimal.location.address, region: '420202003' }, 'absent coordinates are left out');
    const leak = webhook.translate(sampleAlerts.confidentialLeak, ctxFor(webhook)).body as Record<string, unknown>;
    t.notOk('contact' in leak, 'unless: caller.confidential drops the contact, and the empty object with it');
    t.equal(leak.kind, 'REPAIR', 'map prefix utility.*');
    t.equal(leak.urgent, true);
  });

  await t.test('path placeholders are URL-encoded; config stays out of reach', async (t) => {
    const c: WebhookConfig = { path: '/x/{{source.alertId}}/{{$delivery.id}}', mapping: { key: { path: '$platform.config' }, k2: { template: '{{$platform.config.path}}' } } };
    const req = webhook.translate({ ...sampleAlerts.minimal, source: { system: 's', alertId: 'A/B C' } }, ctxFor(webhook, c));
    t.equal(req.path, '/x/A%2FB%20C/dlv_test_0001');
    t.same(req.body, { k2: '' }, 'platform config (secrets) is not readable from a mapping');
    t.same(evaluate({ const: { path: 'literal' } }, { item: {}, alert: sampleAlerts.minimal, ctx: {} }), { path: 'literal' }, 'const escapes directive keys');
    t.equal(evaluate({ path: 'summary', maxLength: 2 }, { item: sampleAlerts.minimal, alert: sampleAlerts.minimal, ctx: {} }), '住户');
  });

  await t.test('response and callback paths', async (t) => {
    t.same(webhook.outputSchemaFor!(cfg), cfg.outputSchema);
    t.same(webhook.outputSchemaFor!({ path: '/' }), { type: 'object' });
    const fire = webhook.interpretResponse({ status: 204, headers: {}, body: '' }, ctxFor(webhook, { path: '/' }));
    t.same(fire, { outcome: 'delivered' }, 'without ticketIdPath any 2xx is delivered');
    const rej = webhook.interpretResponse({ status: 400, headers: {}, body: '{"error":{"message":"bad kind"}}' }, ctxFor(webhook));
    t.same(rej, { outcome: 'reject', reason: 'HTTP 400: bad kind' });
    t.throws(() => webhook.parseCallback!({ headers: {}, body: '{"state":"WHATEVER","jobId":"1"}' }, { platform: { id: 'p', config: cfg }, now: conformanceContext.now }), /not in options\.callback\.stateMap/);
  });
});

t.test('the suite catches broken adapters with a precise message', async (t) => {
  const base = {
    version: '0.1.0',
    configSchema: { type: 'object' },
    outputSchema: { type: 'object', required: ['ticket'], properties: { ticket: { type: 'string' } } },
    exampleConfig: {},
    fixtures: [{ name: 'minimal', alert: sampleAlerts.minimal }],
    samples: { accepted: { response: { status: 200, headers: {}, body: '{"id":"1"}' }, remoteTicketId: '1' } },
    interpretResponse: (res: { status: number; body: string }) =>
      res.status >= 500 || res.status === 429
        ? { outcome: 'retry' as const }
        : res.status >= 400
          ? { outcome: 'reject' as const, reason: 'bad' }
          : res.body.startsWith('{"id"')
            ? { outcome: 'delivered' as const, remoteTicketId: '1' }
            : { outcome: 'retry' as const },
  };
  const failed = async (adapter: Adapter<any>, name: RegExp, message: RegExp) => {
    const results = await runConformance(adapter);
    const bad = failures(results);
    const hit = bad.find((r) => name.test(r.name));
    t.ok(hit, `a check named ${name} fails`, hit ? {} : { diagnostic: true, results: formatResults(results) });
    t.match(hit?.message, message);
    return bad;
  };

  const realDate = Date;
  await failed(
    defineAdapter({ ...base, id: 'uses-clock', translate: () => ({ method: 'POST', path: '/x', body: { ticket: new Date(Date.now()).toISOString() } }) }),
    /fixture minimal: translate is pure/,
    /impure: called Date\.now\(\) \/ new Date\(\) \(use ctx\.now\)/,
  );
  await failed(
    defineAdapter({ ...base, id: 'new-date', translate: () => ({ method: 'POST', path: '/x', body: { ticket: new Date().toISOString() } }) }),
    /translate is pure/,
    /Date/,
  );
  await failed(
    defineAdapter({
      ...base,
      id: 'hides-random',
      translate: () => {
        let ticket = 'x';
        try {
          ticket = String(Math.random());
        } catch {
          // an adapter swallowing the trap is still caught
        }
        return { method: 'POST', path: '/x', body: { ticket } };
      },
    }),
    /translate is pure/,
    /Math\.random\(\)/,
  );
  await failed(
    defineAdapter({ ...base, id: 'does-io', translate: () => (void fetch('http://127.0.0.1:1/'), { method: 'POST', path: '/x', body: { ticket: 'x' } }) }),
    /translate is pure/,
    /fetch\(\)/,
  );
  await failed(
    defineAdapter({ ...base, id: 'bad-output', translate: () => ({ method: 'POST', path: '/x', body: { ticket: 5 } }) }),
    /fixture minimal: body matches outputSchema/,
    /\/ticket must be string/,
  );
  await failed(
    defineAdapter({ ...base, id: 'trusts-2xx', translate: () => ({ method: 'POST', path: '/x', body: { ticket: 'x' } }), interpretResponse: () => ({ outcome: 'delivered' as const }) }),
    /2xx HTML → retry/,
    /outcome delivered, expected retry/,
  );
  await failed(
    defineAdapter({
      ...base,
      id: 'crashy-callback',
      translate: () => ({ method: 'POST', path: '/x', body: { ticket: 'x' } }),
      parseCallback: (input) => [{ eventId: (JSON.parse(input.body) as { a: { b: string } }).a.b, state: 'accepted' as const, at: '2026-11-29T00:00:00Z', remoteTicketId: 'x' }],
      samples: { ...base.samples, callbacks: [{ input: { headers: {}, body: '{"a":{"b":"e1"}}' }, states: ['accepted'] }] },
    }),
    /parseCallback: garbage/,
    /crashed on "null": TypeError/,
  );
  await failed(defineAdapter({ ...base, id: 'Not_Kebab', translate: () => ({ method: 'POST', path: '/x', body: { ticket: 'x' } }) }), /id is kebab-case/, /Not_Kebab/);

  t.equal(globalThis.Date, realDate, 'Date restored');
  t.type(Date.now(), 'number', 'Date.now works again');
  t.type(Math.random(), 'number', 'Math.random works again');
  t.type(globalThis.fetch, 'function');
  t.same(runGuarded(() => 1 + 1), { value: 2, error: undefined, violations: [] });
});

t.test('golden mismatch names the file and the JSON pointer', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fenliu-golden-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fixtures = hotline.fixtures!;
  for (const f of fixtures) {
    const src = goldenFile(join(ADAPTERS_DIR, 'hotline-12345', 'golden'), f);
    writeFileSync(goldenFile(dir, f), readFileSync(src, 'utf8').replace('"紧急程度": "一般"', '"紧急程度": "紧急"'));
  }
  const bad = failures(await runConformance(hotline, { goldenDir: dir }));
  t.ok(bad.length >= 1);
  t.match(bad[0].name, /matches golden/);
  t.match(bad[0].message, /\/body\/紧急程度: expected "紧急", got "一般"/);
});

t.test('loadAdapter', async (t) => {
  t.equal(await loadAdapter('open311', '/nowhere'), open311);
  await t.rejects(loadAdapter('nope', '/nowhere'), /unknown adapter "nope": not a built-in \(hotline-12345, grid-governance, city-ops, open311, webhook, feedback-110\)/);
  const dir = mkdtempSync(join(tmpdir(), 'fenliu-adapter-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(
    join(dir, 'locksmith.mjs'),
    `export default { id: 'locksmith', version: '1.0.0', configSchema: {type:'object'}, outputSchema: {type:'object'}, exampleConfig: {},
      translate: (a) => ({ method: 'POST', path: '/jobs', body: { text: a.summary } }),
      interpretResponse: () => ({ outcome: 'delivered' }) };\n`,
  );
  writeFileSync(join(dir, 'broken.mjs'), `export default { id: 'Broken', version: '1', translate: 1 };\n`);
  const mod = await loadAdapter('./locksmith.mjs', dir);
  t.equal(mod.id, 'locksmith');
  await t.rejects(loadAdapter('./broken.mjs', dir), /is not a valid adapter: id must be a kebab-case string; version must be semver/);
  await t.rejects(loadAdapter('./missing.mjs', dir), /cannot import/);
});

t.test('grid-governance: a confidential caller who is also a party keeps only the role', async (t) => {
  const grid = builtinAdapters['grid-governance'];
  const fixture = grid.fixtures!.find((f) => f.name === 'confidential-caller-is-a-party')!;
  const body = grid.translate(fixture.alert, { ...conformanceContext, platform: { id: 'p', config: grid.exampleConfig } }).body as { 当事人: Record<string, string>[] };
  t.same(body.当事人, [{ 角色: '商户', 姓名: '李四', 联系电话: '13900139000' }, { 角色: '顾客' }]);
  t.notMatch(JSON.stringify(body), /张三|13800138000|42020419900101123X/);
});
