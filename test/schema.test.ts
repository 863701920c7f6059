import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { validateAlert } from '../src/ingest/validate.js';
import { ROOT } from './helpers/fenliu.js';

const examples = join(ROOT, 'schemas', 'examples');
const read = (p: string) => JSON.parse(readFileSync(p, 'utf8'));
const files = (dir: string) => readdirSync(join(examples, dir)).filter((f) => f.endsWith('.json')).sort();

/** Every invalid example and the pointers its errors must name (exactly these). */
const INVALID: Record<string, string[]> = {
  'empty-summary.json': ['/summary'],
  'missing-source.json': ['/source'],
  'region-code-7-digits.json': ['/location/regionCode'],
  'reported-at-without-offset.json': ['/reportedAt'],
  'several-errors.json': ['/caller/phone', '/location/address', '/priority'],
  'summary-too-long.json': ['/summary'],
  'unknown-top-level.json': ['/note'],
};

t.test('the alert and config schemas compile under Ajv 2020 strict mode', async (t) => {
  for (const name of ['alert.v1.schema.json', 'config.schema.json']) {
    const ajv = new Ajv2020({ strict: true, allErrors: true });
    (addFormats as unknown as (a: Ajv2020) => void)(ajv);
    const schema = read(join(ROOT, 'schemas', name));
    t.equal(schema.$schema, 'https://json-schema.org/draft/2020-12/schema', `${name} declares 2020-12`);
    t.doesNotThrow(() => ajv.compile(schema), name);
  }
});

t.test('every valid example passes', async (t) => {
  const list = files('valid');
  t.ok(list.length >= 3, 'there are valid examples');
  for (const f of list) {
    const v = validateAlert(read(join(examples, 'valid', f)));
    t.ok(v.ok, f);
    if (!v.ok) t.comment(JSON.stringify(v.errors));
  }
});

t.test('every invalid example fails, at the expected pointers', async (t) => {
  const list = files('invalid');
  t.same(list, Object.keys(INVALID).sort(), 'the table covers every invalid example');
  for (const f of list) {
    const v = validateAlert(read(join(examples, 'invalid', f)));
    t.notOk(v.ok, `${f} is invalid`);
    if (v.ok) continue;
    t.same([...new Set(v.errors.map((e) => e.pointer))].sort(), [...(INVALID[f] ?? [])].sort(), `${f} pointers`);
    for (const e of v.errors) t.ok(e.message.length > 0, `${f} ${e.pointer} has a message`);
  }
});

t.test('schema rules from the issue', async (t) => {
  const base = read(join(examples, 'valid', 'minimal.json'));
  const check = (mutate: (a: any) => void) => {
    const a = structuredClone(base);
    mutate(a);
    return validateAlert(a);
  };
  for (const code of ['420202', '420202003', '420202003001']) t.ok(check((a) => (a.location.regionCode = code)).ok, `regionCode ${code}`);
  for (const code of ['4202', '42020200', '4202020030011', '42020a']) t.notOk(check((a) => (a.location.regionCode = code)).ok, `regionCode ${code}`);
  t.ok(check((a) => (a.summary = 'x'.repeat(4000))).ok, 'summary of 4000 chars');
  t.ok(check((a) => (a.extensions = { anything: { nested: [1, 2] } })).ok, 'anything under extensions');
  t.notOk(check((a) => (a.location.lat = 30)).ok, 'lat without lon');
  t.notOk(check((a) => (a.reportedAt = 'yesterday')).ok, 'reportedAt not a date-time');
  t.ok(check((a) => (a.reportedAt = '2026-11-29T09:12:00.250+08:00')).ok, 'offset with fraction');
  for (const field of ['category', 'summary', 'reportedAt', 'location']) {
    const v = check((a) => delete a[field]);
    t.notOk(v.ok, `${field} is required`);
    if (!v.ok) t.same(v.errors.map((e) => e.pointer), [`/${field}`]);
  }
  const v = check((a) => delete a.source.alertId);
  t.same(v.ok ? [] : v.errors.map((e) => e.pointer), ['/source/alertId']);
});
