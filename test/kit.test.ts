/**
 * The integrator kit's CLI, run as a child process the way an integrator runs it:
 * `fenliu adapter new`, `fenliu adapter test` (scaffold passes, broken adapters fail precisely),
 * and `fenliu send` against a sandbox platform.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { childEnv, cli, ROOT, sha256hex } from './helpers/fenliu.js';
import { startSandbox, type Sandbox } from '../src/sandbox/index.js';
import { webhookSecretProblem } from '../src/delivery/webhook-secret.js';

const work = mkdtempSync(join(tmpdir(), 'fenliu-kit-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

/** Runs the fenliu CLI asynchronously (the sandbox in this process must keep answering). */
function fenliu(args: string[], cwd = ROOT): Promise<{ code: number; stdout: string; stderr: string }> {
  const c = cli(args);
  return new Promise((resolve) => {
    execFile(c.command, c.args, { cwd, env: childEnv(), timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const scaffold = join(work, 'wuhan-12345');

t.test('adapter new scaffolds a folder outside the repo that passes adapter test', async (t) => {
  const made = await fenliu(['adapter', 'new', 'wuhan-12345', '--dir', scaffold]);
  t.equal(made.code, 0, made.stderr);
  t.match(made.stdout, /Created adapter wuhan-12345/);
  t.match(made.stdout, /Fill in:[\s\S]*TODO\(5\) index\.ts interpretResponse/);
  for (const f of ['index.ts', 'sdk.ts', 'schemas/config.schema.json', 'schemas/output.schema.json', 'fixtures/minimal.json', 'golden/minimal.json', 'adapter.test.ts', 'README.md']) {
    t.ok(readFileSync(join(scaffold, f), 'utf8').length > 0, `${f} written`);
  }
  t.equal(readFileSync(join(scaffold, 'sdk.ts'), 'utf8'), readFileSync(join(ROOT, 'adapters', 'sdk.ts'), 'utf8'), 'the SDK travels with the adapter');
  const secret = /callback: \{ secret: "(whsec_[^"]+)" \}/.exec(readFileSync(join(scaffold, 'README.md'), 'utf8'))?.[1];
  t.equal(secret && webhookSecretProblem(secret), undefined, 'the README\'s config carries a fresh Standard Webhooks secret');
  t.ok(secret);
  // Independent runs in parallel: each child pays fenliu's start-up.
  const [tested, again, badId] = await Promise.all([
    fenliu(['adapter', 'test', scaffold]),
    fenliu(['adapter', 'new', 'wuhan-12345', '--dir', scaffold]),
    fenliu(['adapter', 'new', 'Wuhan_12345']),
  ]);
  t.equal(tested.code, 0, tested.stdout);
  t.match(tested.stdout, /fenliu adapter test: wuhan-12345@0\.1\.0/);
  t.match(tested.stdout, /all \d+ checks passed/);
  t.match(tested.stdout, /ok {3}fixture with-caller: matches golden/);
  t.equal(again.code, 2, 'refuses to overwrite a non-empty folder');
  t.equal(badId.code, 2);
  t.match(badId.stderr, /kebab-case/);
});

t.test('a deliberately broken adapter fails adapter test with a precise message', async (t) => {
  const broken = join(work, 'broken');
  cpSync(scaffold, broken, { recursive: true });
  const src = readFileSync(join(broken, 'index.ts'), 'utf8')
    // impure: reads the clock instead of ctx.now
    .replace("deadline: ctx.interveneBy ?? null,", 'deadline: new Date().toISOString(),')
    // wrong reading of the accepted sample
    .replace("remoteTicketId: 'T-0001' },\n    validationError", "remoteTicketId: 'T-9999' },\n    validationError");
  writeFileSync(join(broken, 'index.ts'), src);
  const golden = join(work, 'golden-drift');
  cpSync(scaffold, golden, { recursive: true });
  writeFileSync(join(golden, 'index.ts'), readFileSync(join(golden, 'index.ts'), 'utf8').replace('title: truncate(alert.summary, 200),', 'title: truncate(alert.summary, 10),'));
  const notAdapter = join(work, 'not-an-adapter');
  cpSync(scaffold, notAdapter, { recursive: true });
  writeFileSync(join(notAdapter, 'index.ts'), 'export const x = 1;\n');
  const [r, g, n, missing] = await Promise.all([
    fenliu(['adapter', 'test', broken]),
    fenliu(['adapter', 'test', golden]),
    fenliu(['adapter', 'test', notAdapter]),
    fenliu(['adapter', 'test', join(work, 'nowhere')]),
  ]);
  t.equal(r.code, 1);
  t.match(r.stdout, /FAIL fixture minimal: translate is pure — impure: called Date\.now\(\) \/ new Date\(\) \(use ctx\.now\)/);
  t.match(r.stdout, /FAIL interpretResponse: accepted sample → delivered — remoteTicketId "T-0001", expected "T-9999"/);
  t.match(r.stdout, /\d+ of \d+ checks FAILED/);
  t.ok(r.stdout.indexOf('FAIL') < r.stdout.indexOf('ok  '), 'failures are listed first');

  t.equal(g.code, 1);
  t.match(g.stdout, /FAIL fixture with-caller: matches golden — .*golden\/with-caller\.json differs at \/body\/title: expected "米粉店店主与顾客发生消费纠纷，顾客要求退款", got "米粉店店主与顾客发生"/);

  t.equal(n.code, 1);
  t.match(n.stdout, /FAIL .*does not export an adapter:\n\s+FAIL default export is not an object/);

  t.equal(missing.code, 2);
  t.match(missing.stderr, /no such file or folder/);
});

t.test('fenliu send: one alert to a sandbox platform, request and response printed', async (t) => {
  const sandbox: Sandbox = await startSandbox({ platforms: [{ id: 'sb-12345', kind: 'hotline-12345' }] });
  t.teardown(() => sandbox.close());
  const url = sandbox.get('sb-12345').url;
  const cfgFile = join(work, 'send.yaml');
  writeFileSync(
    cfgFile,
    JSON.stringify({
      log: { level: 'silent' },
      sources: [{ id: 'hubei-huangshi-110', keys: [{ sha256: sha256hex('kit-src-key') }], inbound: { regionCode: '420204' } }],
      platforms: [{ id: 'p-12345', adapter: 'hotline-12345', url, options: { defaultCategoryCode: '9999' }, auth: { type: 'bearer', token: 'very-secret-token' } }],
      routes: [{ id: 'default', default: true, targets: ['p-12345'] }],
    }),
  );
  const alertFile = join(ROOT, 'schemas', 'examples', 'valid', 'noodle-shop-dispute.json');
  const eidoFile = join(ROOT, 'test', 'fixtures', 'inbound', 'eido-noodle-shop.json');
  const [ok, eido] = await Promise.all([fenliu(['send', alertFile, '--to', 'p-12345', '--config', cfgFile]), fenliu(['send', eidoFile, '--to', 'p-12345', '--config', cfgFile])]);
  t.equal(ok.code, 0, ok.stdout + ok.stderr);
  t.match(ok.stdout, new RegExp(`> POST ${url.replace(/[.]/g, '\\.')}/`));
  t.match(ok.stdout, /> authorization: \[redacted\]/, 'secrets are not printed by default');
  t.notMatch(ok.stdout, /very-secret-token/);
  t.match(ok.stdout, /> idempotency-key: dlv_send_/);
  t.match(ok.stdout, /< HTTP 2\d\d/);
  t.match(ok.stdout, /= delivered: ticket \S+/);
  t.equal(sandbox.get('sb-12345').received.length, 2, 'exactly one request per send reached the platform');
  t.equal(eido.code, 0, eido.stdout + eido.stderr);
  t.match(eido.stdout, /EIDO normalised for source hubei-huangshi-110/);

  sandbox.get('sb-12345').setFault('4xx');
  const [refused, unknown] = await Promise.all([fenliu(['send', alertFile, '--to', 'p-12345', '--config', cfgFile]), fenliu(['send', alertFile, '--to', 'nope', '--config', cfgFile])]);
  t.equal(refused.code, 1);
  t.match(refused.stdout, /< HTTP 4\d\d/);
  t.match(refused.stdout, /= reject \(http-4xx\)/);

  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /no platform "nope".*have: p-12345/);
});
