/**
 * `fenliu adapter new ID [--dir DIR]`: scaffolds an adapter folder that passes
 * `fenliu adapter test` as generated, and says what to fill in.
 *
 * The folder is self-contained: it carries a copy of adapters/sdk.ts (the SDK is one
 * dependency-free file by design), so it builds and tests wherever it lives, inside or outside
 * fenliu's repository.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { formatResults, runConformance, writeGolden } from '../../adapters/conformance.js';
import { sampleAlerts } from '../../adapters/common.js';
import { ROOT } from '../schemas.js';
import { KitUsageError, loadAdapterModule } from './adapter-test.js';
import { generateWebhookSecret } from '../delivery/webhook-secret.js';

const INDEX = `/**
 * __ID__: fenliu adapter for <platform name>.
 *
 * TODO(1) Describe the platform and link its API documentation here.
 * Run \`fenliu adapter test .\` after every change; \`fenliu adapter test . --json\` for CI.
 */
import {
  defineAdapter,
  lookupCategory,
  parseJson,
  statusInterpretation,
  truncate,
  type AdapterFixture,
  type Alert,
  type InboundResponse,
  type OutboundRequest,
  type ReportedState,
  type StatusEvent,
} from './sdk.js';
import configSchema from './schemas/config.schema.json' with { type: 'json' };
import outputSchema from './schemas/output.schema.json' with { type: 'json' };
import minimal from './fixtures/minimal.json' with { type: 'json' };
import withCaller from './fixtures/with-caller.json' with { type: 'json' };
import confidential from './fixtures/confidential.json' with { type: 'json' };

/** The platform \`options\` in fenliu's config (checked against schemas/config.schema.json at boot). */
export interface Config {
  /** Path of the ticket endpoint, joined to the platform's url. */
  ticketPath: string;
  /** fenliu category (or \`family.*\`) → the platform's own type code. TODO(2) the real table. */
  categories: Record<string, string>;
  defaultType: string;
}

/** TODO(3) The platform's status words → fenliu states (callbacks). */
const STATES: Record<string, ReportedState> = {
  RECEIVED: 'delivered',
  ACCEPTED: 'accepted',
  IN_PROGRESS: 'in_progress',
  DONE: 'resolved',
  CLOSED: 'closed',
  NOT_OURS: 'returned',
  REFUSED: 'rejected',
  REOPENED: 'reopened',
};

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** TODO(4) Shape the body the platform expects; keep it in step with schemas/output.schema.json. */
function body(alert: Alert, ctx: { delivery: { id: string }; interveneBy?: string; platform: { config: Config } }) {
  const cfg = ctx.platform.config;
  const confidential = alert.caller?.confidential === true;
  return {
    externalId: ctx.delivery.id,
    policeAlertNo: alert.source.alertId,
    type: lookupCategory(cfg.categories, alert.category) ?? cfg.defaultType,
    title: truncate(alert.summary, 200),
    content: alert.description ?? alert.summary,
    address: alert.location.address,
    regionCode: alert.location.regionCode,
    reportedAt: alert.reportedAt,
    deadline: ctx.interveneBy ?? null,
    urgent: alert.priority === 'urgent',
    // Personal data only arrives when fenliu's config grants it (platforms[].fields); a caller
    // who asked for confidentiality (是否保密) is never named to the handling department.
    contact: !confidential && alert.caller?.phone ? { name: alert.caller.name ?? null, phone: alert.caller.phone } : null,
  };
}

const json = (status: number, b: unknown): InboundResponse => ({ status, headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) });

export default defineAdapter<Config>({
  id: '__ID__',
  version: '0.1.0',
  description: 'TODO(1) one line: which platform, which protocol',
  configSchema,
  outputSchema,
  exampleConfig: { ticketPath: '/api/tickets', categories: { 'dispute.*': 'D01', 'consumer.*': 'C01', 'assist.unlock': 'U01' }, defaultType: 'Z99' },

  translate(alert, ctx): OutboundRequest {
    return { method: 'POST', path: ctx.platform.config.ticketPath, contentType: 'application/json', body: body(alert, ctx) };
  },

  /** TODO(5) Read the platform's answers: where is the ticket id, how does it say "refused"? */
  interpretResponse(res, ctx) {
    const parsed = parseJson(res.body);
    const reason = isObject(parsed) && typeof parsed.message === 'string' ? parsed.message : undefined;
    const transport = statusInterpretation(res, reason, ctx.now);
    if (transport) return transport;
    if (!isObject(parsed)) return { outcome: 'retry', reason: \`HTTP \${res.status} with a body that is not JSON\` };
    if (parsed.ok === false) return { outcome: 'reject', reason: reason ?? 'refused by the platform' };
    const id = typeof parsed.ticketId === 'string' || typeof parsed.ticketId === 'number' ? String(parsed.ticketId) : undefined;
    return id ? { outcome: 'delivered', remoteTicketId: id } : { outcome: 'retry', reason: \`HTTP \${res.status} without a ticketId\` };
  },

  /** TODO(6) The platform's status callbacks; delete this hook if the platform is polled instead. */
  parseCallback(input, ctx): StatusEvent[] {
    const parsed = parseJson(input.body);
    if (!isObject(parsed)) throw new Error('__ID__: callback body is not a JSON object');
    const status = typeof parsed.status === 'string' ? parsed.status : undefined;
    const state = status !== undefined && Object.prototype.hasOwnProperty.call(STATES, status) ? STATES[status] : undefined;
    if (!state) throw new Error(\`__ID__: unknown status \${JSON.stringify(parsed.status)}\`);
    const ticket = typeof parsed.ticketId === 'string' ? parsed.ticketId : undefined;
    if (!ticket) throw new Error('__ID__: callback without ticketId');
    const at = typeof parsed.at === 'string' && !Number.isNaN(Date.parse(parsed.at)) ? new Date(Date.parse(parsed.at)).toISOString() : ctx.now;
    const ev: StatusEvent = { eventId: typeof parsed.eventId === 'string' ? parsed.eventId : \`\${ticket}:\${status}:\${at}\`, state, at, remoteTicketId: ticket };
    if (typeof parsed.note === 'string') ev.note = parsed.note;
    return [ev];
  },

  /** TODO(7) 撤单: how the platform withdraws a ticket (delete if it cannot). */
  translateCancel(_alert, ctx, reason) {
    return { method: 'POST', path: \`\${ctx.platform.config.ticketPath}/\${encodeURIComponent(ctx.delivery.remoteTicketId ?? ctx.delivery.id)}/cancel\`, body: { reason } };
  },

  fixtures: [minimal, withCaller, confidential] as AdapterFixture[],

  /** TODO(8) Replace with real answers captured from the platform's test system. */
  samples: {
    accepted: { response: json(201, { ok: true, ticketId: 'T-0001' }), remoteTicketId: 'T-0001' },
    validationError: json(400, { ok: false, message: 'regionCode is not served by this platform' }),
    businessError: json(200, { ok: false, message: 'no department on duty for this type' }),
    callbacks: [
      { input: { headers: {}, body: JSON.stringify({ eventId: 'e1', ticketId: 'T-0001', status: 'ACCEPTED', at: '2026-11-29T02:20:00Z' }) }, states: ['accepted'] },
      { input: { headers: {}, body: JSON.stringify({ ticketId: 'T-0001', status: 'DONE', at: '2026-11-29T05:00:00Z', note: '已调解' }) }, states: ['resolved'] },
    ],
  },
});
`;

const CONFIG_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'platform options',
  type: 'object',
  additionalProperties: false,
  required: ['ticketPath', 'categories', 'defaultType'],
  properties: {
    ticketPath: { type: 'string', pattern: '^/' },
    categories: { type: 'object', additionalProperties: { type: 'string' } },
    defaultType: { type: 'string', minLength: 1 },
  },
};

const OUTPUT_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'ticket request body',
  type: 'object',
  additionalProperties: false,
  required: ['externalId', 'policeAlertNo', 'type', 'title', 'content', 'address', 'regionCode', 'reportedAt', 'urgent'],
  properties: {
    externalId: { type: 'string' },
    policeAlertNo: { type: 'string' },
    type: { type: 'string' },
    title: { type: 'string', maxLength: 200 },
    content: { type: 'string' },
    address: { type: 'string' },
    regionCode: { type: 'string', pattern: '^\\d{6}(\\d{3}(\\d{3})?)?$' },
    reportedAt: { type: 'string' },
    deadline: { type: ['string', 'null'] },
    urgent: { type: 'boolean' },
    contact: { oneOf: [{ type: 'null' }, { type: 'object', required: ['phone'], properties: { name: { type: ['string', 'null'] }, phone: { type: 'string' } } }] },
  },
};

const TEST = `// Golden check without fenliu: translate every fixture in the context fenliu's conformance suite
// uses and compare with golden/<name>.json. Run: npx tsx --test adapter.test.ts
// (\`fenliu adapter test .\` runs this and much more: purity, determinism, responses, callbacks.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import adapter from './index.js';

const context = {
  platform: { id: 'test-platform', config: adapter.exampleConfig },
  delivery: { id: 'dlv_test_0001', alertId: 'alt_test_0001' },
  alertId: 'alt_test_0001',
  now: '2026-11-29T02:00:00.000Z',
  interveneBy: '2026-11-29T14:00:00.000Z',
};

for (const f of adapter.fixtures ?? []) {
  test(\`\${f.name} matches golden/\${f.name}.json\`, () => {
    const ctx = { ...context, ...f.context, platform: { id: 'test-platform', config: f.config ?? adapter.exampleConfig } };
    const out = JSON.parse(JSON.stringify(adapter.translate(f.alert, ctx as never)));
    const golden = JSON.parse(readFileSync(new URL(\`./golden/\${f.name}.json\`, import.meta.url), 'utf8'));
    assert.deepEqual(out, golden);
  });
}
`;

const TODO = [
  'TODO(1) index.ts: describe the platform (description, header comment).',
  'TODO(2) index.ts exampleConfig + schemas/config.schema.json: the options your platform needs (category table, paths).',
  'TODO(4) index.ts body() + schemas/output.schema.json: the request body the platform expects.',
  'TODO(5) index.ts interpretResponse: where the ticket id is, how a refusal inside a 2xx looks.',
  'TODO(3, 6) index.ts STATES + parseCallback: the platform\'s status callbacks (or replace with poll).',
  'TODO(7) index.ts translateCancel (and translateUpdate / translateUrge if the platform has them).',
  'TODO(8) index.ts samples: real answers captured from the platform\'s test system.',
];

function readme(id: string, dir: string): string {
  return `# ${id}: fenliu adapter

Generated by \`fenliu adapter new ${id}\`. Passes \`fenliu adapter test\` as generated; fill in the TODOs.

| file | what |
|---|---|
| \`index.ts\` | the adapter: translate, interpretResponse, parseCallback, translateCancel, samples |
| \`sdk.ts\` | a copy of fenliu's adapter SDK (dependency-free); refresh it when fenliu's \`adapters/sdk.ts\` changes |
| \`schemas/config.schema.json\` | the platform \`options\` in fenliu's config |
| \`schemas/output.schema.json\` | the request body; fenliu checks every body against it before sending |
| \`fixtures/*.json\` | alerts (and optional config/context) translated by the conformance suite |
| \`golden/*.json\` | the exact request each fixture must produce; review every diff |
| \`adapter.test.ts\` | golden check that runs without fenliu: \`npx tsx --test adapter.test.ts\` |

    fenliu adapter test ${dir}              # the conformance suite: must say "all N checks passed"
    fenliu adapter golden ${dir}            # rewrite golden/ after a deliberate change, then review the diff
    fenliu send alert.json --to my-platform --config fenliu.yaml   # one real request, printed

In fenliu's config:

    platforms:
      - id: my-platform
        adapter: ${dir}/index.ts      # or the compiled .js in production
        url: https://platform.example.gov.cn
        options: { ticketPath: /api/tickets, categories: { 'dispute.*': D01 }, defaultType: Z99 }
        # A fresh Standard Webhooks secret (whsec_<base64>) for the platform to sign its callbacks
        # with; keep it out of version control (\${ENV_VAR} in the YAML).
        callback: { secret: "${generateWebhookSecret()}" }
`;
}

/** Writes golden files for an adapter folder; shared by `adapter new` and `adapter golden`. */
export async function refreshGolden(dir: string): Promise<string[]> {
  const { adapter } = await loadAdapterModule(dir);
  return writeGolden(adapter, join(resolve(dir), 'golden'));
}

export async function adapterGoldenCommand(argv: string[]): Promise<number> {
  const [dir] = argv;
  if (!dir) throw new KitUsageError('usage: fenliu adapter golden DIR');
  const files = await refreshGolden(dir);
  process.stdout.write(`${files.map((f) => `wrote ${relative(process.cwd(), f) || f}`).join('\n')}\nReview the diff before committing: golden files are the adapter's contract.\n`);
  return 0;
}

/** Writes every file of a new adapter folder into `dir` (which exists and is empty). */
function writeScaffold(dir: string, id: string, shown: string): void {
  for (const sub of ['schemas', 'fixtures', 'golden']) mkdirSync(join(dir, sub), { recursive: true });
  const put = (name: string, content: string) => writeFileSync(join(dir, name), content);
  const jsonText = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;
  put('package.json', jsonText({ name: `fenliu-adapter-${id}`, version: '0.1.0', private: true, type: 'module', description: `fenliu adapter ${id}` }));
  put('sdk.ts', readFileSync(join(ROOT, 'adapters', 'sdk.ts'), 'utf8'));
  put('index.ts', INDEX.replace(/__ID__/g, id));
  put('schemas/config.schema.json', jsonText(CONFIG_SCHEMA));
  put('schemas/output.schema.json', jsonText(OUTPUT_SCHEMA));
  const asSource = <T extends { source: { system: string } }>(a: T): T => ({ ...a, source: { ...a.source, system: 'my-110' } });
  put('fixtures/minimal.json', jsonText({ name: 'minimal', alert: asSource(sampleAlerts.minimal) }));
  put('fixtures/with-caller.json', jsonText({ name: 'with-caller', alert: asSource(sampleAlerts.noodleShop) }));
  put('fixtures/confidential.json', jsonText({ name: 'confidential', alert: asSource(sampleAlerts.confidentialLeak) }));
  put('adapter.test.ts', TEST);
  put('README.md', readme(id, shown));
}

export async function adapterNewCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { dir: { type: 'string' } } });
  const [id] = positionals;
  if (!id) throw new KitUsageError('usage: fenliu adapter new ID [--dir DIR]');
  if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(id)) throw new KitUsageError(`adapter id "${id}" must be kebab-case (a-z, 0-9, dashes), e.g. wuhan-12345`);
  const dir = resolve(values.dir ?? id);
  if (existsSync(dir) && readdirSync(dir).length) throw new KitUsageError(`${dir} exists and is not empty; choose another --dir`);
  const rel = relative(process.cwd(), dir);
  const shown = rel.startsWith('..') || isAbsolute(rel) ? dir : `./${rel}`;
  // Everything is written and checked in a scratch folder beside the target, then renamed into
  // place: a failure leaves nothing half-written, and a second run is not refused.
  mkdirSync(dirname(dir), { recursive: true });
  const work = mkdtempSync(join(dirname(dir), `.${basename(dir)}.new-`));
  let results: Awaited<ReturnType<typeof runConformance>>;
  try {
    writeScaffold(work, id, shown);
    await refreshGolden(work);
    const { adapter } = await loadAdapterModule(work);
    results = await runConformance(adapter, { goldenDir: join(work, 'golden') });
    const failed = results.filter((r) => !r.ok);
    if (failed.length) {
      process.stdout.write(`the scaffold fails its own checks (a fenliu bug); nothing was written:\n${formatResults(failed)}\n`);
      return 1;
    }
    if (existsSync(dir)) rmdirSync(dir); // empty (checked above)
    renameSync(work, dir);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  process.stdout.write(
    [
      `Created adapter ${id} in ${dir}`,
      `  index.ts, sdk.ts (copy of fenliu's SDK), schemas/, fixtures/, golden/, adapter.test.ts, README.md`,
      `  conformance: all ${results.length} checks pass as generated`,
      '',
      'Fill in:',
      ...TODO.map((t) => `  ${t}`),
      '  fixtures/*.json: alerts that exercise your mapping, then `fenliu adapter golden DIR` and review the diff.',
      '',
      'Then:',
      `  fenliu adapter test ${shown}`,
      `  fenliu send alert.json --to <platform id> --config <your config>   (against the platform's test system or the sandbox)`,
      '',
    ].join('\n'),
  );
  return 0;
}
