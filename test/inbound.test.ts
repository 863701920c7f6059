/**
 * Inbound standards: EIDO JSON, CAP 1.2 XML and vendor JSON, normalised into alert.v1 and taken
 * through the same ingest path as native alerts. Unit checks of the normalisers, then real HTTP
 * against fenliu on a private Redis.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { circleCentre, normaliseCap, parseCap, polygonCentroid } from '../src/inbound/cap.js';
import { DEFAULT_CAP_CATEGORIES, DEFAULT_EIDO_CATEGORIES } from '../src/inbound/categories.js';
import { block, mapErrors, normaliseWhitespace, oneLine, stableAlertId, tooDeep } from '../src/inbound/common.js';
import { normaliseEido } from '../src/inbound/eido.js';
import { normaliseVendor } from '../src/inbound/vendor.js';
import { validateAlert } from '../src/ingest/validate.js';
import { ProblemError } from '../src/errors.js';
import { api, KEYS, ROOT, SOURCE_A, startTestFenliu, testConfig, type TestFenliu } from './helpers/fenliu.js';
import { startRedis, type TestRedis } from './helpers/redis.js';

const FIX = join(ROOT, 'test', 'fixtures', 'inbound');
const text = (name: string) => readFileSync(join(FIX, name), 'utf8');
const json = (name: string) => JSON.parse(text(name)) as Record<string, any>;

/** A vendor CAD format (Chinese pinyin initials, as many 110 systems use) mapped declaratively. */
const VENDOR_MAPPING = {
  source: { alertId: { path: 'jqbh' } },
  reportedAt: { path: 'bjsj' },
  category: { map: { path: 'jqlb', table: { KS01: 'consumer.refund', KS02: 'dispute.property-management', KS09: 'violence.assault' } } },
  summary: { path: 'jyjq', maxLength: 200 },
  location: { address: { path: 'fadz.text' }, regionCode: { path: 'fadz.xzqh' } },
  caller: { name: { path: 'bjr.xm' }, phone: { path: 'bjr.dh' }, confidential: { path: 'bjr.bm' } },
  police: { unit: { path: 'cjdw' } },
};

const opts = { sourceId: SOURCE_A, regionCode: '420204', maxDepth: 64 };

t.test('EIDO: the call-transfer-shaped fixture normalises to the expected alert', async (t) => {
  const n = normaliseEido(json('eido-noodle-shop.json'), { ...opts, table: DEFAULT_EIDO_CATEGORIES });
  t.same(n.issues, []);
  t.match(n.alert, {
    source: { system: SOURCE_A, alertId: 'HS20261129000123' },
    reportedAt: '2026-11-29T01:12:00.0Z',
    category: 'consumer.refund',
    summary: '米粉店消费纠纷，顾客要求退款',
    location: { address: '湖北省黄石市下陆区杭州西路88号 米粉店', regionCode: '420204', lat: 30.2011, lon: 115.0389, crs: 'WGS84' },
    caller: { phone: '13800000000', name: '王女士' },
    extensions: { eido: { eidoVersion: '1.0', incidentType: { registry: 'Police/Civil/Consumer', internalText: '消费纠纷' }, callType: 'emergency' } },
  });
  t.match(n.alert.description, /同意调解/, 'notes are followed through notesReference, HTML stripped, entities decoded');
  t.ok(validateAlert(structuredClone(n.alert)).ok, 'valid alert.v1');
  t.equal(n.pointers['/caller/phone'], '/callbackComponent/0/callBackInformationUri/1', 'caller callback followed via $ref');
});

t.test('EIDO: unmapped data, dangling $refs, unknown incident types', async (t) => {
  const d = normaliseEido(json('eido-dangling-ref.json'), { ...opts, table: DEFAULT_EIDO_CATEGORIES });
  t.same(
    d.issues.map((i) => i.pointer),
    ['/incidentComponent/0/locationReference/0/$ref', '/callComponent/0/callBackReference/$ref'],
    'each dangling $ref is named by a pointer into the EIDO',
  );
  const doc = json('eido-noodle-shop.json');
  doc.incidentComponent[0].incidentTypeCommonRegistryText = 'EMS/Cardiac';
  const u = normaliseEido(doc, { ...opts, table: DEFAULT_EIDO_CATEGORIES });
  t.match(u.issues, [{ pointer: '/incidentComponent/0/incidentTypeCommonRegistryText', message: /EMS\/Cardiac.*inbound\.categories\.eido/, field: '/category' }]);
  const parent = json('eido-noodle-shop.json');
  parent.incidentComponent[0].incidentTypeCommonRegistryText = 'Police/Disturbance/Noise/Music';
  t.equal(normaliseEido(parent, { ...opts, table: DEFAULT_EIDO_CATEGORIES }).alert.category, 'nuisance.noise', 'a parent entry covers its children');
  const custom = normaliseEido(json('eido-noodle-shop.json'), { ...opts, table: { ...DEFAULT_EIDO_CATEGORIES, 'Police/Civil/Consumer': 'consumer.food-safety' } });
  t.equal(custom.alert.category, 'consumer.food-safety', 'config overrides the default table');
});

t.test('CAP: the fixture normalises; Update and Cancel name what they follow up', async (t) => {
  const n = normaliseCap(parseCap(text('cap-noise.xml'), 64), { sourceId: SOURCE_A, table: DEFAULT_CAP_CATEGORIES, maxDepth: 64 });
  t.same(n.issues, []);
  t.match(n.alert, {
    source: { system: SOURCE_A, alertId: 'HS-CAP-20261129-0007' },
    reportedAt: '2026-11-29T22:40:00+08:00',
    category: 'nuisance.noise',
    summary: '楼上装修深夜施工，噪声扰民',
    description: '报警人称楼上住户22时后仍在装修施工 & 多次沟通无果。民警到场劝停。',
    location: { address: '湖北省黄石市下陆区团城山街道桂林北路12号3栋', regionCode: '420204', lat: 30.2101, lon: 115.0402 },
    caller: { phone: '13900000000' },
    police: { unit: '下陆区公安分局团城山派出所', sceneStatus: 'controlled' },
    extensions: { cap: { sender: '110@gaj.huangshi.gov.cn', msgType: 'Alert', parameters: [{ valueName: 'weather', value: 'clear' }] } },
  });
  t.ok(validateAlert(structuredClone(n.alert)).ok);
  t.equal(n.pointers['/location/regionCode'], '/alert/info[0]/area[0]/geocode[1]/value', 'the GB2260 geocode, not the SAME one');
  const up = normaliseCap(parseCap(text('cap-noise-update.xml'), 64), { sourceId: SOURCE_A, table: DEFAULT_CAP_CATEGORIES, maxDepth: 64 });
  t.same(up.action, { kind: 'update', references: ['HS-CAP-20261129-0007'], pointer: '/alert/references' });
  const cancel = normaliseCap(parseCap(text('cap-noise-cancel.xml'), 64), { sourceId: SOURCE_A, table: DEFAULT_CAP_CATEGORIES, maxDepth: 64 });
  t.match(cancel.action, { kind: 'cancel', references: ['HS-CAP-20261129-0007', 'HS-CAP-20261129-0008'], reason: '报警人已与邻居自行协商解决' });
  t.same(cancel.issues, [], 'a Cancel needs no info block');
});

t.test('inbound text, ids and geometry: whitespace, stable keys, polygon and circle points', async (t) => {
  t.equal(oneLine('\n                下陆区团城山派出所\n                '), '下陆区团城山派出所', 'pretty-printing is layout');
  t.equal(oneLine('杭州西路  88号\t米粉店'), '杭州西路 88号 米粉店');
  t.equal(block('  第一行   有空格 \n\n\n\n   第二段\r\n第三行  '), '第一行 有空格\n\n第二段\n第三行', 'descriptions keep line breaks, lose layout');
  const alert: Record<string, any> = { source: { alertId: 'A  B' }, summary: ' 楼上\n  噪声 ', description: ' a \n  b ', location: { address: '\n  桂林北路12号\n  ', regionCode: '420204' }, police: { unit: ' 派出所\n ' }, extensions: { cap: { x: ' kept ' } } };
  normaliseWhitespace(alert);
  t.same(alert, { source: { alertId: 'A  B' }, summary: '楼上 噪声', description: 'a\nb', location: { address: '桂林北路12号', regionCode: '420204' }, police: { unit: '派出所' }, extensions: { cap: { x: ' kept ' } } }, 'free text normalised; ids and extensions as sent');
  t.equal(stableAlertId('KSTO1055887203'), 'KSTO1055887203', 'a short ASCII identifier is the alertId');
  const long = 'NOAA-NWS-ALERTS-MN1261CB03F0E0.BlizzardWarning.1261CB10BF00MN.DLHWSWDLH.5c2cf27b1f56885d61654dc47fa411d5';
  t.match(stableAlertId(long), /^sha256:[0-9a-f]{32}$/);
  t.equal(stableAlertId(long), stableAlertId(long), 'stable: a resend is still idempotent');
  t.match(stableAlertId('黄石-2026-0001'), /^sha256:/, 'non-ASCII identifiers too');
  t.same(polygonCentroid('0,0 0,2 2,2 2,0 0,0'), { lat: 1, lon: 1 }, 'centroid of a square');
  t.same(polygonCentroid('0,0 0,3 3,0 0,0'), { lat: 1, lon: 1 }, 'centroid of a triangle');
  t.same(polygonCentroid('1,1 1,1 1,1 1,1'), { lat: 1, lon: 1 }, 'a ring without area: the vertex mean');
  t.equal(polygonCentroid('91,0 0,1 1,1 91,0'), undefined, 'not coordinates: no point');
  t.same(circleCentre('32.9525,-115.5527 0'), { lat: 32.9525, lon: -115.5527 });
  t.equal(circleCentre('32.9525 -115.5527'), undefined);
});

t.test('CAP: hostile and broken XML is refused before parsing, with a clear code', async (t) => {
  const code = (xml: string) => {
    try {
      parseCap(xml, 64);
      return 'parsed';
    } catch (err) {
      return err instanceof ProblemError ? err.code : `crash: ${(err as Error).message}`;
    }
  };
  t.equal(code(text('cap-xxe.xml')), 'FENLIU_ERR_XML_DOCTYPE');
  t.equal(code(text('cap-billion-laughs.xml')), 'FENLIU_ERR_XML_DOCTYPE');
  t.equal(code(text('cap-malformed.xml')), 'FENLIU_ERR_MALFORMED_XML');
  t.equal(code(`<alert>${'<a>'.repeat(5000)}${'</a>'.repeat(5000)}</alert>`), 'FENLIU_ERR_TOO_DEEP');
  t.equal(code('<alert><identifier>a &amp; b &#x4E2D; &unknown;</identifier></alert>'), 'parsed', 'predefined and numeric entities need no DTD');
  const doc = parseCap('<alert><identifier>a &amp; b &#x4E2D; &unknown;</identifier></alert>', 64) as { alert: { identifier: string } };
  t.equal(doc.alert.identifier, 'a & b 中 &unknown;', 'undeclared entities stay literal text');
});

t.test('pointer mapping and depth guard', async (t) => {
  const m = mapErrors([{ pointer: '/location/regionCode', message: 'is required' }, { pointer: '/priority', message: 'x' }], { root: '/alert', pointers: { '/location': '/alert/info[0]/area[0]' } });
  t.same(m, [
    { pointer: '/alert/info[0]/area[0]', message: 'alert.v1 /location/regionCode: is required', field: '/location/regionCode' },
    { pointer: '/alert', message: 'alert.v1 /priority: x', field: '/priority' },
  ]);
  let deep: unknown = 'x';
  for (let i = 0; i < 100_000; i++) deep = [deep];
  t.equal(tooDeep(deep, 64)?.split('/').length, 65, 'a 100 000-level array is caught at level 64 without recursion');
  t.equal(tooDeep({ a: [{ b: 1 }] }, 64), undefined);
});

t.test('vendor JSON: a declarative mapping in the webhook mapping language', async (t) => {
  const n = normaliseVendor(json('vendor-hs-cad.json'), VENDOR_MAPPING, SOURCE_A);
  t.match(n.alert, { source: { system: SOURCE_A, alertId: 'HS-CAD-77001' }, category: 'dispute.property-management', location: { regionCode: '420204' }, caller: { name: '李先生', confidential: false } });
  t.ok(validateAlert(structuredClone(n.alert)).ok);
  t.equal(n.pointers['/location/regionCode'], '/fadz/xzqh');
  t.equal(n.pointers['/category'], '/jqlb');
});

// ---------------------------------------------------------------------------------------------
// Over HTTP

let redis: TestRedis;
let f: TestFenliu;

t.before(async () => {
  redis = await startRedis();
  const cfg = testConfig();
  cfg.sources[0].inbound = { regionCode: '420204', mapping: VENDOR_MAPPING };
  cfg.repeat = { enabled: false };
  f = await startTestFenliu({ redisUrl: redis.url, cfg });
});
t.teardown(async () => {
  await f?.stop();
  await redis?.stop();
});

const a = () => api(f.url, KEYS.sourceA);

t.test('HTTP: EIDO is accepted (202) and idempotent like a native alert', async (t) => {
  const eido = text('eido-noodle-shop.json');
  const first = await a().post('/v1/alerts', undefined, { raw: eido, contentType: 'application/json' });
  t.equal(first.status, 202, first.text);
  t.match(first.body, { source: { system: SOURCE_A, alertId: 'HS20261129000123' }, route: { ruleId: 'consumer-huangshi', targets: ['p-grid', 'p-12345'] } });
  const again = await a().post('/v1/alerts', undefined, { raw: eido, contentType: 'application/emergency.eido+json' });
  t.equal(again.status, 200, 'same document, other media type: the same alert');
  t.equal(again.headers['idempotent-replayed'], 'true');
  t.equal(again.body.id, first.body.id);
  const view = await a().get(`/v1/alerts/${first.body.id}`);
  t.match(view.body.alert, { category: 'consumer.refund', caller: { phone: '13800000000' }, extensions: { eido: { eidoVersion: '1.0' } } });
  // Same incident id, different content: the idempotency conflict of any alert.
  const changed = json('eido-noodle-shop.json');
  changed.notesComponent[0].notesActionComments = '另一段描述';
  const conflict = await a().post('/v1/alerts', changed);
  t.equal(conflict.status, 409);
  t.equal(conflict.body.code, 'FENLIU_ERR_IDEMPOTENCY_CONFLICT');
});

t.test('HTTP: EIDO errors point into the EIDO', async (t) => {
  const dangling = await a().post('/v1/alerts', json('eido-dangling-ref.json'));
  t.equal(dangling.status, 422);
  t.equal(dangling.body.code, 'FENLIU_ERR_VALIDATION');
  t.match(dangling.body.errors, [{ pointer: '/incidentComponent/0/locationReference/0/$ref', message: /loc-does-not-exist/ }, { pointer: '/callComponent/0/callBackReference/$ref' }]);
  // Source B has no default region: the missing field is reported at the location component.
  const b = json('eido-noodle-shop.json');
  b.incidentComponent[0].internalIncidentId = 'B-1';
  const res = await api(f.url, KEYS.sourceB).post('/v1/alerts', b);
  t.equal(res.status, 422);
  t.match(res.body.errors, [{ pointer: '/locationComponent/0', field: '/location/regionCode', message: /regionCode: is required/ }]);
  const noType = json('eido-noodle-shop.json');
  noType.incidentComponent[0].incidentTypeCommonRegistryText = 'EMS/Cardiac';
  noType.incidentComponent[0].internalIncidentId = 'EMS-1';
  const r2 = await a().post('/v1/alerts', noType);
  t.equal(r2.status, 422);
  t.match(r2.body.errors, [{ pointer: '/incidentComponent/0/incidentTypeCommonRegistryText', field: '/category' }]);
});

t.test('HTTP: CAP Alert → 202, Update → new version, Cancel → cancelled', async (t) => {
  const cap = (xml: string) => a().post('/v1/alerts', undefined, { raw: xml, contentType: 'application/cap+xml; charset=utf-8' });
  const created = await cap(text('cap-noise.xml'));
  t.equal(created.status, 202, created.text);
  t.match(created.body, { source: { alertId: 'HS-CAP-20261129-0007' }, route: { ruleId: 'default', targets: ['p-12345'] } });
  const replay = await cap(text('cap-noise.xml'));
  t.equal(replay.status, 200, 'the same CAP message again is an idempotent replay');
  t.equal(replay.body.id, created.body.id);

  const updated = await cap(text('cap-noise-update.xml'));
  t.equal(updated.status, 200, updated.text);
  t.match(updated.body, { id: created.body.id, inbound: { format: 'cap', action: 'update' } });
  const v = await a().get(`/v1/alerts/${created.body.id}`);
  t.match(v.body.alert, { summary: /施工方已停工/, source: { alertId: 'HS-CAP-20261129-0007' }, extensions: { cap: { identifier: 'HS-CAP-20261129-0008', msgType: 'Update' } } });

  const cancelled = await cap(text('cap-noise-cancel.xml'));
  t.equal(cancelled.status, 200, cancelled.text);
  t.match(cancelled.body, { id: created.body.id, inbound: { action: 'cancel' } });
  t.ok(cancelled.body.deliveries.every((d: { state: string }) => d.state === 'cancelled'), 'every delivery cancelled');

  const orphan = text('cap-noise-cancel.xml').replace(/HS-CAP-20261129-000[78]/g, 'NEVER-SENT').replace('0009', '0010');
  const r = await cap(orphan);
  t.equal(r.status, 200, 'a Cancel of nothing this source sent: nothing to withdraw (docs/integrators.md)');
  t.match(r.body, { status: 'nothing-to-cancel', inbound: { format: 'cap', action: 'cancel', references: ['NEVER-SENT', 'NEVER-SENT'] } });
});

t.test('HTTP: CAP police-only events are refused like any such alert', async (t) => {
  const res = await a().post('/v1/alerts', undefined, { raw: text('cap-amber-alert.xml'), contentType: 'application/cap+xml' });
  t.equal(res.status, 422, res.text);
  t.equal(res.body.code, 'FENLIU_ERR_POLICE_ONLY');
  t.match(res.body.errors, [{ pointer: '/alert/info[0]/event', field: '/category' }]);
});

t.test('HTTP: hostile bodies get a clear 4xx and fenliu keeps serving', async (t) => {
  const cap = (xml: string) => a().post('/v1/alerts', undefined, { raw: xml, contentType: 'application/cap+xml' });
  const xxe = await cap(text('cap-xxe.xml'));
  t.equal(xxe.status, 400);
  t.equal(xxe.body.code, 'FENLIU_ERR_XML_DOCTYPE');
  t.notMatch(xxe.text, /root:/, 'no file content leaks');
  const lol = await cap(text('cap-billion-laughs.xml'));
  t.equal(lol.body.code, 'FENLIU_ERR_XML_DOCTYPE');
  const bad = await cap(text('cap-malformed.xml'));
  t.equal(bad.status, 400);
  t.equal(bad.body.code, 'FENLIU_ERR_MALFORMED_XML');
  t.match(bad.body.errors[0].message, /line 4/);
  const deepXml = await cap(`<alert>${'<x>'.repeat(1000)}${'</x>'.repeat(1000)}</alert>`);
  t.equal(deepXml.body.code, 'FENLIU_ERR_TOO_DEEP');
  const deepJson = await a().post('/v1/alerts', undefined, { raw: `{"eidoVersion":"1.0","x":${'['.repeat(5000)}${']'.repeat(5000)}}`, contentType: 'application/json' });
  t.equal(deepJson.status, 400);
  t.equal(deepJson.body.code, 'FENLIU_ERR_TOO_DEEP');
  t.match(deepJson.body.errors[0].pointer, /^\/x\/0\/0/);
  const deepNative = await a().post('/v1/alerts', undefined, { raw: `{"extensions":${'{"a":'.repeat(2000)}1${'}'.repeat(2000)}}`, contentType: 'application/json' });
  t.equal(deepNative.body.code, 'FENLIU_ERR_TOO_DEEP', 'native alerts get the same guard');
  const notEido = await a().post('/v1/alerts', undefined, { raw: '[1,2', contentType: 'application/emergency.eido+json' });
  t.equal(notEido.status, 400);
  t.equal(notEido.body.code, 'FENLIU_ERR_MALFORMED_JSON');
  const operator = await api(f.url, KEYS.admin).post('/v1/alerts', undefined, { raw: text('cap-noise.xml'), contentType: 'application/cap+xml' });
  t.equal(operator.status, 403, 'the source of a CAP message is the key, so operator keys cannot send one');
  t.equal(operator.body.code, 'FENLIU_ERR_NOT_A_SOURCE');
  const operatorJson = await api(f.url, KEYS.admin).post('/v1/alerts', { source: { system: SOURCE_A, alertId: 'ADMIN-1' }, reportedAt: '2026-11-29T10:00:00+08:00', category: 'consumer.refund', summary: 'x', location: { address: 'y', regionCode: '420204' } });
  t.equal(operatorJson.status, 403, 'an admin key submits no alert, not even as native JSON');
  t.equal(operatorJson.body.code, 'FENLIU_ERR_NOT_A_SOURCE');
  const health = await api(f.url).get('/healthz');
  t.equal(health.status, 200, 'still alive');
});

t.test('HTTP: vendor JSON through the source mapping', async (t) => {
  const res = await a().post('/v1/alerts', undefined, { raw: text('vendor-hs-cad.json'), contentType: `application/vnd.${SOURCE_A}+json` });
  t.equal(res.status, 202, res.text);
  t.match(res.body, { source: { alertId: 'HS-CAD-77001' }, route: { ruleId: 'disputes' } });
  const bad = json('vendor-hs-cad.json');
  bad.jqbh = 'HS-CAD-77002';
  bad.fadz.xzqh = '4202';
  const invalid = await a().post('/v1/alerts', undefined, { raw: JSON.stringify(bad), contentType: `application/vnd.${SOURCE_A}+json` });
  t.equal(invalid.status, 422);
  t.match(invalid.body.errors, [{ pointer: '/fadz/xzqh', field: '/location/regionCode' }]);
  const police = { ...json('vendor-hs-cad.json'), jqbh: 'HS-CAD-77003', jqlb: 'KS09' };
  const refused = await a().post('/v1/alerts', undefined, { raw: JSON.stringify(police), contentType: `application/vnd.${SOURCE_A}+json` });
  t.equal(refused.body.code, 'FENLIU_ERR_POLICE_ONLY');
  t.match(refused.body.errors, [{ pointer: '/jqlb' }]);
  const other = await api(f.url, KEYS.sourceB).post('/v1/alerts', undefined, { raw: text('vendor-hs-cad.json'), contentType: `application/vnd.${SOURCE_A}+json` });
  t.equal(other.status, 415, 'a key cannot use another source mapping');
});

t.test('a vendor mapping outside the mapping language stops the boot with its key path', async (t) => {
  const { InboundService } = await import('../src/inbound/service.js');
  const { validConfig } = await import('./helpers/fenliu.js');
  const cfg = testConfig();
  cfg.sources[1].inbound = { mapping: { summary: { path: 'x', bogus: true } } };
  t.throws(() => new InboundService({ cfg: validConfig(cfg) } as never), { name: 'ConfigError', message: /\/sources\/1\/inbound\/mapping\/summary/ });
  const vendorOnly = testConfig();
  vendorOnly.sources[1].inbound = { format: 'vendor' };
  t.throws(() => new InboundService({ cfg: validConfig(vendorOnly) } as never), { message: /\/sources\/1\/inbound\/mapping is required/ });
});
