/**
 * `fenliu adapter test PATH`: the shared conformance suite (adapters/conformance.ts) over an
 * adapter module that lives anywhere, with a readable report and a non-zero exit on failure.
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { adapterShapeProblems } from '../../adapters/index.js';
import { formatResults, runConformance } from '../../adapters/conformance.js';
import type { Adapter, DiscoveryReport } from '../../adapters/sdk.js';
import { discover } from '../delivery/discovery.js';
import { createAgent, DEFAULT_TIMEOUTS, PlatformClient } from '../delivery/http.js';
import { importModule } from './import-module.js';

export class KitUsageError extends Error {}

const ENTRY_NAMES = ['index.ts', 'index.mts', 'index.js', 'index.mjs', 'adapter.ts', 'adapter.js'];

/** The module file of an adapter given as a file or a folder. */
export function adapterEntry(path: string): string {
  const abs = resolve(path);
  if (!existsSync(abs)) throw new KitUsageError(`${path}: no such file or folder`);
  if (statSync(abs).isFile()) return abs;
  const entry = ENTRY_NAMES.map((n) => join(abs, n)).find((f) => existsSync(f));
  if (!entry) throw new KitUsageError(`${path}: no ${ENTRY_NAMES.join(', ')} in this folder`);
  return entry;
}

/** Loads and shape-checks an adapter module; throws with every shape problem listed. */
export async function loadAdapterModule(path: string): Promise<{ adapter: Adapter<any>; file: string }> {
  const file = adapterEntry(path);
  let mod: Record<string, unknown>;
  try {
    mod = await importModule(file);
  } catch (err) {
    throw new Error(`cannot import ${file}: ${(err as Error).message}`, { cause: err });
  }
  const problems = adapterShapeProblems(mod.default);
  if (problems.length) throw new Error(`${file} does not export an adapter:\n${problems.map((p) => `  FAIL ${p}`).join('\n')}`);
  return { adapter: mod.default as Adapter<any>, file };
}

export async function adapterTestCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { json: { type: 'boolean', default: false }, golden: { type: 'string' }, url: { type: 'string' }, options: { type: 'string' } },
  });
  const [path] = positionals;
  if (!path) throw new KitUsageError('usage: fenliu adapter test PATH [--golden DIR] [--json] [--url PLATFORM_URL [--options JSON]]');
  adapterEntry(path); // a wrong path is a usage error, not a failing adapter
  let loaded: { adapter: Adapter<any>; file: string };
  try {
    loaded = await loadAdapterModule(path);
  } catch (err) {
    process.stdout.write(`fenliu adapter test ${path}\n\nFAIL ${(err as Error).message}\n\n1 problem: the module cannot be tested until it exports an adapter.\n`);
    return 1;
  }
  const { adapter, file } = loaded;
  const defaultGolden = join(dirname(file), 'golden');
  const goldenDir = values.golden ? resolve(values.golden) : existsSync(defaultGolden) ? defaultGolden : undefined;
  const results = await runConformance(adapter, { goldenDir });
  const failed = results.filter((r) => !r.ok);
  const discovery = values.url ? await discoveryCheck(adapter, values.url, values.options) : undefined;
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ adapter: adapter.id, version: adapter.version, file, goldenDir: goldenDir ?? null, ok: failed.length === 0, results, ...(discovery ? { discovery } : {}) }, null, 2)}\n`);
    return failed.length ? 1 : 0;
  }
  const lines = [
    `fenliu adapter test: ${adapter.id}@${adapter.version}`,
    `  module  ${file}`,
    `  golden  ${goldenDir ?? '(none: add a golden/ folder next to the module to pin translate output)'}`,
    '',
    formatResults(results),
    '',
    ...(discovery ? discoveryLines(values.url!, discovery) : []),
    failed.length ? `${failed.length} of ${results.length} checks FAILED` : `all ${results.length} checks passed`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return failed.length ? 1 : 0;
}

/**
 * `--url`: the adapter's discovery check (Open311: Service Discovery, GET services) against a
 * running platform, with `--options` (JSON) or the adapter's exampleConfig. Findings are
 * warnings: they do not fail the conformance run.
 */
async function discoveryCheck(adapter: Adapter<any>, url: string, optionsJson?: string): Promise<DiscoveryReport | { warnings: string[]; info: string[] }> {
  if (!adapter.discovery) return { warnings: [], info: [`${adapter.id} has no discovery check`] };
  let options: Record<string, unknown>;
  try {
    options = optionsJson ? (JSON.parse(optionsJson) as Record<string, unknown>) : { ...(adapter.exampleConfig as Record<string, unknown>) };
  } catch (err) {
    throw new KitUsageError(`--options is not JSON: ${(err as Error).message}`);
  }
  if (!options || typeof options !== 'object' || Array.isArray(options)) throw new KitUsageError('--options must be a JSON object (the platform\'s options)');
  const agent = createAgent(DEFAULT_TIMEOUTS);
  try {
    const client = new PlatformClient(adapter.id, url, agent, { type: 'none' }, DEFAULT_TIMEOUTS);
    return (await discover({ id: adapter.id, url, options, adapter, client })) ?? { warnings: [], info: [] };
  } finally {
    await agent.close();
  }
}

function discoveryLines(url: string, d: { warnings: string[]; info: string[]; defaults?: unknown }): string[] {
  return [
    `discovery against ${url}:`,
    ...d.info.map((i) => `  info ${i}`),
    ...d.warnings.map((w) => `  WARN ${w}`),
    ...(d.defaults ? [`  defaults from the platform: ${JSON.stringify(d.defaults)}`] : []),
    d.warnings.length ? `  ${d.warnings.length} warning(s)` : '  no warnings',
    '',
  ];
}
