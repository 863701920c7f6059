/**
 * Regenerates adapters/<id>/golden/<fixture>.json from the current translate output.
 * Run after an intended mapping change (and bump the adapter's version), then review the diff:
 *   npx tsx adapters/write-golden.ts [adapter-id ...]
 */
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeGolden } from './conformance.js';
import { builtinAdapters } from './index.js';

const here = dirname(fileURLToPath(import.meta.url));
const wanted = process.argv.slice(2);
for (const id of wanted) {
  if (!builtinAdapters[id]) {
    console.error(`unknown built-in adapter "${id}"`);
    process.exit(2);
  }
}
for (const [id, adapter] of Object.entries(builtinAdapters)) {
  if (wanted.length && !wanted.includes(id)) continue;
  for (const file of writeGolden(adapter, join(here, id, 'golden'))) console.log(`wrote ${relative(process.cwd(), file)}`);
}
