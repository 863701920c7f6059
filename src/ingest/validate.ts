import type { ErrorObject, ValidateFunction } from 'ajv';
import type { Alert } from '../../adapters/sdk.js';
import type { FieldError } from '../errors.js';
import { compileSchema, schemaPath } from '../schemas.js';

let validator: ValidateFunction | undefined;

/** The alert validator, compiled once per process. */
export function alertValidator(): ValidateFunction {
  validator ??= compileSchema(schemaPath('alert.v1.schema.json'));
  return validator;
}

/** Turns Ajv errors into RFC 6901 pointers at the offending field itself, not its parent. */
export function toFieldErrors(errors: ErrorObject[] | null | undefined): FieldError[] {
  const out: FieldError[] = [];
  const seen = new Set<string>();
  for (const e of errors ?? []) {
    let pointer = e.instancePath;
    let message = e.message ?? 'is invalid';
    if (e.keyword === 'required') {
      pointer += `/${escape((e.params as { missingProperty: string }).missingProperty)}`;
      message = 'is required';
    } else if (e.keyword === 'additionalProperties') {
      pointer += `/${escape((e.params as { additionalProperty: string }).additionalProperty)}`;
      message = 'is not allowed here (put extra data under /extensions)';
    } else if (e.keyword === 'dependentRequired') {
      pointer += `/${escape((e.params as { missingProperty: string }).missingProperty)}`;
      message = `is required when ${(e.params as { property: string }).property} is given`;
    } else if (e.keyword === 'enum') {
      message = `must be one of: ${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`;
    }
    const id = `${pointer}\u0000${message}`;
    if (seen.has(id)) continue;
    seen.add(id);
    out.push({ pointer: pointer || '/', message });
  }
  return out;
}

function escape(s: string): string {
  return s.replace(/~/g, '~0').replace(/\//g, '~1');
}

export type Validation = { ok: true; alert: Alert } | { ok: false; errors: FieldError[] };

export function validateAlert(body: unknown): Validation {
  const v = alertValidator();
  if (v(body)) return { ok: true, alert: body as Alert };
  return { ok: false, errors: toFieldErrors(v.errors) };
}

/**
 * An object's keys in sorted order, each with its JSON form and colon (`"key":`), by the order
 * its keys came in: alerts share a handful of shapes, so the sort and the key quoting are done
 * once per shape, not per object. Bounded: a body with many shapes (extensions) starts it over.
 */
const sortedShapes = new Map<string, { order: string[]; keys: string[]; heads: string[] }>();
const MAX_SHAPES = 2_000;

function sortedKeys(value: object): { keys: string[]; heads: string[] } {
  const own = Object.keys(value);
  const shape = own.length < 64 ? own.join('\u0000') : undefined;
  if (shape !== undefined) {
    const hit = sortedShapes.get(shape);
    // Joined keys may collide (a key holding NUL): a hit counts only for the very same keys.
    if (hit && sameKeys(hit.order, own)) return hit;
  }
  const order = own.slice();
  const keys = own.sort();
  const entry = { order, keys, heads: keys.map((k) => `${JSON.stringify(k)}:`) };
  if (shape !== undefined) {
    if (sortedShapes.size >= MAX_SHAPES) sortedShapes.clear();
    sortedShapes.set(shape, entry);
  }
  return entry;
}

function sameKeys(a: string[], b: string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** JSON with object keys sorted at every level: the same alert always hashes the same. */
export function canonicalJson(value: unknown): string {
  // It is also what is stored, so it must be valid JSON for any value JSON.stringify accepts.
  // Built by string concatenation in one pass (no per-object key filter/map/join arrays): it
  // runs on every alert body, and on every audit event.
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return canonicalJson((value as { toJSON(): unknown }).toJSON());
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i];
      if (i > 0) out += ',';
      out += v === undefined || typeof v === 'function' || typeof v === 'symbol' ? 'null' : canonicalJson(v);
    }
    return `${out}]`;
  }
  const { keys, heads } = sortedKeys(value);
  let out = '{';
  for (let i = 0; i < keys.length; i++) {
    const v = (value as Record<string, unknown>)[keys[i]];
    if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
    if (out.length > 1) out += ',';
    out += heads[i] + canonicalJson(v);
  }
  return `${out}}`;
}
