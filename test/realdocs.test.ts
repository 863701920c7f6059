/**
 * Every real document in test/fixtures/realdocs/ (copied from ../shared/realdocs, origins and
 * licences in its SOURCES.md) goes through the documented inbound route, POST /v1/alerts with the
 * standard's media type, on a real fenliu and Redis. Expectations are read from each document
 * (identifier, msgType, references, areaDesc, circle, polygon), not from our own samples; the
 * outcome of each, and why, is the table in docs/integrators.md ("Real documents").
 */
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { api, KEYS, ROOT, SOURCE_A, SOURCE_B, startTestFenliu, testConfig, type ApiResponse, type TestFenliu } from './helpers/fenliu.js';
import { until } from './helpers/engine.js';
import { startRedis, type TestRedis } from './helpers/redis.js';

const DIR = join(ROOT, 'test', 'fixtures', 'realdocs');
const raw = (file: string) => readFileSync(join(DIR, file), 'utf8');

/**
 * The integrator's category table for these documents (docs/integrators.md shows the same one):
 * what a Chinese installation would decide for US/Canadian public warnings.
 */
const CATEGORIES = {
  cap: {
    'Homeland Security Advisory System Update': 'public-security.advisory',
    'SAME:SVR': 'warning.weather',
    'SAME:BZW': 'warning.weather',
    'profile:CAP-CP:Event:0.4:wind': 'warning.weather',
    Earthquake: 'warning.earthquake',
    'Tsunami Cancellation': 'warning.tsunami',
    'SAME:LAE': 'public-security.local-area-emergency',
    'SAME:CEM': 'public-security.civil-emergency',
    'SAME:ADR': 'notice.administrative',
  },
  eido: { CU1: 'public-security.civil-unrest' },
};

// --- what each document says about itself (first match of an element, namespace prefixes allowed)
const el = (xml: string, name: string) => new RegExp(`<(?:\\w+:)?${name}>([\\s\\S]*?)</(?:\\w+:)?${name}>`).exec(xml)?.[1].trim();
const els = (xml: string, name: string) => [...xml.matchAll(new RegExp(`<(?:\\w+:)?${name}>([\\s\\S]*?)</(?:\\w+:)?${name}>`, 'g'))].map((m) => m[1].trim());
/** The `<info>` block fenliu reads: Chinese, else English, else the first (docs/integrators.md). */
function chosenInfo(xml: string): string {
  const infos = els(xml, 'info');
  const lang = (i: string) => (el(i, 'language') ?? 'en-US').toLowerCase();
  return infos.find((i) => lang(i).startsWith('zh')) ?? infos.find((i) => lang(i).startsWith('en')) ?? infos[0] ?? '';
}
const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim();
const derivedId = (id: string) => (/^[\x21-\x7e]{1,64}$/.test(id) ? id : `sha256:${createHash('sha256').update(id).digest('hex').slice(0, 32)}`);
const refIds = (refs: string | undefined) => (refs ?? '').split(/\s+/).filter(Boolean).map((r) => r.split(',')[1]);

interface Expect {
  /** HTTP status and, for refusals, the problem code and the pointer it names. */
  status: number;
  code?: string;
  pointer?: RegExp;
  category?: string;
  /** What the answer says about a CAP Update/Cancel. */
  inbound?: 'update-as-new' | 'update' | 'cancel' | 'nothing-to-cancel';
  point?: 'circle' | 'polygon' | 'none';
  /** Send with source B (a fresh sender: nothing it sent before). */
  viaB?: boolean;
}

/** One row per real document: the outcome, and (docs/integrators.md) why. Order = sending order. */
const EXPECT: [string, Expect][] = [
  ['IBM-cap__cap_amber_alert_example.xml', { status: 422, code: 'FENLIU_ERR_POLICE_ONLY', pointer: /info\[0\]\/event$/ }],
  ['willglynn-oasiscap__v1dot2_appendix_adot1.xml', { status: 422, code: 'FENLIU_ERR_POLICE_ONLY', pointer: /info\[0\]\/event$/ }],
  ['willglynn-oasiscap__v1dot2_appendix_adot2.xml', { status: 202, category: 'warning.weather', point: 'polygon' }],
  ['willglynn-oasiscap__v1dot2_appendix_adot3.xml', { status: 202, category: 'warning.earthquake', inbound: 'update-as-new', point: 'circle', viaB: true }],
  ['willglynn-oasiscap__v1dot1_appendix_adot3.xml', { status: 202, category: 'warning.earthquake', point: 'circle' }],
  ['willglynn-oasiscap__v1dot2_appendix_adot3.xml', { status: 200, category: 'warning.earthquake', inbound: 'update', point: 'circle' }],
  ['willglynn-oasiscap__google-PAAQ-4-mg5a94.xml', { status: 202, category: 'warning.tsunami', inbound: 'update-as-new', point: 'circle' }],
  ['tannerryan-cap__PelmorexNAADS_WindWarning.xml', { status: 202, category: 'warning.weather', inbound: 'update-as-new', point: 'polygon' }],
  ['willglynn-oasiscap__nws-5c2cf27b1f56885d61654dc47fa411d5.xml', { status: 202, category: 'warning.weather', point: 'none' }],
  ['willglynn-oasiscap__ipaws-5e7e0fc5023f1930efcf3deb.xml', { status: 422, code: 'FENLIU_ERR_POLICE_ONLY' }],
  ['willglynn-oasiscap__ipaws-5ea321f39fc226a7b44b6874.xml', { status: 422, code: 'FENLIU_ERR_POLICE_ONLY' }],
  ['willglynn-oasiscap__ipaws-5e6dd964023f1930ef638846.xml', { status: 202, category: 'notice.administrative', point: 'none' }],
  ['willglynn-oasiscap__ipaws-5e6ddbad023f1930ef6c1a5a.xml', { status: 422, code: 'FENLIU_ERR_VALIDATION', pointer: /eventCode\[0\]\/value$/ }],
  ['willglynn-oasiscap__ipaws-5e6dd9de023f1930ef6548d9.xml', { status: 200, inbound: 'nothing-to-cancel' }],
  ['NENA911-EIDO-JSON__Sample call transfer EIDO.json', { status: 422, code: 'FENLIU_ERR_VALIDATION', pointer: /^\/incidentComponent$/ }],
  ['PhrSite-EidoLib__EidoWithJcard.json', { status: 422, code: 'FENLIU_ERR_VALIDATION', pointer: /^\/incidentComponent$/ }],
  ['NENA911-EIDO-JSON__Sample_EIDO.json', { status: 422, code: 'FENLIU_ERR_POLICE_ONLY', pointer: /^\/incidentComponent\/0\// }],
];

let redis: TestRedis;
let f: TestFenliu;

t.before(async () => {
  redis = await startRedis();
  const cfg = testConfig();
  for (const s of cfg.sources) s.inbound = { regionCode: '420204', categories: CATEGORIES };
  cfg.policeOnly = [...cfg.policeOnly, 'public-security.*'];
  // Each document is judged on its own: no repeat-call linking between them.
  cfg.repeat = { enabled: false };
  f = await startTestFenliu({ redisUrl: redis.url, cfg });
});
t.teardown(async () => {
  await f?.stop();
  await redis?.stop();
});

function send(file: string, viaB = false): Promise<ApiResponse> {
  const contentType = file.endsWith('.xml') ? 'application/cap+xml' : 'application/emergency.eido+json';
  return api(f.url, viaB ? KEYS.sourceB : KEYS.sourceA).post('/v1/alerts', undefined, { raw: raw(file), contentType });
}

/** Free text as fenliu stores it: one line, no layout whitespace; descriptions keep only their line breaks. */
function checkWhitespace(t: Test, alert: Record<string, any>) {
  const walk = (v: unknown, at: string) => {
    if (typeof v === 'string') {
      if (at === '/description') t.notOk(/(^|\n)[ \t]|[ \t](\n|$)|[ \t]{2}|\n{3}/.test(v), `${at}: line breaks only, no layout`);
      else t.notOk(/\s{2}|\n|^\s|\s$/.test(v), `${at} is one clean line: ${JSON.stringify(v.slice(0, 60))}`);
    } else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) if (!(at === '' && k === 'extensions')) walk(x, `${at}/${k}`);
  };
  walk(alert, '');
}

t.test('the fixtures are the shared real documents, all of them', async (t) => {
  const files = readdirSync(DIR).filter((x) => x !== 'SOURCES.md').sort();
  t.same(files, [...new Set(EXPECT.map(([x]) => x))].sort(), 'one expectation per real document, none left out');
  t.ok(readFileSync(join(DIR, 'SOURCES.md'), 'utf8').includes('byte for byte'), 'origins and licences travel with the copies');
});

t.test('every real document through POST /v1/alerts', async (t) => {
  for (const [file, exp] of EXPECT) {
    await t.test(`${file}${exp.viaB ? ' (source B, alone)' : ''}`, async (t) => {
      const res = await send(file, exp.viaB);
      t.equal(res.status, exp.status, res.text.slice(0, 400));
      if (exp.code) {
        t.equal(res.body.code, exp.code);
        if (exp.pointer) t.match(res.body.errors?.[0]?.pointer, exp.pointer);
        return;
      }
      if (file.endsWith('.json')) return;
      const xml = raw(file);
      const identifier = el(xml, 'identifier')!;
      if (exp.inbound === 'nothing-to-cancel') {
        t.match(res.body, { status: 'nothing-to-cancel', inbound: { format: 'cap', action: 'cancel', references: refIds(el(xml, 'references')) } });
        return;
      }
      if (exp.inbound === 'update-as-new') t.same(res.body.inbound, { format: 'cap', action: 'update-as-new', references: refIds(el(xml, 'references')) });
      if (exp.inbound === 'update') t.match(res.body.inbound, { format: 'cap', action: 'update' });
      const view = await api(f.url, exp.viaB ? KEYS.sourceB : KEYS.sourceA).get(`/v1/alerts/${res.body.id}`);
      t.equal(view.status, 200);
      const alert = view.body.alert;
      const info = chosenInfo(xml);
      // The identifier, kept in full; alertId is the identifier or its stable key.
      t.equal(alert.extensions.cap.identifier, identifier, 'the CAP identifier is kept in full');
      if (exp.inbound !== 'update') t.equal(alert.source.alertId, derivedId(identifier));
      t.equal(alert.extensions.cap.msgType, el(xml, 'msgType'));
      if (el(xml, 'references')) t.same(alert.extensions.cap.referencedIdentifiers, refIds(el(xml, 'references')), 'what it references is recorded');
      t.equal(alert.category, exp.category);
      t.equal(alert.location.address, oneLine(el(info, 'areaDesc')!), 'the first area, whitespace normalised');
      t.equal(alert.location.regionCode, '420204', "the source's configured region");
      if (el(info, 'senderName')) t.equal(alert.police?.unit, oneLine(el(info, 'senderName')!).slice(0, 100));
      if (exp.point === 'circle') {
        const [lat, lon] = el(info, 'circle')!.split(/\s+/)[0].split(',').map(Number);
        t.match(alert.location, { lat, lon, crs: 'WGS84' }, 'the circle centre');
      } else if (exp.point === 'polygon') {
        const pts = el(info, 'polygon')!.split(/\s+/).map((p) => p.split(',').map(Number));
        const lats = pts.map((p) => p[0]);
        const lons = pts.map((p) => p[1]);
        t.ok(alert.location.lat > Math.min(...lats) && alert.location.lat < Math.max(...lats), 'centroid latitude inside the polygon');
        t.ok(alert.location.lon > Math.min(...lons) && alert.location.lon < Math.max(...lons), 'centroid longitude inside the polygon');
        t.equal(alert.location.crs, 'WGS84');
      } else t.notOk('lat' in alert.location, 'no geometry, no point');
      checkWhitespace(t, alert);
    });
  }
});

t.test('every refused document is audited, and police-only ones count in the statistics', async (t) => {
  // Some police-only documents are refused before validation (they have other problems too):
  // they must still reach alert.refused and the refusedPoliceOnly figure like any other.
  const police = EXPECT.filter(([, e]) => e.code === 'FENLIU_ERR_POLICE_ONLY').length;
  const refused = EXPECT.filter(([, e]) => e.code).length;
  const auditor = api(f.url, KEYS.auditor);
  const events = await until(async () => {
    const items = (await auditor.get('/v1/audit?type=alert.refused&limit=1000')).body.items as { event: { data: { code: string } } }[];
    return items.length >= refused && items;
  }, 10_000, 'alert.refused events');
  t.equal(events.length, refused, 'one alert.refused per refused document');
  t.equal(events.filter((i) => i.event.data.code === 'FENLIU_ERR_POLICE_ONLY').length, police);
  const stats = await until(async () => {
    const s = (await auditor.get('/v1/stats')).body as { refusedPoliceOnly: number };
    return s.refusedPoliceOnly >= police && s;
  }, 10_000, 'refusedPoliceOnly');
  t.equal(stats.refusedPoliceOnly, police, 'every police-only document counted');
});

t.test('the EIDO call transfer with the incident it lacks (SOURCES.md "Derived")', async (t) => {
  const doc = JSON.parse(raw('NENA911-EIDO-JSON__Sample call transfer EIDO.json'));
  doc.incidentComponent = { $id: 'urn:emergency:uid:incidentid:derived:lockout', incidentTypeCommonRegistryText: 'Public Service/Lockout', callReference: { $ref: doc.callComponent[0].$id } };
  const res = await api(f.url, KEYS.sourceA).post('/v1/alerts', doc, { contentType: 'application/emergency.eido+json' });
  t.equal(res.status, 202, res.text.slice(0, 400));
  const alert = (await api(f.url, KEYS.sourceA).get(`/v1/alerts/${res.body.id}`)).body.alert;
  t.match(alert, {
    source: { system: SOURCE_A, alertId: doc.$id },
    reportedAt: doc.callComponent[0].callStartTimestamp,
    category: 'assist.unlock',
    location: { address: '42 W Cellular Street, Wilmington, DE, US', regionCode: '420204' },
    caller: { phone: '8195551212' },
  });
  t.match(alert.description, /This is an example text\./, 'the call-data comment is carried into the description');
  checkWhitespace(t, alert);
  t.equal(SOURCE_B, 'test-110-b');
});
