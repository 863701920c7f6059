/**
 * Imports a module given as a file path, TypeScript included, from compiled fenliu.
 *
 * Integrators write adapters in TypeScript. Plain Node (20.x) cannot import `.ts`, so fenliu
 * ships `tsx` as a runtime dependency and registers its ESM loader (`tsx/esm/api` register())
 * the first time a `.ts` module is needed — only then, so a JavaScript-only deployment never
 * runs a loader. Under tsx already (the tests, `npx tsx src/cli.ts`) the first import just works.
 */
import { pathToFileURL } from 'node:url';

const TS_FILE = /\.[mc]?ts$/;

/** Set once tsx's loader is ours; later TypeScript imports go through it directly. */
let viaTsx = false;

export async function importModule(file: string): Promise<Record<string, unknown>> {
  const url = pathToFileURL(file).href;
  // Node remembers a failed import per URL, so after registering tsx every TypeScript module is
  // imported under a URL of its own (the query string is ignored by tsx).
  if (viaTsx && TS_FILE.test(file)) return (await import(`${url}?tsx`)) as Record<string, unknown>;
  try {
    return (await import(url)) as Record<string, unknown>;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (viaTsx || !TS_FILE.test(file) || (code !== 'ERR_UNKNOWN_FILE_EXTENSION' && !(err instanceof SyntaxError))) throw err;
    let api: { register(): unknown };
    try {
      api = (await import('tsx/esm/api')) as { register(): unknown };
    } catch {
      throw new Error(`${file} is TypeScript and fenliu's TypeScript loader (tsx) is missing: reinstall fenliu, or point at compiled JavaScript`, { cause: err });
    }
    api.register();
    viaTsx = true;
    return (await import(`${url}?tsx`)) as Record<string, unknown>;
  }
}
