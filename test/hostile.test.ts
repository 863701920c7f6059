/**
 * Hostile input, property-based (fast-check): > 100k cases against the validation and
 * normalisation layer, a few thousand over real HTTP (fastify.inject on the real app, real
 * Redis). Only 4xx (or 2xx for valid alerts), never 5xx, never a crash, never a stored invalid
 * alert, no prototype pollution. Prints the count of cases and outcomes.
 */
import t from 'tap';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { canonicalJson, validateAlert } from '../src/ingest/validate.js';
import { routeAlert } from '../src/routing/route.js';
import { toProblemError } from '../src/plugins/app/problems.js';
import { useRedis } from './helpers/redis.js';
import { KEYS, SOURCE_A, alert, startTestFenliu, testConfig, validConfig } from './helpers/fenliu.js';
import { each, zMembersByScore } from '../src/store/fanout.js';

const SEED = Number(process.env.FC_SEED ?? 20261129);

// ----- arbitraries ---------------------------------------------------------------------------

const UNICODE_EDGES = ['\u0000', '\ud800', '\udfff', '\u202e', '\u200f', '\u200b', '\ufeff', '😀', '👩‍👩‍👧', 'e\u0301\u0301\u0301', '\u0645\u0631\u062d\u0628\u0627', '\uffff', '\u2028', '\u2029', '"', '\\', '</script>', '${x}', '%00', '\r\n'];
const edgeString = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.string({ unit: 'grapheme' }),
  fc.array(fc.constantFrom(...UNICODE_EDGES), { maxLength: 20 }).map((a) => a.join('')),
  fc.integer({ min: 0, max: 5 }).map((n) => 'x'.repeat(10 ** n)),
  fc.constantFrom('', ' ', '0', '-1', '1e309', 'NaN', 'true', 'null', '[]', '{}', '__proto__', 'constructor', 'prototype'),
);
const weirdKey = fc.oneof(fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '', '$ref', 'a.b', 'a/b', '~0'), edgeString);
const anyJson: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    edgeString,
    fc.double(),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(weirdKey, tie('value'), { maxKeys: 4 }),
  ),
})).value;

const digits = (n: number) => fc.array(fc.integer({ min: 0, max: 9 }), { minLength: n, maxLength: n }).map((a) => a.join(''));
const validAlert = fc.record(
  {
    source: fc.record({ system: fc.constant(SOURCE_A), alertId: fc.stringMatching(/^[\x21-\x7e]{1,64}$/) }),
    reportedAt: fc.date({ min: new Date('2020-01-01'), max: new Date('2030-01-01'), noInvalidDate: true }).map((d) => d.toISOString()),
    category: fc.constantFrom('consumer.refund', 'dispute.debt', 'utility.water-leak', 'assist.unlock', 'nuisance.noise'),
    summary: fc.string({ minLength: 1, maxLength: 200 }),
    description: fc.string({ maxLength: 300 }),
    location: fc.record({ address: fc.string({ minLength: 1, maxLength: 100 }), regionCode: fc.oneof(digits(6), digits(9), digits(12)) }),
    priority: fc.constantFrom('normal', 'urgent'),
    extensions: fc.dictionary(fc.string({ maxLength: 10 }), anyJson, { maxKeys: 3 }),
  },
  { requiredKeys: ['source', 'reportedAt', 'category', 'summary', 'location'] },
);

type Mutation = (a: Record<string, any>) => unknown;
const PATHS = ['', 'source', 'location', 'caller', 'police', 'extensions'];
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.constant<Mutation>((a) => a),
  fc.tuple(fc.constantFrom(...Object.keys(alert('x'))), anyJson).map(([k, v]): Mutation => (a) => ({ ...a, [k]: v })),
  fc.constantFrom(...Object.keys(alert('x'))).map((k): Mutation => (a) => {
    const c = { ...a };
    delete c[k];
    return c;
  }),
  // __proto__ / constructor as own keys (what JSON.parse makes of them), anywhere.
  fc.tuple(fc.constantFrom(...PATHS), fc.constantFrom('__proto__', 'constructor', 'prototype'), anyJson).map(([p, k, v]): Mutation => (a) => {
    const c = structuredClone(a);
    const target = p ? (c[p] ??= {}) : c;
    if (target && typeof target === 'object') Object.defineProperty(target, k, { value: v, enumerable: true, configurable: true, writable: true });
    return c;
  }),
  // Numbers as strings and strings as numbers.
  fc.constantFrom<Mutation>(
    (a) => ({ ...a, location: { ...a.location, regionCode: Number(a.location?.regionCode) } }),
    (a) => ({ ...a, priority: 1 }),
    (a) => ({ ...a, summary: 12345 }),
    (a) => ({ ...a, reportedAt: Date.parse(String(a.reportedAt)) }),
    (a) => ({ ...a, source: { ...a.source, alertId: 42 } }),
    (a) => ({ ...a, caller: { confidential: 'true' } }),
    (a) => ({ ...a, location: { ...a.location, lat: '30.2' } }),
  ),
  fc.tuple(fc.constantFrom('summary', 'description', 'category'), edgeString).map(([k, v]): Mutation => (a) => ({ ...a, [k]: v })),
  fc.tuple(fc.constantFrom('alertId', 'system'), edgeString).map(([k, v]): Mutation => (a) => ({ ...a, source: { ...a.source, [k]: v } })),
  fc.integer({ min: 1, max: 300 }).map((n): Mutation => (a) => {
    let deep: unknown = 'bottom';
    for (let i = 0; i < n; i++) deep = i % 2 ? [deep] : { d: deep };
    return { ...a, extensions: { deep } };
  }),
);
const mutatedAlert = fc.tuple(validAlert, fc.array(mutation, { minLength: 1, maxLength: 3 })).map(([a, ms]) =>
  ms.reduce<unknown>((x, m) => {
    if (!x || typeof x !== 'object' || Array.isArray(x)) return x;
    try {
      return m(x as Record<string, any>);
    } catch {
      return x; // a mutation that does not apply to what earlier ones left (e.g. Number() of an object)
    }
  }, a),
);

/** What every stored (valid) alert must satisfy, beyond the schema: what the code relies on. */
function invariantsHold(a: any): string | undefined {
  if (typeof a.source?.system !== 'string' || typeof a.source?.alertId !== 'string') return 'source ids';
  if (!/^(\d{6}|\d{9}|\d{12})$/.test(a.location?.regionCode)) return 'regionCode';
  if (Number.isNaN(Date.parse(a.reportedAt))) return 'reportedAt';
  if (typeof a.summary !== 'string' || !a.summary.length) return 'summary';
  if (a.priority !== undefined && a.priority !== 'normal' && a.priority !== 'urgent') return 'priority';
  // What is stored is JSON: a valid object must stay valid, and hash the same, after the trip.
  const back = JSON.parse(JSON.stringify(a));
  if (!validateAlert(back).ok) return 'not valid after a JSON round trip';
  if (canonicalJson(back) !== canonicalJson(JSON.parse(canonicalJson(a)))) return 'canonical form unstable';
  return undefined;
}

/** fast-check options: a fixed seed, and a reporter that does not print 2000-level counterexamples. */
function opts(numRuns: number, seed: number) {
  return {
    numRuns,
    seed,
    reporter: (d: { failed: boolean; counterexample: unknown; errorInstance?: unknown; numRuns: number; seed: number; counterexamplePath?: string | null }) => {
      if (!d.failed) return;
      let shown = '';
      try {
        shown = JSON.stringify(d.counterexample)?.slice(0, 600) ?? String(d.counterexample);
      } catch (err) {
        shown = `(not printable: ${(err as Error).message})`;
      }
      throw new Error(`property failed after ${d.numRuns} runs (seed ${d.seed}, path ${d.counterexamplePath}): ${(d.errorInstance as Error | undefined)?.message ?? 'returned false'}; counterexample ${shown}`);
    },
  };
}

/** Nesting depth, iteratively (the HTTP layer refuses bodies deeper than 64: FENLIU_ERR_TOO_DEEP). */
function depthOf(v: unknown): number {
  let max = 0;
  const stack: [unknown, number][] = [[v, 0]];
  while (stack.length) {
    const [x, d] = stack.pop()!;
    max = Math.max(max, d);
    if (x && typeof x === 'object') for (const y of Object.values(x)) stack.push([y, d + 1]);
  }
  return max;
}
const MAX_DEPTH = 64;

const protoKeys = () => Object.getOwnPropertyNames(Object.prototype).sort().join(',');

t.test('pure layer: validation and normalisation over > 100k hostile values', async (t) => {
  const cfg = validConfig();
  const protoBefore = protoKeys();
  const outcomes = { valid: 0, invalid: 0, routed: 0, refusedRoute: 0, tooDeep: 0 };
  const check = (v: unknown): boolean => {
    // What the HTTP layer refuses before validation never reaches this layer.
    if (depthOf(v) > MAX_DEPTH) {
      outcomes.tooDeep++;
      return true;
    }
    const r = validateAlert(v);
    if (!r.ok) {
      outcomes.invalid++;
      // Every refusal names fields; never an empty error list.
      return r.errors.length > 0 && r.errors.every((e) => typeof e.pointer === 'string' && e.pointer.startsWith('/'));
    }
    outcomes.valid++;
    const bad = invariantsHold(v);
    if (bad) throw new Error(`accepted an alert breaking "${bad}": ${JSON.stringify(v).slice(0, 300)}`);
    const routed = routeAlert(r.alert, cfg.routes, cfg.policeOnly);
    if (routed.ok) outcomes.routed++;
    else outcomes.refusedRoute++;
    return true;
  };
  const runs = { random: 40_000, mutated: 45_000, valid: 10_000, text: 10_000 };
  fc.assert(fc.property(anyJson, check), opts(runs.random, SEED));
  fc.assert(fc.property(mutatedAlert, check), opts(runs.mutated, SEED + 1));
  fc.assert(
    fc.property(validAlert, (a) => {
      const r = validateAlert(a);
      if (!r.ok) throw new Error(`valid alert refused: ${JSON.stringify(r.errors)}`);
      return check(a);
    }),
    opts(runs.valid, SEED + 2),
  );
  // Raw JSON text: duplicate keys (last one wins in JSON.parse, so the validator sees that),
  // truncated documents, mutated bytes.
  fc.assert(
    fc.property(validAlert, fc.constantFrom('dup', 'truncate', 'byte'), fc.nat(), (a, how, n) => {
      let text = JSON.stringify(a);
      if (how === 'dup') text = text.replace(/^\{/, `{"summary":${JSON.stringify('x'.repeat(n % 5000))},"priority":"bogus",`);
      if (how === 'truncate') text = text.slice(0, n % text.length);
      if (how === 'byte') {
        const i = n % text.length;
        text = text.slice(0, i) + String.fromCharCode(n % 65536) + text.slice(i + 1);
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (err) {
        // What fastify turns into 400 problem+json.
        return toProblemError(err as Error).status === 400;
      }
      return check(parsed);
    }),
    opts(runs.text, SEED + 3),
  );
  const total = Object.values(runs).reduce((x, y) => x + y, 0);
  t.ok(total >= 100_000, `${total} cases`);
  t.equal(protoKeys(), protoBefore, 'Object.prototype untouched');
  t.equal(({} as any).polluted, undefined);
  process.stdout.write(`# hostile pure: ${total} cases ${JSON.stringify(outcomes)}\n`);
});

t.test('HTTP layer: thousands of hostile requests through the real app, never a 5xx', async (t) => {
  const redis = await useRedis(t);
  // The default body limit (256 KB), so deep nesting and huge strings reach the handler.
  const f = await startTestFenliu({ redisUrl: redis.url, cfg: testConfig({ server: { bodyLimitBytes: 262_144 } }) });
  t.teardown(() => f.stop());
  const app = f.app!;
  const outcomes: Record<string, number> = {};
  const accepted: unknown[] = [];
  let cases = 0;
  const send = async (payload: string | Buffer | undefined, headers: Record<string, string>, expectValid?: unknown) => {
    cases++;
    const res = await app.inject({ method: 'POST', url: '/v1/alerts', headers: { authorization: `Bearer ${KEYS.sourceA}`, ...headers }, payload });
    outcomes[res.statusCode] = (outcomes[res.statusCode] ?? 0) + 1;
    if (res.statusCode >= 500) throw new Error(`${res.statusCode} for ${String(payload).slice(0, 200)}: ${res.body.slice(0, 300)}`);
    if (res.statusCode === 202 || res.statusCode === 200) {
      if (expectValid !== undefined && !validateAlert(expectValid).ok) throw new Error(`accepted an invalid alert: ${String(payload).slice(0, 300)}`);
      accepted.push(expectValid);
    } else if (!/problem\+json/.test(String(res.headers['content-type']))) throw new Error(`${res.statusCode} without problem+json`);
    return res.statusCode;
  };
  let n = 0;
  const json = { 'content-type': 'application/json' };
  // Mutated alerts as JSON.
  await fc.assert(
    fc.asyncProperty(mutatedAlert, async (a) => {
      const body = a && typeof a === 'object' && !Array.isArray(a) ? { ...(a as object), source: { ...((a as any).source ?? {}), alertId: `H-${++n}` } } : a;
      await send(JSON.stringify(body), json, body);
    }),
    opts(1_500, SEED + 10),
  );
  // Random bytes and text, with random, wrong or missing content types, invalid UTF-8.
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(fc.uint8Array({ maxLength: 2_000 }).map((b) => Buffer.from(b)), edgeString, anyJson.map((v) => JSON.stringify(v) ?? '')),
      fc.constantFrom(undefined, 'application/json', 'application/json; charset=utf-8', 'application/json; charset=latin1', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', '', 'application/json, text/plain', '*/*', 'APPLICATION/JSON'),
      async (body, ct) => {
        await send(body, ct === undefined ? {} : { 'content-type': ct });
      },
    ),
    opts(1_000, SEED + 11),
  );
  // Hand-made extremes.
  const base = alert('EXT-1');
  const deep = (depth: number, open: string, close: string) => `{"source":{"system":"${SOURCE_A}","alertId":"DEEP-${depth}-${open}"},"reportedAt":"2026-11-29T09:12:00+08:00","category":"consumer.refund","summary":"s","location":{"address":"a","regionCode":"420204"},"extensions":{"x":${open.repeat(depth)}1${close.repeat(depth)}}}`;
  const extremes: [string, string | Buffer, Record<string, string>][] = [
    ['deep arrays 100k', deep(100_000, '[', ']'), json],
    ['deep objects 20k', deep(20_000, '{"a":', '}'), json],
    ['deep arrays 1000', deep(1000, '[', ']'), json],
    ['huge string 250 KB', JSON.stringify({ ...base, description: 'x'.repeat(250_000) }), json],
    ['over the body limit', JSON.stringify({ ...base, description: 'x'.repeat(300_000) }), json],
    ['invalid UTF-8', Buffer.concat([Buffer.from(JSON.stringify(base).slice(0, -2)), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from('"}')]), json],
    ['UTF-16 body', Buffer.from(JSON.stringify(base), 'utf16le'), json],
    ['BOM', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify({ ...base, source: { system: SOURCE_A, alertId: 'BOM-1' } }))]), json],
    ['__proto__ key', `{"__proto__":{"polluted":1},${JSON.stringify(base).slice(1)}`, json],
    ['constructor.prototype', `{"constructor":{"prototype":{"polluted":1}},${JSON.stringify(base).slice(1)}`, json],
    ['duplicate keys', `{"summary":"first","summary":"",${JSON.stringify({ ...base, source: { system: SOURCE_A, alertId: 'DUP-1' } }).slice(1).replace(/"summary":"[^"]*",/, '')}`, json],
    ['empty body', '', json],
    ['null', 'null', json],
    ['number', '12345', json],
    ['NUL bytes', JSON.stringify({ ...base, source: { system: SOURCE_A, alertId: 'NUL-1' }, summary: '\u0000\u0000' }), json],
    ['lone surrogates', `{"source":{"system":"${SOURCE_A}","alertId":"SUR-1"},"reportedAt":"2026-11-29T09:12:00+08:00","category":"consumer.refund","summary":"\\ud800\\udfff\\ud800","location":{"address":"a","regionCode":"420204"}}`, json],
    ['content-length lie', JSON.stringify(base), { ...json, 'content-length': '10' }],
    ['chunked', JSON.stringify({ ...base, source: { system: SOURCE_A, alertId: 'CHUNK-1' } }), { ...json, 'transfer-encoding': 'chunked' }],
  ];
  const extremeResults: Record<string, number> = {};
  for (const [name, body, headers] of extremes) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.isBuffer(body) ? body.toString('utf8') : body);
    } catch {
      parsed = undefined;
    }
    extremeResults[name] = await send(body, headers, parsed);
  }
  t.equal(extremeResults['over the body limit'], 413);
  t.ok(extremeResults['deep arrays 100k'] < 500, `100k-deep nesting: ${extremeResults['deep arrays 100k']}`);
  t.equal(extremeResults['deep arrays 1000'], 400, 'nesting beyond 64 levels: 400');
  t.equal(({} as any).polluted, undefined, 'no prototype pollution');

  // Never a stored invalid alert: every record in Redis validates against the schema.
  const r = new Redis(redis.url);
  t.teardown(() => r.disconnect());
  const ids = await zMembersByScore(r, each(f.rt.keys.bucketList, f.rt.keys.alerts), '-inf', '+inf');
  const invalid: string[] = [];
  for (const id of ids) {
    const rec = JSON.parse((await r.get(f.rt.keys.alert(id)))!);
    if (!validateAlert(rec.alert).ok || invariantsHold(rec.alert)) invalid.push(id);
  }
  t.same(invalid, [], `${ids.length} stored alerts, all valid`);
  t.ok(cases >= 2_500, `${cases} HTTP cases`);
  process.stdout.write(`# hostile http: ${cases} cases, status counts ${JSON.stringify(outcomes)}, stored ${ids.length}; extremes ${JSON.stringify(extremeResults)}\n`);
});
