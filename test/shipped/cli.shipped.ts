/**
 * The `fenliu` command as users install it: `npm pack`, `npm install ./fenliu-*.tgz` into an
 * empty folder, then every subcommand run from that install with no tsx on PATH — help,
 * version, usage errors, config check, the integrator flow (adapter new → adapter test → adapter
 * golden → send to a real loopback receiver), audit, replay, and serve's refusals (a port in
 * use, a data folder in use).
 */
import t from 'tap';
import { createServer, type Server } from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { exec, fenliu, installPackage, type Installed } from './install.js';

const work = mkdtempSync(join(tmpdir(), 'fenliu-shipped-cli-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

let inst: Installed;
t.before(async () => {
  inst = await installPackage();
});

const noStack = (t: { notMatch(s: string, re: RegExp, msg: string): unknown }, s: string) => t.notMatch(s, /\n\s+at .+:\d+:\d+\)?\n/, 'no stack trace');

t.test('the package ships what the command needs', async (t) => {
  for (const f of ['dist/src/cli.js', 'dist/console/index.html', 'schemas/config.schema.json', 'schemas/alert.v1.schema.json', 'openapi/openapi.yaml', 'config/demo.yaml', 'adapters/sdk.ts', 'README.md', 'docs/integrators.md']) {
    t.ok(existsSync(join(inst.pkg, f)), f);
  }
  t.notOk(existsSync(join(inst.pkg, 'test')), 'tests are not shipped');
  const which = await exec('sh', ['-c', 'command -v tsx || echo none'], { env: inst.env });
  t.equal(which.stdout.trim(), 'none', 'no tsx on the PATH the command runs with');
});

t.test('--version, npx fenliu, help for every command', async (t) => {
  const version = JSON.parse(readFileSync(join(inst.pkg, 'package.json'), 'utf8')).version as string;
  const [v, npx, bare] = await Promise.all([fenliu(inst, ['--version']), exec('npx', ['--no-install', 'fenliu', '--version'], { cwd: inst.dir, env: inst.env }), fenliu(inst, [])]);
  t.equal(v.code, 0);
  t.equal(v.stdout.trim(), `fenliu ${version}`);
  t.equal(npx.code, 0, npx.stderr);
  t.equal(npx.stdout.trim(), `fenliu ${version}`, 'npx fenliu runs the installed command');
  t.equal(bare.code, 2, 'no command: usage, exit 2');
  t.match(bare.stderr, /fenliu help COMMAND/);
  const commands = ['serve', 'config check', 'audit verify', 'audit compact', 'replay', 'adapter new', 'adapter test', 'adapter golden', 'send'];
  const runs = await Promise.all(commands.flatMap((c) => [fenliu(inst, [...c.split(' '), '--help']), fenliu(inst, ['help', ...c.split(' ')])]));
  commands.forEach((c, i) => {
    for (const r of [runs[2 * i], runs[2 * i + 1]]) {
      t.equal(r.code, 0, `${c} help exits 0`);
      t.match(r.stdout, new RegExp(`^fenliu ${c} `), `${c} help prints its usage`);
      t.equal(r.stderr, '', `${c} help writes nothing to stderr`);
    }
  });
  const group = await fenliu(inst, ['adapter', '--help']);
  t.equal(group.code, 0);
  t.match(group.stdout, /fenliu adapter new[\s\S]*fenliu adapter test[\s\S]*fenliu adapter golden/);
});

t.test('an unknown option or a missing argument: one line, the usage, exit 2', async (t) => {
  const cases: [string[], RegExp][] = [
    [['serve', '--bogus'], /^fenliu: serve: Unknown option '--bogus'\n\nfenliu serve /],
    [['replay', 'x', '--bogus'], /^fenliu: replay: Unknown option '--bogus'\n\nfenliu replay /],
    [['adapter', 'test', '.', '--bogus'], /^fenliu: adapter test: Unknown option '--bogus'\n\nfenliu adapter test /],
    [['adapter', 'new', 'x', '--bogus'], /^fenliu: adapter new: Unknown option '--bogus'/],
    [['send', 'a.json', '--to'], /^fenliu: send: Option '--to <value>' argument missing/],
    [['send'], /^fenliu: send: missing argument\n\nfenliu send /],
    [['config', 'check'], /^fenliu: config check: missing argument\n\nfenliu config check /],
    [['audit', 'verify'], /^fenliu: audit verify: missing argument/],
    [['audit', 'compact', 'x', '--older'], /^fenliu: audit compact: Unknown option '--older'/],
    [['adapter', 'golden'], /^fenliu: adapter golden: missing argument/],
    [['adapter', 'frobnicate'], /^fenliu: unknown subcommand "adapter frobnicate"\n\nfenliu adapter new/],
    [['frobnicate'], /^fenliu: unknown command "frobnicate"/],
    [['serve', '--role', 'boss'], /^fenliu: serve: --role must be all, api, worker, archiver, not boss/],
  ];
  const runs = await Promise.all(cases.map(([args]) => fenliu(inst, args)));
  cases.forEach(([args, re], i) => {
    t.equal(runs[i].code, 2, `${args.join(' ')} exits 2`);
    t.match(runs[i].stderr, re, args.join(' '));
    noStack(t, runs[i].stderr);
  });
});

t.test('config check runs serve\'s checks: adapter names, options, route targets, with the right pointer', async (t) => {
  const demo = parse(readFileSync(join(inst.pkg, 'config', 'demo.yaml'), 'utf8'));
  const bad = structuredClone(demo);
  bad.platforms[1].adapter = 'grid-governence';
  bad.platforms[3].options.defaultServiceCode = 1;
  bad.routes[0].targets[1] = 'huangshi-1234';
  writeFileSync(join(work, 'bad.yaml'), stringify(bad));
  const misspelt = structuredClone(demo);
  misspelt.platforms[1].adapter = 'grid-governence';
  writeFileSync(join(work, 'misspelt.yaml'), stringify(misspelt));
  writeFileSync(join(work, 'alert.json'), readFileSync(join(inst.pkg, 'schemas', 'examples', 'valid', 'noodle-shop-dispute.json')));
  const [ok, routes, adapters, send] = await Promise.all([
    fenliu(inst, ['config', 'check', 'node_modules/fenliu/config/demo.yaml']),
    fenliu(inst, ['config', 'check', join(work, 'bad.yaml')]),
    fenliu(inst, ['config', 'check', join(work, 'misspelt.yaml')]),
    fenliu(inst, ['send', join(work, 'alert.json'), '--to', 'huangshi-grid', '--config', join(work, 'misspelt.yaml')]),
  ]);
  t.equal(ok.code, 0, ok.stderr);
  t.match(ok.stdout, /demo\.yaml: ok \(1 sources, 5 platforms, 5 routes\)/);
  t.equal(routes.code, 1);
  t.match(routes.stderr, /^fenliu: config error: \/routes\/0\/targets\/1 unknown platform "huangshi-1234"/, 'cross-references first (as serve)');
  t.equal(adapters.code, 1);
  t.match(adapters.stderr, /^fenliu: config error: \/platforms\/1\/adapter unknown adapter "grid-governence"/);
  noStack(t, adapters.stderr);
  t.equal(send.code, 1);
  t.match(send.stderr, /\/platforms\/1\/adapter unknown adapter "grid-governence"/, 'send names the platform\'s own index');
  const options = structuredClone(demo);
  options.platforms[3].options.defaultServiceCode = 1;
  writeFileSync(join(work, 'options.yaml'), stringify(options));
  const feedback = structuredClone(demo);
  feedback.sources[0].feedback.adapter = 'feedbak-110';
  writeFileSync(join(work, 'feedback.yaml'), stringify(feedback));
  const [opt, fb] = await Promise.all([fenliu(inst, ['config', 'check', join(work, 'options.yaml')]), fenliu(inst, ['config', 'check', join(work, 'feedback.yaml')])]);
  t.equal(opt.code, 1);
  t.match(opt.stderr, /\/platforms\/3\/options\/defaultServiceCode must be string \(adapter open311\)/);
  t.equal(fb.code, 1);
  t.match(fb.stderr, /^fenliu: config error: \/sources\/0\/feedback\/adapter unknown adapter "feedbak-110"/, 'a source\'s feedback platform points into its source');
});

t.test('the integrator flow from the install: adapter new → test → golden → config check → send', async (t) => {
  const received: { url?: string; body: string }[] = [];
  const receiver: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      received.push({ url: req.url, body });
      res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, ticketId: 'T-0042' }));
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => receiver.close(() => r())));
  const port = (receiver.address() as { port: number }).port;
  const cwd = join(work, 'integrator');
  mkdirSync(cwd);

  const made = await fenliu(inst, ['adapter', 'new', 'wuhan-12345', '--dir', './adapters-local/wuhan-12345'], { cwd });
  t.equal(made.code, 0, made.stderr);
  noStack(t, made.stderr);
  t.match(made.stdout, /Created adapter wuhan-12345/);
  t.match(made.stdout, /Fill in:\n {2}TODO\(1\)[\s\S]*TODO\(5\) index\.ts interpretResponse[\s\S]*TODO\(8\)/, 'the TODO list integrators.md promises');
  t.same(readdirSync(join(cwd, 'adapters-local')), ['wuhan-12345'], 'no scratch folder left behind');
  const again = await fenliu(inst, ['adapter', 'new', 'wuhan-12345', '--dir', './adapters-local/wuhan-12345'], { cwd });
  t.equal(again.code, 2, 'a second run refuses the existing folder');

  const [tested, golden] = await Promise.all([
    fenliu(inst, ['adapter', 'test', './adapters-local/wuhan-12345'], { cwd }),
    fenliu(inst, ['adapter', 'golden', join(work, 'integrator', 'adapters-local', 'wuhan-12345')], { cwd: work }),
  ]);
  t.equal(tested.code, 0, tested.stdout + tested.stderr);
  t.match(tested.stdout, /all \d+ checks passed/);
  t.equal(golden.code, 0, golden.stderr);
  t.match(golden.stdout, /wrote .*golden\/minimal\.json/);

  const demo = parse(readFileSync(join(inst.pkg, 'config', 'demo.yaml'), 'utf8'));
  const cfg = {
    ...demo,
    sandbox: { enabled: false },
    platforms: [{ id: 'wuhan-12345', adapter: './adapters-local/wuhan-12345/index.ts', url: `http://127.0.0.1:${port}`, options: { ticketPath: '/api/tickets', categories: { 'dispute.*': 'D01' }, defaultType: 'Z99' } }],
    routes: [{ id: 'all', default: true, targets: ['wuhan-12345'] }],
  };
  delete cfg.sources[0].feedback;
  writeFileSync(join(cwd, 'fenliu.yaml'), stringify(cfg));
  writeFileSync(join(cwd, 'alert.json'), readFileSync(join(inst.pkg, 'schemas', 'examples', 'valid', 'noodle-shop-dispute.json')));
  const checked = await fenliu(inst, ['config', 'check', 'fenliu.yaml'], { cwd });
  t.equal(checked.code, 0, checked.stderr);
  const sent = await fenliu(inst, ['send', 'alert.json', '--to', 'wuhan-12345', '--config', 'fenliu.yaml'], { cwd });
  t.equal(sent.code, 0, sent.stdout + sent.stderr);
  t.match(sent.stdout, /adapter wuhan-12345@0\.1\.0/);
  t.match(sent.stdout, /= delivered: ticket T-0042/);
  t.equal(received.length, 1);
  t.equal(received[0].url, '/api/tickets');
  const example = JSON.parse(readFileSync(join(cwd, 'alert.json'), 'utf8')) as { source: { alertId: string } };
  t.match(JSON.parse(received[0].body), { policeAlertNo: example.source.alertId, type: 'Z99' });
});

t.test('audit verify, audit compact and replay run from the install', async (t) => {
  const dir = join(work, 'audit-empty');
  mkdirSync(dir);
  const [v, c, r, missing] = await Promise.all([
    fenliu(inst, ['audit', 'verify', dir]),
    fenliu(inst, ['audit', 'compact', dir, '--older-than', '30d']),
    fenliu(inst, ['replay', dir, '--mode', 'diff', '--config', 'node_modules/fenliu/config/demo.yaml']),
    fenliu(inst, ['audit', 'verify', join(work, 'nowhere')]),
  ]);
  t.equal(v.code, 0, v.stderr);
  t.match(v.stdout, /OK .*0 records/);
  t.equal(c.code, 0, c.stderr);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /\| 0 \| 0 \| 0 \|/);
  t.equal(missing.code, 2, 'a folder that does not exist is not "0 records, intact"');
  t.match(missing.stderr, /^fenliu: audit verify: .*nowhere: no such folder\n/);
});

t.test('serve refuses a port or a data folder in use with one line naming it', async (t) => {
  const holder = createServer();
  await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => holder.close(() => r())));
  const taken = (holder.address() as { port: number }).port;
  const demo = parse(readFileSync(join(inst.pkg, 'config', 'demo.yaml'), 'utf8'));
  const cfg = { ...demo, server: { ...demo.server, port: taken }, sandbox: { enabled: false } };
  writeFileSync(join(work, 'port.yaml'), stringify(cfg));
  const sandboxCfg = { ...demo, server: { ...demo.server, port: 0 }, sandbox: { ...demo.sandbox, platforms: demo.sandbox.platforms.map((p: { port: number }, i: number) => ({ ...p, port: i === 2 ? taken : 0 })) } };
  writeFileSync(join(work, 'sandbox-port.yaml'), stringify(sandboxCfg));
  // A data folder whose lock names a live process (this test): a running fenliu's.
  const data = join(work, 'data');
  mkdirSync(data);
  writeFileSync(join(data, 'fenliu.lock'), JSON.stringify({ pid: process.pid, redisPid: process.pid, port: 6399 }));
  const dataCfg = { ...demo, server: { ...demo.server, port: 0 }, sandbox: { enabled: false }, redis: { ...demo.redis, dataDir: data } };
  writeFileSync(join(work, 'data.yaml'), stringify(dataCfg));
  const [api, sandbox, folder] = await Promise.all([
    fenliu(inst, ['serve', '--config', join(work, 'port.yaml')]),
    fenliu(inst, ['serve', '--config', join(work, 'sandbox-port.yaml')]),
    fenliu(inst, ['serve', '--config', join(work, 'data.yaml')]),
  ]);
  t.equal(api.code, 1);
  t.equal(api.stderr, `fenliu: 127.0.0.1:${taken} (the API port) is already in use, probably by another fenliu: stop it, or change /server/port in the config\n`);
  t.equal(sandbox.code, 1);
  t.equal(sandbox.stderr, `fenliu: 127.0.0.1:${taken} (sandbox platform huangshi-cityops) is already in use, probably by another fenliu: stop it, or change /sandbox/platforms/2/port in the config\n`);
  t.equal(folder.code, 1);
  t.match(folder.stderr, new RegExp(`^fenliu: .*data is in use by another fenliu \\(pid ${process.pid}, its redis-server on 127\\.0\\.0\\.1:6399\\): stop it, or give this one another folder \\(redis\\.dataDir in the config\\) or an existing Redis \\(REDIS_URL\\)\\n$`));
  t.ok(existsSync(join(data, 'fenliu.lock')), 'the other fenliu\'s lock is left alone');
});
