/**
 * Standard Webhooks, checked against what we did not write: the spec's reference library
 * (`standardwebhooks`) verifies every fenliu signature, the verification snippet in
 * docs/delivery.md runs against a real fenliu-signed request, plain secrets are refused at config
 * check with how to convert them, and platform callbacks signed by the library are accepted.
 */
import t from 'tap';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Webhook } from 'standardwebhooks';
import { ConfigError, checkConfig } from '../src/config/load.js';
import { standardWebhookSignature } from '../src/delivery/http.js';
import { generateWebhookSecret, webhookSecretProblem } from '../src/delivery/webhook-secret.js';
import { verifySignature } from '../src/routes/lifecycle.js';
import { ROOT, testConfig } from './helpers/fenliu.js';
import { startEngineEnv } from './helpers/engine.js';
import { startRedis } from './helpers/redis.js';

const redis = await startRedis();
t.teardown(() => redis.stop());

/** The first ```js block after `marker` in a docs file, made importable (its function exported). */
function docSnippet(file: string, marker: string, exportName: string): string {
  const md = readFileSync(join(ROOT, file), 'utf8');
  const from = md.indexOf(marker);
  if (from < 0) throw new Error(`${file}: no "${marker}"`);
  const m = /```js\n([\s\S]*?)```/.exec(md.slice(from));
  if (!m) throw new Error(`${file}: no js block after "${marker}"`);
  return `${m[1]}\nexport { ${exportName} };\n`;
}

t.test('plain secrets are refused at config check, with how to convert them', async (t) => {
  const base = testConfig();
  const platform = base.platforms[0];
  const plain = structuredClone(base);
  plain.platforms[0] = { ...platform, auth: { type: 'hmac', secret: 'a-plain-shared-secret-0123456789' }, callback: { secret: 'another-plain-secret-0123456789' } };
  const err = (() => {
    try {
      checkConfig(plain, ROOT, {});
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  t.type(err, ConfigError);
  const problems = (err as ConfigError).problems;
  t.same(problems.map((p) => p.path).sort(), ['/platforms/0/auth/secret', '/platforms/0/callback/secret']);
  for (const p of problems) {
    t.match(p.message, /whsec_<base64/, 'names the form');
    t.match(p.message, /base64 -w0/, 'shows how to convert');
    t.notMatch(p.message, /plain-shared-secret|another-plain/, 'never prints the secret');
  }
  const converted = `whsec_${Buffer.from('a-plain-shared-secret-0123456789').toString('base64')}`;
  const ok = structuredClone(base);
  ok.platforms[0] = { ...platform, auth: { type: 'hmac', secret: converted }, callback: { secret: generateWebhookSecret() } };
  t.doesNotThrow(() => checkConfig(ok, ROOT, {}), 'whsec secrets pass');
  t.match(webhookSecretProblem('whsec_not base64!'), /not base64/);
  t.match(webhookSecretProblem(`whsec_${Buffer.alloc(8).toString('base64')}`), /8 bytes/);
  // A short plain secret converted keeps its 11 bytes, which the check then refuses: say generate instead.
  const short = webhookSecretProblem('demo-secret')!;
  t.match(short, /11 bytes, so it cannot be converted as it is: generate a new one/);
  t.notMatch(short, /base64 -w0/, 'no conversion advice that would fail');
  t.throws(() => standardWebhookSignature('plain-secret-that-is-long-enough', 'msg_1', 1, '{}'), /Standard Webhooks secret/, 'never signs with a plain secret');
});

t.test('the demo config only has Standard Webhooks secrets', async (t) => {
  const demo = readFileSync(join(ROOT, 'config/demo.yaml'), 'utf8');
  const secrets = [...demo.matchAll(/secret: "\$\{[A-Z_]+:-([^}]+)\}"/g)].map((m) => m[1]);
  t.ok(secrets.length >= 3);
  for (const s of secrets) t.equal(webhookSecretProblem(s), undefined, s);
});

t.test('generateWebhookSecret: keys the reference library signs and fenliu verifies', async (t) => {
  const secret = generateWebhookSecret();
  t.match(secret, /^whsec_[A-Za-z0-9+/]+=*$/);
  t.equal(Buffer.from(secret.slice(6), 'base64').length, 32);
  t.not(generateWebhookSecret(), secret, 'random');
  const body = JSON.stringify({ eventId: 'E1', 工单状态: '签收' });
  const now = new Date();
  const sig = new Webhook(secret).sign('msg_lib_1', now, body);
  t.ok(verifySignature(secret, 'msg_lib_1', String(Math.floor(now.getTime() / 1000)), body, sig), 'a platform signing with standardwebhooks is accepted');
  t.notOk(verifySignature(secret, 'msg_lib_1', String(Math.floor(now.getTime() / 1000)), `${body} `, sig));
});

t.test('a request fenliu signed verifies with standardwebhooks and with the docs snippet', async (t) => {
  const secret = generateWebhookSecret();
  const e = await startEngineEnv(t, { redis, platforms: [{ id: 'signed', kind: 'webhook', auth: { type: 'hmac', secret } }] });
  const s = await e.submit({ summary: '楼上漏水 — 中文签名测试' });
  await e.waitForState(s.deliveries.signed, 'delivered');
  const [r] = e.sandbox.get('signed').received;
  t.ok(r.headers['webhook-signature'], 'signed');

  const payload = new Webhook(secret).verify(r.body, r.headers) as Record<string, unknown>;
  t.same(payload, JSON.parse(r.body), 'standardwebhooks verifies fenliu\'s signature');
  t.throws(() => new Webhook(generateWebhookSecret()).verify(r.body, r.headers), 'and refuses it under another key');

  const dir = mkdtempSync(join(tmpdir(), 'fenliu-doc-'));
  const file = join(dir, 'verify.mjs');
  writeFileSync(file, docSnippet('docs/delivery.md', '**Standard Webhooks**', 'verify'));
  const { verify } = (await import(pathToFileURL(file).href)) as { verify: (secret: string, headers: Record<string, string>, body: string, tol?: number) => boolean };
  t.equal(verify(secret, r.headers, r.body), true, 'docs/delivery.md snippet verifies fenliu\'s request');
  t.equal(verify(secret, r.headers, `${r.body} `), false, 'and refuses a changed body');
  t.equal(verify(generateWebhookSecret(), r.headers, r.body), false, 'and another key');
});

t.test('docs/lifecycle.md callback signing snippet: standardwebhooks and fenliu verify it', async (t) => {
  const snippet = docSnippet('docs/lifecycle.md', 'Signing a callback', 'secret');
  // Run it as written, with its fetch caught instead of sent (no fixed ports in tests).
  const sent: { url: string; init: { headers: Record<string, string>; body: string } }[] = [];
  (globalThis as Record<string, unknown>).__fenliuCapture = (url: string, init: { headers: Record<string, string>; body: string }) => sent.push({ url, init });
  t.teardown(() => delete (globalThis as Record<string, unknown>).__fenliuCapture);
  const dir = mkdtempSync(join(tmpdir(), 'fenliu-doc-'));
  const file = join(dir, 'sign.mjs');
  writeFileSync(file, snippet.replace('await fetch(', 'await globalThis.__fenliuCapture('));
  const { secret } = (await import(pathToFileURL(file).href)) as { secret: string };
  t.equal(sent.length, 1, 'one callback');
  const { headers, body } = sent[0].init;
  t.equal(webhookSecretProblem(secret), undefined, 'the snippet\'s secret is a Standard Webhooks secret');
  t.same(new Webhook(secret).verify(body, headers), JSON.parse(body), 'standardwebhooks verifies the snippet\'s signature');
  t.ok(verifySignature(secret, headers['webhook-id'], headers['webhook-timestamp'], body, headers['webhook-signature']), 'fenliu verifies it');
});
