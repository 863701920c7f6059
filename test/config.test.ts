import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ConfigError, checkConfig, loadConfig } from '../src/config/load.js';
import { ROOT, childEnv, cli, sha256hex, testConfig, type ConfigDoc } from './helpers/fenliu.js';

const tmp = mkdtempSync(join(tmpdir(), 'fenliu-config-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

/** The ConfigError a document raises (fails the test if it raises none). */
function problems(t: Test, doc: ConfigDoc, env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    checkConfig(structuredClone(doc), ROOT, env);
  } catch (err) {
    t.type(err, ConfigError);
    return err as ConfigError;
  }
  t.fail('expected a ConfigError');
  return new ConfigError('none');
}

const paths = (e: ConfigError) => e.problems.map((p) => p.path);

t.test('config/demo.yaml is valid and gets its defaults', async (t) => {
  const cfg = await loadConfig(join(ROOT, 'config/demo.yaml'), {});
  t.equal(cfg.server.port, 8110);
  t.equal(cfg.redis.url, undefined, 'unset ${REDIS_URL}: the embedded default applies');
  t.equal(cfg.redis.dataDir, 'var/redis');
  t.ok(cfg.routes.some((r) => r.default), 'has a default route');
  t.ok(cfg.policeOnly.includes('violence.*'));
  const open311 = cfg.platforms.find((p) => p.adapter === 'open311');
  t.equal(open311?.options.apiKey, 'demo-open311-key', '${VAR:-default} falls back');
  t.same(cfg.sources[0].keys.map((k) => k.sha256), [sha256hex('demo-110-key'), sha256hex('demo-110-key-next')], 'README demo keys match the config hashes');
  t.ok(cfg.keys.some((k) => k.sha256 === sha256hex('demo-admin-key') && k.scopes.includes('admin')));
  t.ok(cfg.keys.some((k) => k.sha256 === sha256hex('demo-auditor-key') && k.scopes.includes('audit:read')));
  const withEnv = await loadConfig(join(ROOT, 'config/demo.yaml'), { REDIS_URL: 'redis://10.0.0.1:6379', OPEN311_API_KEY: 's3cret' });
  t.equal(withEnv.redis.url, 'redis://10.0.0.1:6379');
  t.equal(withEnv.platforms.find((p) => p.adapter === 'open311')?.options.apiKey, 's3cret');
});

t.test('the test config is valid', async (t) => {
  const cfg = checkConfig(testConfig(), ROOT, {});
  t.equal(cfg.server.port, 0);
  t.equal(cfg.sandbox.enabled, false);
  t.same(cfg.routes.find((r) => r.id === 'utilities')?.fallback, [], 'fallback defaults to []');
});

t.test('a bad key is named by its path', async (t) => {
  const doc = testConfig();
  delete doc.platforms[0].url;
  let e = problems(t, doc);
  t.same(paths(e), ['/platforms/0/url']);
  t.match(e.message, /\/platforms\/0\/url is required/);

  const wrongType = testConfig();
  wrongType.platforms[1].url = 42;
  e = problems(t, wrongType);
  t.same(paths(e), ['/platforms/1/url']);
  t.match(e.message, /must be string/);

  e = problems(t, testConfig({ server: { port: 70000 } }));
  t.same(paths(e), ['/server/port']);

  e = problems(t, testConfig({ log: { level: 'loud' } }));
  t.same(paths(e), ['/log/level']);
  t.match(e.message, /info/, 'the allowed values are listed');

  e = problems(t, testConfig({ server: { prot: 8110 } }));
  t.same(paths(e), ['/server/prot'], 'an unknown key is named');

  const plainKey = testConfig();
  plainKey.sources[0].keys[0].sha256 = 'demo-110-key';
  e = problems(t, plainKey);
  t.same(paths(e), ['/sources/0/keys/0/sha256'], 'a plain-text key is refused');

  const badCategory = testConfig();
  badCategory.routes[0].match.category = ['Consumer Stuff'];
  e = problems(t, badCategory);
  t.same(paths(e), ['/routes/0/match/category/0']);

  const badRegion = testConfig();
  badRegion.routes[0].match.region = ['42020'];
  e = problems(t, badRegion);
  t.same(paths(e), ['/routes/0/match/region/0'], 'a 5-digit region prefix is not a level');
});

t.test('cross-references and uniqueness', async (t) => {
  const unknownTarget = testConfig();
  unknownTarget.routes[1].targets = ['p-grid', 'p-nowhere'];
  let e = problems(t, unknownTarget);
  t.same(paths(e), ['/routes/1/targets/1']);
  t.match(e.message, /unknown platform "p-nowhere"/);

  const unknownFallback = testConfig();
  unknownFallback.routes[1].fallback = ['p-gone'];
  e = problems(t, unknownFallback);
  t.same(paths(e), ['/routes/1/fallback/0']);

  const dupPlatform = testConfig();
  dupPlatform.platforms.push({ ...dupPlatform.platforms[0] });
  e = problems(t, dupPlatform);
  t.same(paths(e), ['/platforms/3/id']);
  t.match(e.message, /duplicate id "p-12345"/);

  const dupSource = testConfig();
  dupSource.sources[1].id = dupSource.sources[0].id;
  e = problems(t, dupSource);
  t.same(paths(e), ['/sources/1/id']);

  const dupRoute = testConfig();
  dupRoute.routes[2].id = dupRoute.routes[0].id;
  e = problems(t, dupRoute);
  t.same(paths(e), ['/routes/2/id']);

  const dupKey = testConfig();
  dupKey.sources[1].keys[0].sha256 = dupKey.sources[0].keys[1].sha256;
  e = problems(t, dupKey);
  t.same(paths(e), ['/sources/1/keys/0/sha256']);
  t.match(e.message, /\/sources\/0\/keys\/1/, 'names where the same key already is');

  const dupOperatorKey = testConfig();
  dupOperatorKey.keys[1].sha256 = dupOperatorKey.sources[0].keys[0].sha256;
  e = problems(t, dupOperatorKey);
  t.same(paths(e), ['/sources/0/keys/0/sha256']);

  const twoDefaults = testConfig();
  twoDefaults.routes[0].default = true;
  e = problems(t, twoDefaults);
  t.same(paths(e), ['/routes']);
});

t.test('${ENV} expansion', async (t) => {
  const doc = testConfig({ redis: { url: '${TEST_REDIS_URL}', prefix: '${PREFIX:-fl}' } });
  doc.platforms[0].url = 'http://${PLATFORM_HOST}:9101/api';
  const cfg = checkConfig(structuredClone(doc), ROOT, { TEST_REDIS_URL: 'redis://127.0.0.1:6390', PLATFORM_HOST: '10.1.2.3' });
  t.equal(cfg.redis.url, 'redis://127.0.0.1:6390');
  t.equal(cfg.redis.prefix, 'fl', 'default used');
  t.equal(cfg.platforms[0].url, 'http://10.1.2.3:9101/api', 'reference inside a string');

  const withPrefix = checkConfig(structuredClone(doc), ROOT, { TEST_REDIS_URL: 'redis://x', PLATFORM_HOST: 'h', PREFIX: 'custom' });
  t.equal(withPrefix.redis.prefix, 'custom');

  // Inside a longer string, a missing variable is an error naming the key and the variable.
  let e = problems(t, doc, { TEST_REDIS_URL: 'redis://x' });
  t.same(paths(e), ['/platforms/0/url']);
  t.match(e.message, /\$\{PLATFORM_HOST\} is not set/);

  // A whole-value reference to an unset variable leaves an optional key unset...
  const optional = checkConfig(structuredClone(doc), ROOT, { PLATFORM_HOST: 'h' });
  t.equal(optional.redis.url, undefined);
  // ...and a required one is reported as missing, saying which variable was not set.
  const required = testConfig();
  required.platforms[2].url = '${CITYOPS_URL}';
  e = problems(t, required);
  t.same(paths(e), ['/platforms/2/url']);
  t.match(e.message, /\$\{CITYOPS_URL\}, which is not set/);
});

t.test('loadConfig: unreadable file and bad YAML', async (t) => {
  await t.rejects(loadConfig(join(tmp, 'nope.yaml')), { name: 'ConfigError', message: /cannot read/ });
  const bad = join(tmp, 'bad.yaml');
  writeFileSync(bad, 'server: [unclosed\n');
  await t.rejects(loadConfig(bad), { name: 'ConfigError', message: /not valid YAML/ });
  const json = join(tmp, 'config.json');
  writeFileSync(json, JSON.stringify(testConfig()));
  t.equal((await loadConfig(json, {})).sources.length, 2, 'JSON works too');
});

t.test('fenliu config check: exit codes and one clear line', async (t) => {
  const good = join(tmp, 'good.yaml');
  writeFileSync(good, stringify(testConfig()));
  const badDoc = testConfig();
  badDoc.routes[0].targets = ['p-missing'];
  const bad = join(tmp, 'bad-target.yaml');
  writeFileSync(bad, stringify(badDoc));
  const run = (args: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const c = cli(args);
      execFile(c.command, c.args, { cwd: ROOT, env: childEnv(), timeout: 60_000 }, (err, stdout, stderr) => {
        const e = err as { code?: number; signal?: string } | null;
        if (e && typeof e.code !== 'number') t.comment(`child failed: ${e.signal ?? ''} ${stderr}`);
        resolve({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, stdout, stderr });
      });
    });
  // Child processes are slow to start; run them side by side.
  const [ok, broken, usage] = await Promise.all([
    run(['config', 'check', good]),
    run(['config', 'check', bad]),
    run(['config', 'check']),
  ]);
  t.equal(ok.code, 0, 'valid config: exit 0');
  t.match(ok.stdout, /ok \(2 sources, 3 platforms, 4 routes\)/);
  t.equal(broken.code, 1, 'invalid config: exit 1');
  const lines = broken.stderr.trim().split('\n');
  t.equal(lines.length, 1, 'one line');
  t.match(lines[0], /^fenliu: config error: \/routes\/0\/targets\/0 unknown platform "p-missing"$/);
  t.notMatch(broken.stderr, /at .*\.ts:\d+/, 'no stack trace');
  t.equal(usage.code, 2, 'usage error: exit 2');
});
