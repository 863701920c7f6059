/**
 * What every inbound format (EIDO, CAP, vendor JSON) shares: the shape a normaliser returns, the
 * map from alert.v1 fields back into the document as sent, and the nesting guard.
 */
import { createHash } from 'node:crypto';
import { ProblemError, type FieldError } from '../errors.js';

export type InboundFormat = 'eido' | 'cap' | 'vendor';

/** What the sender asked for: a new alert, or a follow-up on one it sent before (CAP Update/Cancel). */
export type InboundAction =
  | { kind: 'create' }
  | { kind: 'update' | 'cancel'; references: string[]; pointer: string; reason?: string };

export interface Normalised {
  format: InboundFormat;
  /** The alert.v1 candidate; validated afterwards exactly like a native alert. */
  alert: Record<string, any>;
  /** alert.v1 pointer (`/location/regionCode`) → pointer into the document as sent. */
  pointers: Record<string, string>;
  /** Pointer of the document itself (`/` for JSON, `/alert` for CAP). */
  root: string;
  /** Problems found while normalising, already pointing into the document. */
  issues: FieldError[];
  action: InboundAction;
  /** The sender's own id of this message (CAP identifier), indexed so later messages can reference it. */
  messageId?: string;
}

/** RFC 6901 pointer from segments. */
export function ptr(...segments: (string | number)[]): string {
  return segments.map((s) => `/${String(s).replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');
}

/** Dotted mapping path (`a.b.0`) → JSON pointer (`/a/b/0`). */
export function dottedToPointer(path: string): string {
  const p = path.replace(/^\^\.?/, '');
  return p === '' || p === '.' ? '/' : ptr(...p.split('.'));
}

/**
 * Re-points alert.v1 field errors into the original document: each error goes to the nearest
 * mapped ancestor of its field, and keeps the field itself in `field` and in the message.
 */
export function mapErrors(errors: FieldError[] | undefined, n: Pick<Normalised, 'pointers' | 'root'>): FieldError[] {
  const keys = Object.keys(n.pointers).sort((a, b) => b.length - a.length);
  return (errors ?? []).map((e) => {
    const field = e.pointer;
    const k = keys.find((key) => field === key || field.startsWith(`${key}/`));
    return { pointer: k ? n.pointers[k] : n.root, message: `alert.v1 ${field}: ${e.message}`, field };
  });
}

/** Re-throws a ProblemError from the ingest path with its pointers moved into the document. */
export function remapProblem(err: unknown, n: Pick<Normalised, 'pointers' | 'root' | 'format'>): unknown {
  if (!(err instanceof ProblemError) || !err.errors) return err;
  return new ProblemError(err.code, err.message, { errors: mapErrors(err.errors, n), headers: err.headers, extra: { ...err.extra, format: n.format } });
}

/**
 * Depth of a parsed JSON value, without recursion (a 200 kB body of `[[[[` must not overflow the
 * stack of whatever walks it next). Returns the pointer of the first place deeper than `max`.
 */
export function tooDeep(value: unknown, max: number): string | undefined {
  // Every alert body passes here: the depth alone is checked first, without building a pointer
  // string per member; only a body that is too deep is walked again to say where.
  if (!deeperThan(value, max)) return undefined;
  const stack: [unknown, number, string][] = [[value, 0, '']];
  while (stack.length) {
    const [v, depth, at] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth >= max) return at || '/';
    if (Array.isArray(v)) v.forEach((x, i) => stack.push([x, depth + 1, `${at}/${i}`]));
    else for (const [k, x] of Object.entries(v)) stack.push([x, depth + 1, `${at}${ptr(k)}`]);
  }
  return undefined;
}

function deeperThan(value: unknown, max: number): boolean {
  if (value === null || typeof value !== 'object') return false;
  const values: unknown[] = [value];
  const depths: number[] = [0];
  while (values.length) {
    const v = values.pop();
    const depth = depths.pop()!;
    if (depth >= max) return true;
    const members = Array.isArray(v) ? v : Object.values(v as object);
    for (const x of members) {
      if (x === null || typeof x !== 'object') continue;
      values.push(x);
      depths.push(depth + 1);
    }
  }
  return false;
}

export function assertNotTooDeep(value: unknown, max: number): void {
  const at = tooDeep(value, max);
  if (at !== undefined) {
    throw new ProblemError('FENLIU_ERR_TOO_DEEP', `The body nests more than ${max} levels deep`, { errors: [{ pointer: at, message: `is nested deeper than ${max} levels` }] });
  }
}

export function isObj(v: unknown): v is Record<string, any> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function str(v: unknown): string | undefined {
  if (typeof v === 'string') {
    const t = v.trim();
    return t === '' ? undefined : t;
  }
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return undefined;
}

/** Cuts text to at most `max` characters without splitting a surrogate pair. */
export function cut(text: string | undefined, max: number): string | undefined {
  if (text === undefined) return undefined;
  const chars = Array.from(text);
  return chars.length <= max ? text : chars.slice(0, max).join('');
}

/** A phone number from a tel: URI or free text, in the alert schema's shape, or undefined. */
export function phoneFrom(v: string | undefined): string | undefined {
  if (!v) return undefined;
  const raw = v.replace(/^tel:/i, '').replace(/^sips?:/i, '').split(/[@;]/)[0];
  const cleaned = raw.replace(/[^\d+ -]/g, '').trim();
  return /^\+?[0-9][0-9 -]{2,30}$/.test(cleaned) ? cleaned : undefined;
}

/** Drops undefined members (and empty objects) so the alert hashes the same however it was built. */
export function compact<T>(v: T): T {
  if (Array.isArray(v)) return v.map(compact).filter((x) => x !== undefined) as T;
  if (!isObj(v)) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    const c = compact(x);
    if (c === undefined) continue;
    if (isObj(c) && Object.keys(c).length === 0) continue;
    out[k] = c;
  }
  return out as T;
}

/**
 * One-line free text from a document: every run of whitespace (pretty-printing's newline plus
 * indentation included) becomes one space, and the ends are trimmed.
 */
export function oneLine(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  const t = v.replace(/\s+/gu, ' ').trim();
  return t === '' ? undefined : t;
}

/**
 * Multi-line free text (descriptions): line breaks are kept, each line's whitespace runs collapse
 * to one space, and blank lines collapse to one (paragraphs survive, indentation does not).
 */
export function block(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  const lines = v.replace(/\r\n?/g, '\n').split('\n').map((l) => l.replace(/[^\S\n]+/gu, ' ').trim());
  const t = lines.join('\n').replace(/\n{3,}/g, '\n\n').trim();
  return t === '' ? undefined : t;
}

/** alert.v1 fields that keep line breaks; every other string field taken from a document is one line. */
const MULTILINE = new Set(['/description', '/police/assessment']);
/** Fields that are identifiers, times or codes: left exactly as the document has them. */
const VERBATIM = /^\/(source\/(system|alertId)|reportedAt|category|priority|location\/(regionCode|crs)|caller\/phone|police\/(attendedAt|sceneStatus|officerId)|parties\/\d+\/(phone|idNumber)|attachments\/|extensions(\/|$))/;

/**
 * Whitespace of every free-text field of a normalised alert (summary, address, names, units,
 * description...), in place: what pretty-printed XML or JSON put there is layout, not content.
 */
export function normaliseWhitespace(alert: Record<string, any>): void {
  const walk = (v: unknown, at: string): unknown => {
    if (typeof v === 'string') {
      if (VERBATIM.test(at)) return v;
      return (MULTILINE.has(at) ? block(v) : oneLine(v)) ?? v.trim();
    }
    if (Array.isArray(v)) return v.map((x, i) => walk(x, `${at}/${i}`));
    if (isObj(v) && !VERBATIM.test(at)) for (const [k, x] of Object.entries(v)) v[k] = walk(x, `${at}/${k}`);
    return v;
  };
  walk(alert, '');
}

/** alert.v1's limit for source.alertId (schemas/alert.v1.schema.json). */
const ALERT_ID = /^[\x21-\x7e]{1,64}$/;

/**
 * The alertId fenliu keys an inbound message by. CAP identifiers and EIDO ids have no length limit
 * (NWS identifiers exceed 100 characters) and may hold any character but space, comma, `<` and `&`;
 * one that fits alert.v1's `source.alertId` (1–64 visible ASCII) is used as it is, any other is
 * replaced by `sha256:` and the first 32 hex digits of its SHA-256 — stable, so a resend is still
 * idempotent. The original is always kept in full in `extensions.cap.identifier` / `extensions.eido`.
 */
export function stableAlertId(original: string | undefined): string | undefined {
  if (original === undefined) return undefined;
  if (ALERT_ID.test(original)) return original;
  return `sha256:${createHash('sha256').update(original, 'utf8').digest('hex').slice(0, 32)}`;
}
