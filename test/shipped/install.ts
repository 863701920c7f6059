/**
 * The package as users install it, shared by the test/shipped/*.shipped.ts files.
 *
 *   const inst = await installPackage();   // npm pack + npm install into an empty temp folder
 *   await run(inst, ['--version']);        // the installed `fenliu` command, no tsx on PATH
 *
 * `npm pack` runs with --ignore-scripts on the dist/ that `npm ci` (prepare) built, and refuses a
 * dist/ older than its sources: run `npm run build` after changing src/ or adapters/. The install
 * is cached by the tarball's hash (npm pack output is reproducible), so the shipped test files
 * of one run share a single `npm install`.
 */
import { execFile, type ExecFileOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ROOT } from '../helpers/fenliu.js';

export interface Installed {
  /** The folder the tarball was installed into (node_modules/fenliu inside). */
  dir: string;
  /** node_modules/fenliu: what the package ships. */
  pkg: string;
  /** A folder holding only `fenliu` (the installed bin), put first on PATH. */
  bin: string;
  /** Environment for children: PATH = bin + node + /usr/bin:/bin, no NODE_OPTIONS, no tap, no REDIS_URL. */
  env: NodeJS.ProcessEnv;
}

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (never throws on a non-zero exit). */
export function exec(command: string, args: string[], opts: ExecFileOptions = {}): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(command, args, { maxBuffer: 64 * 1024 * 1024, timeout: 300_000, ...opts, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

function newestMtime(dir: string): number {
  let max = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) max = Math.max(max, newestMtime(p));
    else if (e.name.endsWith('.ts')) max = Math.max(max, statSync(p).mtimeMs);
  }
  return max;
}

/** A child environment in which only the installed `fenliu` can be found, and no tsx. */
export function shippedEnv(bin: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k === 'NODE_OPTIONS' || k === 'REDIS_URL' || k === 'PATH' || k.startsWith('TAP') || k.startsWith('_TAPJS') || k.startsWith('npm_')) continue;
    env[k] = v;
  }
  env.PATH = [bin, dirname(process.execPath), '/usr/bin', '/bin'].join(':');
  return { ...env, ...extra };
}

let cached: Promise<Installed> | undefined;

export function installPackage(): Promise<Installed> {
  return (cached ??= doInstall());
}

/** Installs from earlier runs (other tarballs) are removed a day after they were made. */
function removeOldInstalls(): void {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith('fenliu-shipped-')) continue;
    const done = join(tmpdir(), name, '.installed');
    try {
      if (Date.now() - statSync(done).mtimeMs > 86_400_000) rmSync(join(tmpdir(), name), { recursive: true, force: true });
    } catch {
      // being installed right now, or not ours to judge
    }
  }
}

async function doInstall(): Promise<Installed> {
  removeOldInstalls();
  const cli = join(ROOT, 'dist', 'src', 'cli.js');
  if (!existsSync(cli)) throw new Error('dist/ is missing: run `npm run build` (npm ci does it) before npm run test:shipped');
  const built = statSync(cli).mtimeMs;
  const sources = Math.max(newestMtime(join(ROOT, 'src')), newestMtime(join(ROOT, 'adapters')));
  if (sources > built + 1000) throw new Error('dist/ is older than src/ or adapters/: run `npm run build` before npm run test:shipped');

  const packDir = mkdtempSync(join(tmpdir(), 'fenliu-pack-'));
  try {
    const npmEnv = { ...process.env, NODE_OPTIONS: '' };
    const packed = await exec('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', packDir], { cwd: ROOT, env: npmEnv });
    if (packed.code !== 0) throw new Error(`npm pack failed:\n${packed.stderr}`);
    const tgz = join(packDir, packed.stdout.trim().split('\n').pop()!);
    const hash = createHash('sha256').update(readFileSync(tgz)).digest('hex').slice(0, 16);
    const dir = join(tmpdir(), `fenliu-shipped-${hash}`);
    const pkg = join(dir, 'node_modules', 'fenliu');
    const bin = join(dir, 'bin');
    const done = join(dir, '.installed');
    if (!existsSync(done)) {
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'package.json'), '{ "name": "fenliu-shipped-test", "private": true }\n');
      const inst = await exec('npm', ['install', tgz, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir, env: npmEnv });
      if (inst.code !== 0) throw new Error(`npm install of the tarball failed:\n${inst.stderr}`);
      mkdirSync(bin);
      // The bin npm linked, alone in its folder: node_modules/.bin also holds tsx, which a user's
      // PATH does not, and the installed command must not need.
      symlinkSync(join(dir, 'node_modules', '.bin', 'fenliu'), join(bin, 'fenliu'));
      writeFileSync(done, new Date().toISOString());
    }
    return { dir, pkg, bin, env: shippedEnv(bin) };
  } finally {
    rmSync(packDir, { recursive: true, force: true });
  }
}

/** Runs the installed `fenliu` (found on PATH, as a user's shell finds it). */
export function fenliu(inst: Installed, args: string[], opts: ExecFileOptions = {}): Promise<Ran> {
  return exec('fenliu', args, { cwd: inst.dir, ...opts, env: { ...inst.env, ...(opts.env ?? {}) } });
}
