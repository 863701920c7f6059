import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type Options, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

/** Repository root, whether running from src/ (tsx) or dist/src/ (compiled). */
export const ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    try {
      readFileSync(join(dir, 'package.json'));
      return dir;
    } catch {
      dir = dirname(dir);
    }
  }
  throw new Error('fenliu: cannot find the package root');
})();

export function schemaPath(name: string): string {
  return join(ROOT, 'schemas', name);
}

export function readJson<T = unknown>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

/** A fresh Ajv for JSON Schema 2020-12 with formats; every error reported, not just the first. */
export function newAjv(opts: Options = {}): Ajv2020 {
  const ajv = new Ajv2020({ allErrors: true, strict: false, ...opts });
  (addFormats as unknown as (a: Ajv2020) => void)(ajv);
  return ajv;
}

export function compileSchema(path: string, opts: Options = {}): ValidateFunction {
  return newAjv(opts).compile(readJson(path));
}

const compiled = new Map<string, ValidateFunction>();

/**
 * `newAjv(opts).compile(schema)`, once per process for each distinct schema and options: the
 * platforms' option and output schemas are compiled again at every start otherwise (~40 ms each),
 * and one process may start fenliu many times (the tests do, and an embedding program may).
 * Ajv's validators hold no state between calls except `errors`, which each call sets.
 */
export function compileOnce(schema: unknown, opts: Pick<Options, 'useDefaults'> = {}): ValidateFunction {
  const key = `${opts.useDefaults ? 'd' : '-'}${JSON.stringify(schema)}`;
  let v = compiled.get(key);
  if (!v) {
    v = newAjv(opts).compile(schema as object);
    compiled.set(key, v);
  }
  return v;
}
