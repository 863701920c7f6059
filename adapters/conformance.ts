/**
 * The adapter conformance suite, as a library: the tap tests run it over every built-in adapter
 * and `fenliu adapter test PATH` runs it over a third-party one. Every check returns a result
 * instead of throwing, so one broken hook does not hide the others.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type {
  Adapter,
  AdapterFixture,
  InboundResponse,
  Interpretation,
  OutboundRequest,
  PollContext,
  ReportedState,
  StatusEvent,
  TranslateContext,
} from './sdk.js';

export interface CheckResult {
  name: string;
  ok: boolean;
  message?: string;
}

export interface ConformanceOptions {
  /** Directory of golden files (`<fixture-name>.json`); golden checks are skipped without it. */
  goldenDir?: string;
}

/** The fixed context every fixture is translated in, so outputs are reproducible byte for byte. */
export const conformanceContext: TranslateContext<Record<string, unknown>> = Object.freeze({
  platform: { id: 'test-platform', config: {} },
  delivery: { id: 'dlv_test_0001', alertId: 'alt_test_0001' },
  alertId: 'alt_test_0001',
  now: '2026-11-29T02:00:00.000Z',
  interveneBy: '2026-11-29T14:00:00.000Z',
});

const STATES: readonly ReportedState[] = ['delivered', 'accepted', 'in_progress', 'resolved', 'closed', 'returned', 'rejected', 'reopened', 'cancelled'];
const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];
const FOLLOW_UP_TICKET = 'T-CONFORMANCE-1';

export function fixtureConfig<C>(adapter: Adapter<C>, fixture: AdapterFixture): C {
  return (fixture.config ?? adapter.exampleConfig) as C;
}

/** The context a fixture is translated in: {@link conformanceContext} + its config + fixture.context. */
export function fixtureContext<C>(adapter: Adapter<C>, fixture: AdapterFixture): TranslateContext<C> {
  const base = conformanceContext;
  const over = fixture.context ?? {};
  return {
    ...base,
    ...over,
    platform: { id: over.platform?.id ?? base.platform.id, config: fixtureConfig(adapter, fixture) },
    delivery: { ...base.delivery, ...over.delivery },
  } as TranslateContext<C>;
}

/** What translate produced, as it would be stored: a JSON round trip drops undefined members. */
export function translateFixture<C>(adapter: Adapter<C>, fixture: AdapterFixture): OutboundRequest {
  return JSON.parse(JSON.stringify(adapter.translate(fixture.alert, fixtureContext(adapter, fixture)))) as OutboundRequest;
}

export function goldenFile(goldenDir: string, fixture: AdapterFixture): string {
  return join(goldenDir, `${fixture.name}.json`);
}

export function goldenText(req: OutboundRequest): string {
  return `${JSON.stringify(req, null, 2)}\n`;
}

/** (Re)writes the golden file of every fixture; returns the paths written. */
export function writeGolden(adapter: Adapter<any>, goldenDir: string): string[] {
  mkdirSync(goldenDir, { recursive: true });
  return (adapter.fixtures ?? []).map((f) => {
    const file = goldenFile(goldenDir, f);
    writeFileSync(file, goldenText(translateFixture(adapter, f)));
    return file;
  });
}

// ---------------------------------------------------------------------------------------------
// Purity guard

/**
 * Runs `fn` with the clock, randomness and fetch replaced by functions that record the call and
 * throw. Recording matters: an adapter that swallows the exception is still caught.
 * Everything inside is synchronous, so no other code can observe the replaced globals.
 */
export function runGuarded<T>(fn: () => T): { value?: T; error?: unknown; violations: string[] } {
  const violations: string[] = [];
  const trap = (what: string, hint: string) =>
    function trapped(): never {
      violations.push(`${what} (${hint})`);
      throw new Error(`fenliu conformance: adapters must not call ${what}; ${hint}`);
    };
  const g = globalThis as Record<string, unknown>;
  const RealDate = Date;
  const realNow = Date.now;
  const realRandom = Math.random;
  const realFetch = g.fetch;
  const realPerfNow = performance.now;
  const cryptoObj = g.crypto as Record<string, unknown> | undefined;
  const realUUID = cryptoObj?.randomUUID;
  const realRandomValues = cryptoObj?.getRandomValues;
  const dateTrap = trap('Date.now() / new Date()', 'use ctx.now');
  class GuardedDate extends RealDate {
    constructor(...args: unknown[]) {
      if (args.length === 0) dateTrap();
      super(...(args as [number]));
    }
    static override now(): number {
      return dateTrap();
    }
  }
  let value: T | undefined;
  let error: unknown;
  try {
    g.Date = GuardedDate;
    RealDate.now = dateTrap;
    Math.random = trap('Math.random()', 'derive ids from ctx.delivery.id');
    g.fetch = trap('fetch()', 'adapters do no I/O; the engine sends what translate returns');
    performance.now = trap('performance.now()', 'use ctx.now');
    if (cryptoObj) {
      cryptoObj.randomUUID = trap('crypto.randomUUID()', 'derive ids from ctx.delivery.id');
      cryptoObj.getRandomValues = trap('crypto.getRandomValues()', 'derive ids from ctx.delivery.id');
    }
    value = fn();
  } catch (err) {
    error = err;
  } finally {
    g.Date = RealDate;
    RealDate.now = realNow;
    Math.random = realRandom;
    g.fetch = realFetch;
    performance.now = realPerfNow;
    if (cryptoObj) {
      if (realUUID === undefined) delete cryptoObj.randomUUID;
      else cryptoObj.randomUUID = realUUID;
      if (realRandomValues === undefined) delete cryptoObj.getRandomValues;
      else cryptoObj.getRandomValues = realRandomValues;
    }
  }
  return { value, error, violations };
}

// ---------------------------------------------------------------------------------------------
// Helpers

function newAjv(): Ajv2020 {
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  (addFormats as unknown as (a: Ajv2020) => void)(ajv);
  return ajv;
}

function compile(schema: unknown): { validate?: ValidateFunction; error?: string } {
  try {
    return { validate: newAjv().compile(schema as object) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

function ajvErrors(errors: ErrorObject[] | null | undefined): string {
  return (errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}${e.params && 'additionalProperty' in e.params ? ` (${String(e.params.additionalProperty)})` : ''}`).join('; ');
}

function errMessage(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/** First JSON pointer at which two JSON values differ, for readable golden failures. */
export function firstDifference(a: unknown, b: unknown, path = ''): string | undefined {
  if (a === b) return undefined;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object' || Array.isArray(a) !== Array.isArray(b)) {
    return `${path || '/'}: expected ${JSON.stringify(a)}, got ${JSON.stringify(b)}`;
  }
  const ao = a as Record<string, unknown>;
  const bo = b as Record<string, unknown>;
  const keys = [...new Set([...Object.keys(ao), ...Object.keys(bo)])];
  for (const k of keys) {
    const d = firstDifference(ao[k], bo[k], `${path}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`);
    if (d) return d;
  }
  // Same members in a different order: JSON text differs even though values match.
  if (JSON.stringify(a) !== JSON.stringify(b)) return `${path || '/'}: members in a different order`;
  return undefined;
}

function requestProblems(req: unknown): string[] {
  if (!req || typeof req !== 'object') return ['not an object'];
  if (typeof (req as { then?: unknown }).then === 'function') return ['returned a Promise; hooks must be synchronous'];
  const r = req as Record<string, unknown>;
  const p: string[] = [];
  if (!METHODS.includes(r.method as string)) p.push(`method ${JSON.stringify(r.method)} is not one of ${METHODS.join('|')}`);
  if (typeof r.path !== 'string' || !r.path.startsWith('/')) p.push(`path ${JSON.stringify(r.path)} must start with "/"`);
  for (const k of ['headers', 'query'] as const) {
    const v = r[k];
    if (v === undefined) continue;
    if (!v || typeof v !== 'object' || Object.values(v).some((x) => typeof x !== 'string')) p.push(`${k} must map names to strings`);
  }
  if (r.contentType !== undefined && typeof r.contentType !== 'string') p.push('contentType must be a string');
  if (r.contentType === 'application/x-www-form-urlencoded') {
    const b = r.body;
    if (!b || typeof b !== 'object' || Array.isArray(b) || Object.values(b).some((x) => x !== null && typeof x === 'object')) {
      p.push('a form-encoded body must be a flat object of scalars');
    }
  }
  return p;
}

function interpretationProblems(i: unknown): string[] {
  if (!i || typeof i !== 'object') return ['not an object'];
  const r = i as Interpretation;
  const p: string[] = [];
  if (!['delivered', 'retry', 'reject'].includes(r.outcome)) p.push(`outcome ${JSON.stringify(r.outcome)} is not delivered|retry|reject`);
  if (r.reason !== undefined && typeof r.reason !== 'string') p.push('reason must be a string');
  if (r.retryAfterMs !== undefined && (typeof r.retryAfterMs !== 'number' || r.retryAfterMs < 0)) p.push('retryAfterMs must be a non-negative number');
  return p;
}

function eventProblems(e: StatusEvent): string[] {
  const p: string[] = [];
  if (typeof e.eventId !== 'string' || !e.eventId) p.push('eventId must be a non-empty string');
  if (!STATES.includes(e.state)) p.push(`state ${JSON.stringify(e.state)} is not a ReportedState`);
  if (typeof e.at !== 'string' || Number.isNaN(Date.parse(e.at))) p.push(`at ${JSON.stringify(e.at)} is not an ISO instant`);
  if (!e.deliveryId && !e.remoteTicketId) p.push('names neither deliveryId nor remoteTicketId');
  return p;
}

function findAlertSchema(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const p = join(dir, 'schemas', 'alert.v1.schema.json');
    if (existsSync(p)) return p;
    dir = dirname(dir);
  }
  return undefined;
}

const GARBAGE_BODIES = ['<html>oops</html>', '', 'null', '42', '[]', '{}', '[1,2]', '{"status":{"nested":true}}', '{"__proto__":{"x":1}}'];

// ---------------------------------------------------------------------------------------------

export async function runConformance(adapter: Adapter<any>, opts: ConformanceOptions = {}): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const check = (name: string, problems: string[] | string | undefined) => {
    const list = problems === undefined ? [] : Array.isArray(problems) ? problems : [problems];
    results.push(list.length ? { name, ok: false, message: list.join('; ') } : { name, ok: true });
  };
  /** Runs a hook under the guard and reports impurity or an exception as `name` failing. */
  const pure = <T>(name: string, fn: () => T, allowThrow = false): { value?: T; failed: boolean; error?: unknown } => {
    const r = runGuarded(fn);
    if (r.violations.length) {
      check(name, `impure: called ${[...new Set(r.violations)].join(', ')}`);
      return { failed: true };
    }
    if (r.error !== undefined && !allowThrow) {
      check(name, `threw ${errMessage(r.error)}`);
      return { failed: true };
    }
    return { value: r.value, failed: false, error: r.error };
  };

  // --- identity and schemas
  const a = adapter as unknown as Record<string, unknown>;
  check('id is kebab-case', typeof a.id === 'string' && /^[a-z0-9]+(-[a-z0-9]+)*$/.test(a.id) ? undefined : `id ${JSON.stringify(a.id)} is not kebab-case`);
  check('version is semver', typeof a.version === 'string' && /^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$/.test(a.version) ? undefined : `version ${JSON.stringify(a.version)} is not x.y.z`);
  for (const k of ['translate', 'interpretResponse'] as const) check(`${k} is a function`, typeof a[k] === 'function' ? undefined : `${k} is missing`);
  if (typeof adapter.translate !== 'function' || typeof adapter.interpretResponse !== 'function') return results;

  const cfg = compile(adapter.configSchema);
  check('configSchema compiles', cfg.error);
  const validateConfig = (name: string, config: unknown) => {
    if (!cfg.validate) return check(name, 'configSchema does not compile');
    check(name, cfg.validate(config) ? undefined : ajvErrors(cfg.validate.errors));
  };
  validateConfig('exampleConfig matches configSchema', adapter.exampleConfig);
  const staticOut = compile(adapter.outputSchema);
  check('outputSchema compiles', staticOut.error);

  const fixtures = adapter.fixtures ?? [];
  check('has fixtures', fixtures.length ? undefined : 'no fixtures: add at least one (a minimal alert and one with personal data)');
  const names = fixtures.map((f) => f.name);
  check('fixture names are unique file names', names.filter((n, i) => names.indexOf(n) !== i || !/^[a-z0-9][a-z0-9._-]*$/.test(n)).map((n) => `bad or duplicate name "${n}"`));

  const alertSchemaPath = findAlertSchema();
  const alertSchema = alertSchemaPath ? compile(JSON.parse(readFileSync(alertSchemaPath, 'utf8'))) : undefined;

  // --- translate over fixtures
  for (const f of fixtures) {
    const label = `fixture ${f.name}`;
    if (alertSchema?.validate) check(`${label}: alert matches alert.v1 schema`, alertSchema.validate(f.alert) ? undefined : ajvErrors(alertSchema.validate.errors));
    const config = fixtureConfig(adapter, f);
    if (f.config) validateConfig(`${label}: config matches configSchema`, config);
    const ctx = fixtureContext(adapter, f);
    const first = pure(`${label}: translate is pure`, () => adapter.translate(f.alert, ctx));
    if (first.failed) continue;
    check(`${label}: translate is pure`, undefined);
    const req = first.value;
    const shape = requestProblems(req);
    check(`${label}: translate returns a valid OutboundRequest`, shape);
    if (shape.length) continue;
    const out = req as OutboundRequest;
    const second = runGuarded(() => adapter.translate(f.alert, fixtureContext(adapter, f)));
    check(`${label}: translate is deterministic`, JSON.stringify(second.value) === JSON.stringify(out) ? undefined : `second run differs: ${firstDifference(JSON.parse(JSON.stringify(out)), JSON.parse(JSON.stringify(second.value ?? null)))}`);
    const schema = adapter.outputSchemaFor ? pure(`${label}: outputSchemaFor`, () => adapter.outputSchemaFor!(config)).value : adapter.outputSchema;
    const out2 = schema === adapter.outputSchema ? staticOut : compile(schema);
    if (out2.validate) check(`${label}: body matches outputSchema`, out2.validate(JSON.parse(JSON.stringify(out.body ?? null))) ? undefined : ajvErrors(out2.validate.errors));
    else check(`${label}: body matches outputSchema`, `output schema does not compile: ${out2.error}`);
    if (opts.goldenDir) {
      const file = goldenFile(opts.goldenDir, f);
      if (!existsSync(file)) {
        check(`${label}: matches golden`, `missing golden file ${file}; run npx tsx adapters/write-golden.ts`);
      } else {
        const expected = JSON.parse(readFileSync(file, 'utf8')) as unknown;
        const actual = JSON.parse(JSON.stringify(out)) as unknown;
        const diff = firstDifference(expected, actual);
        check(`${label}: matches golden`, diff ? `${file} differs at ${diff}` : undefined);
      }
    }
  }

  // --- follow-ups: cancel, update, urge
  const f0 = fixtures[0];
  if (f0) {
    const ctx = { ...fixtureContext(adapter, f0), delivery: { ...conformanceContext.delivery, remoteTicketId: FOLLOW_UP_TICKET } };
    const followUps: [string, (() => OutboundRequest) | undefined][] = [
      ['translateCancel', adapter.translateCancel && (() => adapter.translateCancel!(f0.alert, ctx, '报警人已自行解决'))],
      ['translateUpdate', adapter.translateUpdate && (() => adapter.translateUpdate!(f0.alert, ctx))],
      ['translateUrge', adapter.translateUrge && (() => adapter.translateUrge!(f0.alert, ctx, { alertId: 'HS20261129009999', reportedAt: '2026-11-29T12:00:00+08:00', summary: '再次报警：问题仍未解决' }))],
    ];
    for (const [name, fn] of followUps) {
      if (!fn) continue;
      const r = pure(`${name} is pure and valid`, fn);
      if (r.failed) continue;
      const again = runGuarded(fn).value;
      const problems = requestProblems(r.value);
      if (JSON.stringify(again) !== JSON.stringify(r.value)) problems.push('not deterministic');
      check(`${name} is pure and valid`, problems);
    }
  }

  // --- interpretResponse
  const samples = adapter.samples;
  const ictx = { ...conformanceContext, platform: { id: conformanceContext.platform.id, config: adapter.exampleConfig } } as TranslateContext<any>;
  const interpret = (name: string, res: InboundResponse, expect: (i: Interpretation) => string[] | string | undefined) => {
    const r = pure(name, () => adapter.interpretResponse(res, ictx));
    if (r.failed) return;
    const shape = interpretationProblems(r.value);
    check(name, shape.length ? shape : expect(r.value as Interpretation));
  };
  const json = (status: number, body: string, headers: Record<string, string> = {}): InboundResponse => ({ status, headers: { 'content-type': 'application/json', ...headers }, body });

  if (!samples?.accepted) {
    check('samples.accepted is provided', 'samples.accepted is required: a 2xx answer with the ticket id it carries');
  } else {
    const exp = samples.accepted;
    interpret('interpretResponse: accepted sample → delivered', exp.response, (i) => {
      const p: string[] = [];
      if (i.outcome !== 'delivered') p.push(`outcome ${i.outcome} (${i.reason ?? 'no reason'}), expected delivered`);
      if (exp.remoteTicketId !== undefined && i.remoteTicketId !== exp.remoteTicketId) p.push(`remoteTicketId ${JSON.stringify(i.remoteTicketId)}, expected ${JSON.stringify(exp.remoteTicketId)}`);
      if (exp.pendingToken !== undefined && i.pendingToken !== exp.pendingToken) p.push(`pendingToken ${JSON.stringify(i.pendingToken)}, expected ${JSON.stringify(exp.pendingToken)}`);
      return p;
    });
  }
  const rejectWithReason = (i: Interpretation) =>
    i.outcome !== 'reject' ? `outcome ${i.outcome}, expected reject` : !i.reason ? 'reject without a reason' : undefined;
  if (samples?.validationError) interpret(`interpretResponse: validation error (${samples.validationError.status}) → reject`, samples.validationError, rejectWithReason);
  if (samples?.businessError) interpret('interpretResponse: business error in 2xx → reject', samples.businessError, rejectWithReason);
  interpret('interpretResponse: plain 400 → reject', json(400, '{}'), (i) => (i.outcome === 'reject' ? undefined : `outcome ${i.outcome}, expected reject`));
  for (const status of [500, 502, 503]) {
    interpret(`interpretResponse: ${status} → retry`, json(status, '{"error":"unavailable"}'), (i) => (i.outcome === 'retry' ? undefined : `outcome ${i.outcome}, expected retry`));
  }
  interpret('interpretResponse: 429 with Retry-After → retry', json(429, '', { 'retry-after': '7' }), (i) => {
    if (i.outcome !== 'retry') return `outcome ${i.outcome}, expected retry`;
    if (i.retryAfterMs !== undefined && i.retryAfterMs !== 7000) return `retryAfterMs ${i.retryAfterMs}, expected 7000 (Retry-After: 7)`;
    return undefined;
  });
  interpret('interpretResponse: 2xx HTML → retry', { status: 200, headers: { 'content-type': 'text/html' }, body: '<html>oops</html>' }, (i) =>
    i.outcome === 'retry' ? undefined : `outcome ${i.outcome}, expected retry: an unreadable 2xx may not have been stored`,
  );
  {
    const problems: string[] = [];
    for (const body of GARBAGE_BODIES) {
      for (const status of [200, 201, 400, 503]) {
        const r = runGuarded(() => adapter.interpretResponse({ status, headers: {}, body }, ictx));
        if (r.violations.length) problems.push(`impure on ${status} ${JSON.stringify(body)}`);
        else if (r.error !== undefined) problems.push(`threw on ${status} ${JSON.stringify(body)}: ${errMessage(r.error)}`);
        else problems.push(...interpretationProblems(r.value).map((m) => `${status} ${JSON.stringify(body)}: ${m}`));
      }
    }
    check('interpretResponse: never throws on garbage', problems);
  }

  // --- parseCallback
  const cctx = { platform: ictx.platform, now: conformanceContext.now };
  const eventsCheck = (name: string, fn: () => StatusEvent[], states: ReportedState[]) => {
    const r = pure(name, fn);
    if (r.failed) return;
    const events = r.value;
    if (!Array.isArray(events)) return check(name, 'did not return an array');
    const p = events.flatMap((e, i) => eventProblems(e).map((m) => `event ${i}: ${m}`));
    const got = events.map((e) => e.state);
    if (JSON.stringify(got) !== JSON.stringify(states)) p.push(`states ${JSON.stringify(got)}, expected ${JSON.stringify(states)}`);
    if (JSON.stringify(runGuarded(fn).value) !== JSON.stringify(events)) p.push('not deterministic');
    check(name, p);
  };
  const garbageCheck = (name: string, fn: (body: string) => unknown) => {
    const problems: string[] = [];
    for (const body of GARBAGE_BODIES) {
      const r = runGuarded(() => fn(body));
      if (r.violations.length) problems.push(`impure on ${JSON.stringify(body)}`);
      else if (r.error !== undefined) {
        // A deliberate Error is fine (the engine answers 400); a TypeError means unchecked input.
        if (!(r.error instanceof Error) || r.error instanceof TypeError || r.error instanceof ReferenceError || r.error instanceof RangeError) {
          problems.push(`crashed on ${JSON.stringify(body)}: ${errMessage(r.error)}`);
        }
      } else if (!Array.isArray(r.value) || r.value.length !== 0) problems.push(`returned ${JSON.stringify(r.value)} for ${JSON.stringify(body)}, expected [] or a thrown Error`);
    }
    check(name, problems);
  };
  if (adapter.parseCallback) {
    (samples?.callbacks ?? []).forEach((c, i) => eventsCheck(`parseCallback: sample ${i + 1} → ${c.states.join(',') || '[]'}`, () => adapter.parseCallback!(c.input, cctx), c.states));
    if (!samples?.callbacks?.length) check('parseCallback: samples.callbacks provided', 'parseCallback exists but samples.callbacks is empty');
    garbageCheck('parseCallback: garbage → [] or Error', (body) => adapter.parseCallback!({ headers: { 'content-type': 'application/json' }, body, contentType: 'application/json' }, cctx));
  }

  // --- poll
  if (adapter.poll) {
    const poll = adapter.poll;
    const deliveries: PollContext['deliveries'] = [
      { id: 'dlv_test_0001', remoteTicketId: 'T-1' },
      { id: 'dlv_test_0002', remoteTicketId: 'T-2' },
      { id: 'dlv_test_0003', pendingToken: 'tok-3' },
    ];
    const pctx = (d: PollContext['deliveries']): PollContext<any> => ({ ...cctx, deliveries: d });
    const r = pure('poll.requests is pure and valid', () => poll.requests(pctx(deliveries)));
    if (!r.failed) {
      const p: string[] = [];
      if (!Array.isArray(r.value) || r.value.length === 0) p.push('returned no requests for three open deliveries');
      else r.value.forEach((q, i) => p.push(...requestProblems(q).map((m) => `request ${i}: ${m}`)));
      if (JSON.stringify(runGuarded(() => poll.requests(pctx(deliveries))).value) !== JSON.stringify(r.value)) p.push('not deterministic');
      check('poll.requests is pure and valid', p);
    }
    (samples?.poll ?? []).forEach((s, i) => eventsCheck(`poll.parse: sample ${i + 1} → ${s.states.join(',')}`, () => poll.parse(s.response, pctx(s.deliveries)), s.states));
    garbageCheck('poll.parse: garbage → [] or Error', (body) => poll.parse({ status: 200, headers: {}, body }, pctx(deliveries)));
  }

  return results;
}

/** One line per check, failures first, for the CLI and for test diagnostics. */
export function formatResults(results: CheckResult[]): string {
  const sorted = [...results].sort((x, y) => Number(x.ok) - Number(y.ok));
  return sorted.map((r) => `${r.ok ? 'ok  ' : 'FAIL'} ${r.name}${r.message ? ` — ${r.message}` : ''}`).join('\n');
}
