/**
 * Every enum value the API can return has a Chinese name in the console (console/src/labels.ts),
 * and every category fenliu ships or the demo config routes has a name in the category table.
 * The values come from what we did not write by hand for this test: the OpenAPI document, the
 * alert and config schemas, the state and audit-type lists in src/, the error classes in the
 * retry policy and the state-change sources the code writes. Runs without a browser (the console
 * e2e test checks the rendered pages).
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parse } from 'yaml';
import { AUDIT_EVENT_TYPES } from '../src/audit/events.js';
import { categoryNames, DEFAULT_CATEGORY_NAMES } from '../src/console/categories.js';
import { DEFAULT_CAP_CATEGORIES, DEFAULT_EIDO_CATEGORIES } from '../src/inbound/categories.js';
import { DELIVERY_STATES } from '../src/lifecycle/states.js';
import { ROOT } from './helpers/fenliu.js';

type Labels = { label(kind: string, value: string): string };
// The console is a browser build outside the test program; under tsx its labels module loads as is
// (i18n falls back to zh without localStorage).
const labelsPath = join(ROOT, 'console', 'src', 'labels.ts');
const { label } = (await import(labelsPath)) as Labels;

const openapi = parse(readFileSync(join(ROOT, 'openapi', 'openapi.yaml'), 'utf8'));
const alertSchema = JSON.parse(readFileSync(join(ROOT, 'schemas', 'alert.v1.schema.json'), 'utf8'));
const configSchema = JSON.parse(readFileSync(join(ROOT, 'schemas', 'config.schema.json'), 'utf8'));
const schemas = openapi.components.schemas;

function srcFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? srcFiles(p) : p.endsWith('.ts') && !p.includes('generated') ? [p] : [];
  });
}
const code = srcFiles(join(ROOT, 'src')).map((f) => readFileSync(f, 'utf8')).join('\n');
const matches = (re: RegExp) => [...new Set([...code.matchAll(re)].map((m) => m[1]))];

const CJK = /[\u4e00-\u9fff]/;
function named(t: { ok(v: unknown, msg: string): unknown }, kind: string, values: string[]) {
  t.ok(values.length > 0, `${kind}: values found`);
  for (const v of values) {
    const l = label(kind, v);
    t.ok(l !== v && CJK.test(l), `${kind} ${v} → ${l}`);
  }
}

t.test('every enum value has a Chinese name', async (t) => {
  named(t, 'state', [...DELIVERY_STATES, ...schemas.AlertState.enum, 'retrying']);
  named(t, 'priority', alertSchema.properties.priority.enum);
  named(t, 'sceneStatus', alertSchema.properties.police.properties.sceneStatus.enum);
  named(t, 'sla', schemas.Delivery.properties.overdue.items.enum);
  named(t, 'outcome', schemas.Attempt.properties.outcome.enum);
  named(t, 'deliveryKind', schemas.Delivery.properties.kind.enum);
  named(t, 'circuit', schemas.PlatformStatus.properties.circuit.enum);
  named(t, 'scope', configSchema.$defs.scope.enum);
  const policy = readFileSync(join(ROOT, 'src', 'delivery', 'policy.ts'), 'utf8');
  const classes = [...policy.slice(policy.indexOf('export type ErrorClass'), policy.indexOf('export interface Decision')).matchAll(/'([a-z0-9-]+)'/g)].map((m) => m[1]);
  named(t, 'errorClass', [...classes, 'rejected', 'engine']);
  // Audit types: the documented list and every literal type the code writes.
  named(t, 'auditType', [...new Set([...AUDIT_EVENT_TYPES, ...matches(/type: '((?:alert|delivery|sla|replay|audit|operator)\.[a-z.-]+)'/g), 'delivery.feedback', 'delivery.escalation', 'alert.rerouted'])]);
  // State-change sources: the OpenAPI list and every literal source a transition or history entry names.
  const documented = String(schemas.HistoryEntry.properties.source.description).split(/,\s*/);
  named(t, 'changeSource', [...new Set([...documented, ...matches(/source: '([a-z-]+)'/g), 'feedback', 'escalation'])]);
  named(t, 'attemptKind', ['cancel', 'update', 'urge', 'redeliver']);
  named(t, 'actorKind', ['source', 'platform', 'operator', 'system']);
});

t.test('every category fenliu ships or the demo routes has a name', async (t) => {
  const demo = parse(readFileSync(join(ROOT, 'config', 'demo.yaml'), 'utf8'));
  const codes = new Set<string>([...Object.values(DEFAULT_EIDO_CATEGORIES), ...Object.values(DEFAULT_CAP_CATEGORIES)]);
  for (const c of [...demo.policeOnly, ...demo.routes.flatMap((r: { match?: { category?: string[] } }) => r.match?.category ?? [])]) codes.add(String(c).replace(/\.\*$/, ''));
  for (const c of codes) t.ok(CJK.test(DEFAULT_CATEGORY_NAMES[c]?.zh ?? ''), `${c} → ${DEFAULT_CATEGORY_NAMES[c]?.zh}`);
});

t.test('config categories rename or add, over the built-in names', async (t) => {
  const names = categoryNames({ categories: { 'consumer.refund': '消费纠纷', 'assist.pet': { zh: '宠物求助', en: 'Pet' } } });
  t.same(names['consumer.refund'], { zh: '消费纠纷', en: DEFAULT_CATEGORY_NAMES['consumer.refund'].en }, 'a Chinese name keeps the built-in English one');
  t.same(names['assist.pet'], { zh: '宠物求助', en: 'Pet' });
  t.same(names['dispute.debt'], DEFAULT_CATEGORY_NAMES['dispute.debt'], 'the rest unchanged');
});

t.test('a value without a name is shown as it is, not hidden', async (t) => {
  t.equal(label('state', 'no-such-state'), 'no-such-state');
});
