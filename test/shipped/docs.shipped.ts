/**
 * Docs that run: every shell block a reader is told to type in README.md and docs/*.md is
 * executed, in order, against a demo started from the installed package (test/shipped/install.ts).
 *
 * THE CONVENTION (for anyone writing docs):
 *
 * - A fenced block whose info string starts with `sh`, `bash`, `shell` or `console` (e.g. ```sh,
 *   ```sh verify) is run with bash, in order of appearance: README.md first, then docs/*.md in
 *   alphabetical order, all in one workspace. Indented fences (inside list items) count too.
 *   In a `console` block only the lines starting with `$ ` run (the rest is output). Other
 *   fences (yaml, json, ts, text, none) and 4-space indented code are never run: write what a
 *   reader types in a fenced sh block.
 * - To keep a block from running, put this HTML comment on the line right before its fence
 *   (blank lines between are allowed), with the reason; it is reported as skipped:
 *       <!-- docs-test: skip — needs Docker -->
 *   Use it only for what cannot run here (installing, building images, benchmarks, a config or
 *   endpoint the reader brings). Everything else must run.
 * - `<!-- docs-test: cwd=var/audit -->` runs the block in that folder of the workspace.
 * - Every command must exit 0, except a line ending with a comment `# exits N…`, which must exit
 *   N. `curl` runs with --fail-with-body, so an HTTP status >= 400 fails the block (exit 22)
 *   unless the line says `# exits 22`.
 * - `alt_…` (or `alt_...`) stands for the alert id: it is replaced by the newest alert id an earlier block printed.
 *
 * The workspace looks like a clone: config/ (demo.yaml with free ports), schemas/, adapters/,
 * openapi/ and dist/ come from the installed package; `fenliu` on PATH is the installed command
 * (no tsx anywhere on PATH). The demo's fixed ports (8110 for the API, 9101–9104 and 9110 for the
 * sandbox) are rewritten to free ones in demo.yaml and in every block, so this test can run
 * beside a real demo. The demo starts its own redis-server (data in the workspace's var/redis).
 */
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/fenliu.js';
import { freePort } from '../../src/redis/embedded.js';
import { exec, installPackage, type Installed } from './install.js';
import { DEMO_PORTS, docFiles, shellBlocks, toScript } from './doc-blocks.js';

const blocks = docFiles().flatMap((f) => shellBlocks(f, readFileSync(join(ROOT, f), 'utf8')));

const work = mkdtempSync(join(tmpdir(), 'fenliu-docs-'));
let demo: ChildProcess | undefined;
t.teardown(async () => {
  if (demo && demo.exitCode === null) {
    const exited = new Promise((r) => demo!.once('exit', r));
    demo.kill('SIGTERM');
    await exited;
  }
  rmSync(work, { recursive: true, force: true });
});

let inst: Installed;
const ports = new Map<number, number>();

t.before(async () => {
  inst = await installPackage();
  for (const p of DEMO_PORTS) ports.set(p, await freePort());
  for (const d of ['schemas', 'adapters', 'openapi', 'dist']) symlinkSync(join(inst.pkg, d), join(work, d));
  mkdirSync(join(work, 'config'));
  const demoYaml = readFileSync(join(inst.pkg, 'config', 'demo.yaml'), 'utf8').replace(/\b(8110|9101|9102|9103|9104|9110)\b/g, (p) => String(ports.get(Number(p))));
  writeFileSync(join(work, 'config', 'demo.yaml'), demoYaml);
  // The demo, as `npm start` runs it, but from the installed package.
  demo = spawn('fenliu', ['serve', '--config', 'config/demo.yaml'], { cwd: work, env: inst.env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    demo!.stderr!.on('data', (b: Buffer) => {
      stderr += b.toString();
      if (/listening on http/.test(stderr)) resolve();
    });
    demo!.once('exit', (code) => reject(new Error(`the demo exited with ${code} before listening:\n${stderr}`)));
  });
});

t.test('every shell block is run or explicitly skipped', async (t) => {
  t.ok(blocks.length >= 10, `${blocks.length} shell blocks found`);
  t.ok(blocks.some((b) => b.file === 'README.md' && !b.skip), 'the README tour runs');
  t.ok(blocks.some((b) => b.file === 'docs/integrators.md' && /fenliu adapter new/.test(b.code) && !b.skip), 'the integrator flow runs');
  for (const b of blocks.filter((x) => x.skip)) t.comment(`skipped ${b.file}:${b.line}: ${b.skip}`);
});

let lastAlertId: string | undefined;
for (const b of blocks) {
  const name = `${b.file}:${b.line} ${b.code.split('\n')[0].slice(0, 70)}`;
  if (b.skip) {
    t.test(name, { skip: b.skip }, async () => undefined);
    continue;
  }
  t.test(name, async (t) => {
    const script = toScript(b.code, ports, lastAlertId);
    const cwd = b.cwd ? join(work, b.cwd) : work;
    const r = await exec('bash', ['-c', script], { cwd, env: inst.env, timeout: 120_000 });
    t.equal(r.code, 0, `exit code\n--- script\n${script}\n--- stdout\n${r.stdout.slice(-3000)}\n--- stderr\n${r.stderr.slice(-3000)}`);
    t.notMatch(r.stderr, /\n\s+at .+:\d+:\d+\)?\n/, 'no stack trace');
    const ids = [...r.stdout.matchAll(/"id"\s*:\s*"(alt_[^"]+)"/g)];
    if (ids.length) lastAlertId = ids[ids.length - 1][1];
  });
}

t.test('the pages the README sends readers to are served by the installed demo', async (t) => {
  const base = `http://127.0.0.1:${ports.get(8110)}`;
  for (const [path, type] of [['/console/', /text\/html/], ['/docs/', /text\/html/], ['/openapi.json', /application\/json/]] as const) {
    const res = await fetch(`${base}${path}`);
    t.equal(res.status, 200, `${path} answers 200`);
    t.match(res.headers.get('content-type') ?? '', type, `${path} content-type`);
    await res.arrayBuffer();
  }
});

t.test('the README fault step does what it says: the new alert\'s 12345 delivery is a dead letter', async (t) => {
  const url = `http://127.0.0.1:${ports.get(8110)}/v1/platforms/huangshi-12345/dead-letters`;
  // Delivery is asynchronous; the engine settles within a few attempts' time.
  const deadline = Date.now() + 30_000;
  let items: { state?: string }[] = [];
  while (Date.now() < deadline) {
    const res = await fetch(url, { headers: { authorization: 'Bearer demo-admin-key' } });
    t.equal(res.status, 200);
    items = ((await res.json()) as { items: { state?: string }[] }).items;
    if (items.length) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  t.equal(items.length, 1, 'one dead letter on the sandbox 12345');
  t.equal(items[0]?.state, 'failed');
});
