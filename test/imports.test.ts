/**
 * No import circles, in the product or its bench: a circle makes load order decide which module
 * sees the other half-initialised, and it hides which concern owns a type. madge (the maintained
 * tool for this) reads the same tsconfig the build uses, so type-only imports count as well.
 */
import t from 'tap';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './helpers/fenliu.js';

type MadgeResult = { circular(): string[][]; obj(): Record<string, string[]>; warnings(): { skipped: string[] } };
type Madge = (paths: string | string[], config: Record<string, unknown>) => Promise<MadgeResult>;
// madge is CommonJS with no type declarations of its own.
const madge = createRequire(import.meta.url)('madge') as Madge;

const config = { baseDir: ROOT, fileExtensions: ['ts'], tsConfig: join(ROOT, 'tsconfig.json') };

t.test('src, adapters, console and bench import no module that imports them back', async (t) => {
  const res = await madge(['src', 'adapters', 'console/src', 'bench'].map((d) => join(ROOT, d)), config);
  const files = Object.keys(res.obj());
  t.ok(files.length > 140, `madge read the tree (${files.length} modules)`);
  t.ok(files.includes('src/store/records.ts') && files.includes('src/audit/cli.ts'), 'the modules that once formed circles are among them');
  // Only a package's subpath madge cannot resolve (tsx/esm/api) may be skipped, never a file of ours.
  const ours = (s: string) => /^(\.|\/|src\/|adapters\/|console\/|bench\/)/.test(s);
  t.same(res.warnings().skipped.filter(ours), [], 'no file of ours skipped');
  t.same(res.circular(), [], 'no import circle');
});

t.test('the check finds a circle when there is one', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fenliu-imports-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'a.ts'), "import type { B } from './b.js';\nexport type A = { b?: B };\n");
  writeFileSync(join(dir, 'b.ts'), "import { type A } from './a.js';\nexport type B = { a?: A };\n");
  writeFileSync(join(dir, 'c.ts'), "import type { A } from './a.js';\nexport const c: A = {};\n");
  const res = await madge(dir, { ...config, baseDir: dir });
  t.same(res.circular(), [['a.ts', 'b.ts']], 'a type-only circle of two files is reported');
});
