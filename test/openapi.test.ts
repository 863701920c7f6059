import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { createConfig, lintFromString } from '@redocly/openapi-core';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { useRedis } from './helpers/redis.js';
import { ROOT, api, childEnv, startTestFenliu } from './helpers/fenliu.js';
import { bundledOpenApi } from '../src/plugins/external/swagger.js';

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];
const source = parse(readFileSync(join(ROOT, 'openapi', 'openapi.yaml'), 'utf8'));

t.test('npm run gen output is not stale', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fenliu-gen-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'api.ts');
  const bin = join(ROOT, 'node_modules', 'openapi-typescript', 'bin', 'cli.js');
  // The same command as the "gen" script in package.json, to a temp file.
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  t.equal(pkg.scripts.gen, 'openapi-typescript openapi/openapi.yaml -o src/generated/api.ts', 'gen script as expected');
  await new Promise<void>((resolve, reject) =>
    execFile(process.execPath, [bin, 'openapi/openapi.yaml', '-o', out], { cwd: ROOT, env: childEnv(), timeout: 60_000 }, (err, _o, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve())),
  );
  const fresh = readFileSync(out, 'utf8');
  const committed = readFileSync(join(ROOT, 'src', 'generated', 'api.ts'), 'utf8');
  t.ok(fresh.includes('"/v1/alerts"'), 'generator produced the API');
  t.ok(fresh === committed, 'src/generated/api.ts matches openapi/openapi.yaml (run `npm run gen` and commit)');
});

t.test('the bundled document is valid OpenAPI 3.1 and carries the Alert schema', async (t) => {
  const doc = bundledOpenApi();
  t.equal(doc.openapi, '3.1.0');
  const alert = doc.components.schemas.Alert;
  t.ok(alert, 'components.schemas.Alert');
  t.same(alert.required, JSON.parse(readFileSync(join(ROOT, 'schemas', 'alert.v1.schema.json'), 'utf8')).required, 'it is the alert schema');
  t.equal(doc.paths['/v1/alerts'].post.requestBody.content['application/json'].schema.$ref, '#/components/schemas/Alert');
  t.notMatch(JSON.stringify(doc), /"\$ref":"\.\.\//, 'no file references left');

  const config = await createConfig({ rules: { struct: 'error', 'no-unresolved-refs': 'error' } } as any);
  const problems = await lintFromString({ source: JSON.stringify(doc), absoluteRef: '/openapi.json', config });
  const errors = problems.filter((p) => p.severity === 'error');
  t.same(
    errors.map((p) => `${p.ruleId}: ${p.message} at ${p.location?.[0]?.pointer}`),
    [],
    'no structural errors against OpenAPI 3.1',
  );

  // 3.1 schemas are JSON Schema 2020-12: every component compiles.
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  (addFormats as unknown as (a: Ajv2020) => void)(ajv);
  ajv.addSchema({ $id: 'https://fenliu.test/openapi.json', components: doc.components } as any);
  for (const name of Object.keys(doc.components.schemas)) {
    t.doesNotThrow(() => ajv.getSchema(`https://fenliu.test/openapi.json#/components/schemas/${name}`), `components.schemas.${name} compiles`);
  }
  const problem = ajv.getSchema('https://fenliu.test/openapi.json#/components/schemas/Problem')!;
  t.ok(problem({ type: 'x', title: 'x', status: 400, code: 'FENLIU_ERR_BAD_REQUEST' }));
});

/** Routes fastify registered, from printRoutes' tree: "METHOD /path/{param}". */
function registeredRoutes(tree: string): Set<string> {
  const out = new Set<string>();
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^([│ ]*)[├└]── (.+?) \(([A-Z, ]+)\)$/.exec(line);
    if (!m) continue;
    const depth = m[1].length / 4;
    const path = (depth ? stack[depth - 1] : '') + m[2];
    stack[depth] = path;
    stack.length = depth + 1;
    for (const method of m[3].split(',').map((s) => s.trim())) {
      if (method === 'HEAD') continue;
      out.add(`${method} ${path.replace(/:([A-Za-z0-9_]+)/g, '{$1}')}`);
    }
  }
  return out;
}

t.test('openapi.yaml and the routes fastify serves agree', async (t) => {
  const redis = await useRedis(t);
  const f = await startTestFenliu({ redisUrl: redis.url });
  t.teardown(() => f.stop());
  const app = f.app!;
  const registered = registeredRoutes(app.printRoutes({ commonPrefix: false }));
  t.ok(registered.has('POST /v1/alerts'), 'the route tree was parsed');

  const documented = new Set<string>();
  for (const [path, item] of Object.entries<any>(source.paths)) {
    for (const m of METHODS) if (item[m]) documented.add(`${m.toUpperCase()} ${path}`);
  }
  const served = [...registered].filter((r) => / \/(v1\/|healthz$|readyz$)/.test(r));
  for (const r of served) t.ok(documented.has(r), `${r} is in openapi.yaml`);

  const notYet: string[] = [];
  for (const op of documented) {
    const [method, path] = op.split(' ');
    const url = path.replace(/\{([^}]+)\}/g, ':$1');
    if (app.hasRoute({ method: method as 'GET', url })) t.ok(registered.has(op), `${op} is served`);
    else notYet.push(op);
  }
  if (notYet.length) t.comment(`documented but not implemented yet: ${notYet.join(', ')}`);
  for (const must of ['POST /v1/alerts', 'GET /v1/alerts', 'GET /v1/alerts/{id}', 'GET /healthz', 'GET /readyz']) t.ok(registered.has(must) && documented.has(must), `${must} documented and served`);

  const served_ = await api(f.url).get('/openapi.json');
  t.equal(served_.status, 200);
  t.same(served_.body.paths, bundledOpenApi().paths, '/openapi.json serves the bundled document');
  t.ok(served_.body.components.schemas.Alert, '/openapi.json contains the Alert schema');
});
