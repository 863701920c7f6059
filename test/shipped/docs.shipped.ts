/**
 * Docs that run: every shell block a reader is told to type in README.md and docs/*.md is
 * executed, in order, against a demo started from the installed package (test/shipped/install.ts).
 *
 * THE CONVENTION (for anyone writing docs):
 *
 * - A fenced block whose info string starts with `sh`, `bash`, `shell` or `console` (e.g. ```sh,
 *   ```sh verify) is run with bash, in order of appearance: README.md first, then docs/*.md in
 *   alphabetical order, all in one workspace. Indented fences (inside list items) count too.
 *   Other fences (yaml, json, ts, text, none) are never run.
 * - To keep a block from running, put this HTML comment on the line right before its fence
 *   (blank lines between are allowed), with the reason; it is reported as skipped:
 *       <!-- docs-test: skip — needs Docker -->
 *   Use it only for what cannot run here (installing, building images, benchmarks, a config or
 *   endpoint the reader brings). Everything else must run.
 * - `<!-- docs-test: cwd=var/audit -->` runs the block in that folder of the workspace.
 * - Every command must exit 0, except a line ending with a comment `# exits N…`, which must exit
 *   N. `curl` runs with --fail-with-body, so an HTTP status >= 400 fails the block (exit 22)
 *   unless the line says `# exits 22`.
 * - `alt_…` stands for the alert id: it is replaced by the newest alert id an earlier block printed.
 *
 * The workspace looks like a clone: config/ (demo.yaml with free ports), schemas/, adapters/,
 * openapi/ and dist/ come from the installed package; `fenliu` on PATH is the installed command
 * (no tsx anywhere on PATH). The demo's fixed ports (8110 for the API, 9101–9104 and 9110 for the
 * sandbox) are rewritten to free ones in demo.yaml and in every block, so this test can run
 * beside a real demo. The demo starts its own redis-server (data in the workspace's var/redis).
 */
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/fenliu.js';
import { freePort } from '../../src/redis/embedded.js';
import { exec, installPackage, type Installed } from './install.js';

export interface DocBlock {
  file: string;
  line: number;
  code: string;
  skip?: string;
  cwd?: string;
}

const FENCE = /^(\s*)(`{3,}|~{3,})\s*([^\s`]*)?.*$/;
const RUNNABLE = new Set(['sh', 'bash', 'shell', 'console']);
const MARKER = /^\s*<!--\s*docs-test:\s*(.*?)\s*-->\s*$/;

/** The shell blocks of one markdown file, with the marker (if any) right before each. */
export function shellBlocks(file: string, text: string): DocBlock[] {
  const lines = text.split('\n');
  const out: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i]);
    if (!open) continue;
    const [, indent, fence, lang = ''] = open;
    let end = i + 1;
    while (end < lines.length && !(lines[end].trim().startsWith(fence) && lines[end].trim().replace(/[`~]/g, '') === '')) end++;
    if (RUNNABLE.has(lang.toLowerCase())) {
      const code = lines
        .slice(i + 1, end)
        .map((l) => (l.startsWith(indent) ? l.slice(indent.length) : l.trimStart()))
        .join('\n');
      const block: DocBlock = { file, line: i + 1, code };
      let j = i - 1;
      while (j >= 0 && lines[j].trim() === '') j--;
      const marker = j >= 0 ? MARKER.exec(lines[j]) : null;
      if (marker) {
        const m = marker[1];
        const skip = /^skip\b\s*[—:-]?\s*(.*)$/.exec(m);
        const cwd = /^cwd=(\S+)$/.exec(m);
        if (skip) block.skip = skip[1] || '(no reason given)';
        else if (cwd) block.cwd = cwd[1];
        else throw new Error(`${file}:${j + 1}: unknown docs-test marker "${m}" (skip — reason | cwd=DIR)`);
      }
      out.push(block);
    }
    i = end;
  }
  return out;
}

const DEMO_PORTS = [8110, 9101, 9102, 9103, 9104, 9110];

/** Turns a block into a bash script: curl fails on HTTP errors, `# exits N` lines must exit N. */
export function toScript(code: string, ports: Map<number, number>, alertId: string | undefined): string {
  let body = code.replace(/(127\.0\.0\.1|localhost):(\d{4})\b/g, (m, host: string, p: string) => (ports.has(Number(p)) ? `${host}:${ports.get(Number(p))}` : m));
  if (alertId) body = body.replace(/alt_…/g, alertId);
  // Join continued lines so a `# exits N` comment applies to the whole command.
  const logical = body.replace(/\\\n/g, '\u0000').split('\n');
  const lines = logical.map((l) => {
    const m = /^(.*?)\s+#\s*exits\s+(\d+)\b.*$/.exec(l);
    if (!m) return l;
    const cmd = m[1];
    const want = m[2];
    return `{ ${cmd}\n} && __rc=0 || __rc=$?; [ "$__rc" = ${want} ] || { echo "docs-test: expected exit ${want}, got $__rc from: ${cmd.replace(/["$`\\\u0000]/g, ' ')}" >&2; exit 97; }`;
  });
  return ['set -e', 'curl() { command curl --fail-with-body --silent --show-error "$@"; }', ...lines].join('\n').replace(/\u0000/g, '\\\n');
}

const docFiles = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)];
const blocks = docFiles.flatMap((f) => shellBlocks(f, readFileSync(join(ROOT, f), 'utf8')));

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
