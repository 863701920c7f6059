import { isAbsolute, resolve } from 'node:path';
import { importModule } from '../src/kit/import-module.js';
import type { Adapter } from './sdk.js';
import cityOps from './city-ops/index.js';
import gridGovernance from './grid-governance/index.js';
import hotline12345 from './hotline-12345/index.js';
import open311 from './open311/index.js';
import webhook from './webhook/index.js';
import feedback110 from './feedback-110/index.js';

export const builtinAdapters: Record<string, Adapter<any>> = {
  [hotline12345.id]: hotline12345,
  [gridGovernance.id]: gridGovernance,
  [cityOps.id]: cityOps,
  [open311.id]: open311,
  [webhook.id]: webhook,
  [feedback110.id]: feedback110,
};

/** What a module must export to count as an adapter; checked before the engine trusts it. */
export function adapterShapeProblems(value: unknown): string[] {
  if (!value || typeof value !== 'object') return ['default export is not an object (use `export default defineAdapter({...})`)'];
  const a = value as Record<string, unknown>;
  const problems: string[] = [];
  if (typeof a.id !== 'string' || !/^[a-z0-9]+(-[a-z0-9]+)*$/.test(a.id)) problems.push('id must be a kebab-case string');
  if (typeof a.version !== 'string' || !/^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$/.test(a.version)) problems.push('version must be semver (x.y.z)');
  for (const k of ['configSchema', 'outputSchema', 'exampleConfig'] as const) {
    if (!a[k] || typeof a[k] !== 'object') problems.push(`${k} must be an object`);
  }
  for (const k of ['translate', 'interpretResponse'] as const) {
    if (typeof a[k] !== 'function') problems.push(`${k} must be a function`);
  }
  for (const k of ['parseCallback', 'translateCancel', 'translateUpdate', 'translateUrge', 'outputSchemaFor'] as const) {
    if (a[k] !== undefined && typeof a[k] !== 'function') problems.push(`${k} must be a function when present`);
  }
  if (a.discovery !== undefined) {
    const d = a.discovery as Record<string, unknown> | null;
    if (!d || typeof d.requests !== 'function' || typeof d.read !== 'function') problems.push('discovery must have requests() and read()');
  }
  if (a.poll !== undefined) {
    const p = a.poll as Record<string, unknown> | null;
    if (!p || typeof p.requests !== 'function' || typeof p.parse !== 'function') problems.push('poll must have requests() and parse()');
  }
  return problems;
}

function looksLikePath(ref: string): boolean {
  return ref.startsWith('.') || isAbsolute(ref) || ref.includes('/') || ref.includes('\\') || /\.(m?[jt]s)$/.test(ref);
}

/**
 * Resolves an `adapter:` reference from config: a built-in id, or a path (relative to the config
 * file's directory) to a module whose default export is an Adapter. A TypeScript module loads
 * through tsx, registered on first need (src/kit/import-module.ts).
 */
export async function loadAdapter(ref: string, baseDir: string): Promise<Adapter<any>> {
  const builtin = Object.prototype.hasOwnProperty.call(builtinAdapters, ref) ? builtinAdapters[ref] : undefined;
  if (builtin) return builtin;
  if (!looksLikePath(ref)) {
    throw new Error(`unknown adapter "${ref}": not a built-in (${Object.keys(builtinAdapters).join(', ')}) and not a path`);
  }
  const file = resolve(baseDir, ref);
  let mod: Record<string, unknown>;
  try {
    mod = await importModule(file);
  } catch (err) {
    throw new Error(`adapter "${ref}": cannot import ${file}: ${(err as Error).message}`, { cause: err });
  }
  const problems = adapterShapeProblems(mod.default);
  if (problems.length) throw new Error(`adapter "${ref}" (${file}) is not a valid adapter: ${problems.join('; ')}`);
  return mod.default as Adapter<any>;
}
