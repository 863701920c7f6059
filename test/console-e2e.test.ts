/**
 * The operator console end to end, in headless Chromium (Debian's /usr/bin/chromium driven by
 * playwright-core; no browser is downloaded): sign in, see submitted alerts on the flow and
 * search pages, force a dead letter with a sandbox fault, retry it from the console and see it
 * delivered; a failing platform (5xx) shows its last error and open circuit, and its delivery
 * 重试中 with the next attempt time and attempt count 2; no page in zh-CN shows a raw enum value,
 * id or code; a signed-out user and an auditor cannot retry. Screenshots of every page go to
 * test-artifacts/console/.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parse } from 'yaml';
import { AUDIT_EVENT_TYPES } from '../src/audit/events.js';
import { DEFAULT_CATEGORY_NAMES } from '../src/console/categories.js';
import { DELIVERY_STATES } from '../src/lifecycle/states.js';
import { startSandbox } from '../src/sandbox/index.js';
import { consoleDist } from '../src/console/routes.js';
import { useRedis } from './helpers/redis.js';
import { alert, api, KEYS, ROOT, SOURCE_A, SOURCE_B, startTestFenliu, testConfig, type ConfigDoc } from './helpers/fenliu.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = join(ROOT, 'test-artifacts', 'console');
const skip = existsSync(CHROMIUM) ? false : `Chromium not found at ${CHROMIUM}: install it with "apt-get install -y chromium" (.ci/run does this) to run the console e2e test`;

/**
 * Every raw value the console could show instead of a name: the enums of the OpenAPI document and
 * the alert schema, delivery states, audit event types, error classes, state-change sources,
 * scopes, the party roles the test sends, config ids (platforms, sources, routes), category codes,
 * and the old English column headers.
 */
function rawEnumValues(cfg: ConfigDoc): Set<string> {
  const out = new Set<string>();
  const walk = (o: unknown): void => {
    if (Array.isArray(o)) o.forEach(walk);
    else if (o && typeof o === 'object') {
      const e = (o as { enum?: unknown }).enum;
      if (Array.isArray(e)) for (const v of e) if (typeof v === 'string') out.add(v);
      Object.values(o).forEach(walk);
    }
  };
  walk(parse(readFileSync(join(ROOT, 'openapi', 'openapi.yaml'), 'utf8')));
  walk(JSON.parse(readFileSync(join(ROOT, 'schemas', 'alert.v1.schema.json'), 'utf8')));
  const config = JSON.parse(readFileSync(join(ROOT, 'schemas', 'config.schema.json'), 'utf8'));
  walk(config.$defs.scope);
  for (const v of [...DELIVERY_STATES, ...AUDIT_EVENT_TYPES]) out.add(v);
  const policy = readFileSync(join(ROOT, 'src', 'delivery', 'policy.ts'), 'utf8');
  for (const m of policy.slice(policy.indexOf('export type ErrorClass'), policy.indexOf('export interface Decision')).matchAll(/'([a-z0-9-]+)'/g)) out.add(m[1]);
  for (const v of ['engine', 'callback', 'poll', 'timer', 'operator', 'source', 'reroute', 'repeat', 'ingest']) out.add(v);
  for (const v of ['alert.repeat', 'alert.updated', 'alert.rerouted', 'delivery.transition-refused', 'delivery.feedback', 'delivery.escalation', 'replay.redeliver', 'audit.malformed']) out.add(v);
  for (const v of ['neighbor', 'merchant', 'cancel', 'update', 'urge', 'redeliver', 'type', 'actor']) out.add(v);
  for (const list of [cfg.platforms, cfg.sources, cfg.routes] as { id: string }[][]) for (const x of list) out.add(x.id);
  for (const code of [...Object.keys(DEFAULT_CATEGORY_NAMES), ...Object.keys(cfg.categories ?? {})]) out.add(code);
  return out;
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

t.test('console end to end in headless Chromium', { skip, timeout: 90_000 }, async (t) => {
  if (!existsSync(join(consoleDist(), 'index.html'))) {
    const b = spawnSync('npm', ['run', 'build:console'], { cwd: ROOT, stdio: 'inherit' });
    t.equal(b.status, 0, 'console built');
  }
  mkdirSync(ARTIFACTS, { recursive: true });
  const { chromium } = await import('playwright-core');

  const redis = await useRedis(t);
  const sandbox = await startSandbox({
    platforms: [
      { id: 'p-12345', kind: 'hotline-12345' },
      { id: 'p-grid', kind: 'grid-governance' },
      { id: 'p-cityops', kind: 'city-ops' },
    ],
  });
  t.teardown(() => sandbox.close());
  const base = testConfig();
  // Names for every id (the console must show them, never the ids); p-12345 retries once soon,
  // then not for ten minutes, and its circuit opens at the second failure.
  const NAMES: Record<string, string> = { 'p-12345': '黄石市12345热线', 'p-grid': '下陆区综治网格平台', 'p-cityops': '黄石城运平台', [SOURCE_A]: '黄石市110', [SOURCE_B]: '武汉市110' };
  const cfg = testConfig({
    platforms: base.platforms.map((p: { id: string }) => ({
      ...p,
      name: NAMES[p.id],
      url: sandbox.get(p.id).url,
      ...(p.id === 'p-12345' ? { retry: { delaysMs: [300, 600_000], jitter: 'none' }, circuitBreaker: { failureThreshold: 2, cooldownMs: 600_000 } } : {}),
    })),
    sources: base.sources.map((x: { id: string }) => ({ ...x, name: NAMES[x.id] })),
    routes: base.routes.map((r: { id: string }, i: number) => ({ ...r, name: `规则${i + 1}` })),
    // The installation's own name for a category, over the built-in one.
    categories: { 'consumer.refund': '消费纠纷', 'assist.pet': { zh: '宠物求助', en: 'Pet' } },
  });
  const f = await startTestFenliu({ redisUrl: redis.url, cfg, role: 'all' });
  t.teardown(() => f.stop());
  const src = api(f.url, KEYS.sourceA);
  const admin = api(f.url, KEYS.admin);
  const stateOf = async (alertId: string) => ((await admin.get(`/v1/alerts/${alertId}`)).body.deliveries as { id: string; state: string; platformId: string }[]);

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  t.teardown(() => browser.close());
  const problems: string[] = [];
  const newPage = async () => {
    const context = await browser.newContext({ viewport: { width: 1366, height: 768 }, locale: 'zh-CN' });
    const page = await context.newPage();
    page.setDefaultTimeout(10_000);
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) problems.push(`csp: ${m.text()}`);
    });
    return { context, page };
  };
  const shot = (page: import('playwright-core').Page, name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
  /** fetch() from inside the page, with the page's cookies, as the console would (or an attacker's script on it could). */
  const pageFetch = (page: import('playwright-core').Page, path: string, init: { method?: string; body?: unknown; csrf?: boolean } = {}) =>
    page.evaluate(
      async ({ path, init }) => {
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (init.csrf) {
          const me = await fetch('/console/api/session').then((r) => (r.ok ? r.json() : {}));
          headers['x-csrf-token'] = (me as { csrfToken?: string }).csrfToken ?? '';
        }
        const r = await fetch(path, { method: init.method ?? 'GET', headers, body: init.body === undefined ? undefined : JSON.stringify(init.body), credentials: 'same-origin' });
        return { status: r.status, body: await r.text() };
      },
      { path, init },
    );

  // Alerts through the API: a consumer dispute (two platforms), a utility case, one with a caller.
  const a1 = await src.post('/v1/alerts', alert('E2E-1'));
  const a2 = await src.post('/v1/alerts', alert('E2E-2', { category: 'utility.water-leak' }));
  const a3 = await src.post(
    '/v1/alerts',
    alert('E2E-3', {
      category: 'dispute.neighbor',
      priority: 'urgent',
      caller: { name: '张三丰', phone: '13800138000', confidential: false },
      parties: [{ role: 'neighbor', name: '李四', phone: '13900139000' }, { role: 'merchant', name: '王五' }],
      police: { unit: '下陆派出所', sceneStatus: 'controlled', assessment: '邻里噪声纠纷，建议网格调解' },
    }),
  );
  for (const a of [a1, a2, a3]) t.equal(a.status, 202);
  await waitFor('first deliveries', async () => (await Promise.all([a1, a2, a3].map((a) => stateOf(a.body.id)))).flat().every((d) => d.state === 'delivered'));

  // ── Signed out: the sign-in form, and no retry.
  const { context, page } = await newPage();
  await page.goto(`${f.url}/console`);
  await page.getByTestId('key').waitFor();
  const csp = await page.evaluate(() => document.querySelectorAll('script:not([src])').length);
  t.equal(csp, 0, 'no inline scripts');
  await shot(page, '00-signin');
  const anon = await pageFetch(page, `/v1/deliveries/${a1.body.deliveries[0].id}/retry`, { method: 'POST', body: { reason: 'x' } });
  t.equal(anon.status, 401, 'signed out: retry refused');
  await page.getByTestId('key').fill('wrong-key');
  await page.getByTestId('signin').click();
  await page.getByTestId('signin-error').filter({ hasText: /./ }).waitFor();

  // ── Admin signs in: flow page shows the alerts.
  await page.getByTestId('key').fill(KEYS.admin);
  await page.getByTestId('signin').click();
  await page.getByTestId('who').filter({ hasText: 'test-admin' }).waitFor();
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'fenliu_console');
  t.ok(session, 'session cookie set');
  t.equal(session?.httpOnly, true, 'httpOnly');
  t.equal(session?.sameSite, 'Strict', 'SameSite=Strict');
  t.notOk(cookies.some((c) => c.value.includes(KEYS.admin)), 'the key is not in any cookie');
  await page.getByTestId('kpi-received').filter({ hasText: '3' }).waitFor();
  await page.getByTestId('out-p-grid').filter({ hasText: /^[1-9]/ }).waitFor();
  t.equal(await page.getByTestId('out-p-cityops').textContent(), '1', 'delivered out per platform');
  await page.getByTestId('state-delivered').waitFor();
  await shot(page, '01-flow');

  // ── Search: all three, then a filter on the source alert id; then the detail.
  await page.getByTestId('nav-alerts').click();
  for (const id of ['E2E-1', 'E2E-2', 'E2E-3']) await page.getByTestId(`alert-${id}`).waitFor();
  await shot(page, '02-alerts');
  await page.getByTestId('f-alertId').fill('E2E-2');
  await page.getByTestId('search').click();
  await page.getByTestId('count').filter({ hasText: /^1 / }).waitFor();
  t.equal(await page.getByTestId('alert-E2E-1').count(), 0, 'filtered out');
  await page.getByTestId('f-alertId').fill('');
  await page.getByTestId('f-category').selectOption('dispute');
  await page.getByTestId('search').click();
  await page.getByTestId('alert-E2E-3').click();
  await page.getByTestId('delivery-p-grid').waitFor();
  t.match(await page.getByTestId('ticket-p-grid').textContent(), /\S{3,}/, 'remote ticket id shown');
  t.match(await page.getByTestId('caller').textContent(), /张三丰/, 'admin sees personal data');
  await page.getByTestId('timeline').filter({ hasNotText: /加载中/ }).waitFor();
  t.match(await page.getByTestId('timeline').textContent(), /接收警情[^]*分流 → \S/, 'the timeline says where the alert went (from its alert.received)');
  await shot(page, '03-alert-detail');

  // ── A dead letter (sandbox 4xx is never retried), retried from the console, then delivered.
  sandbox.get('p-cityops').setFault('4xx');
  const dead = await src.post('/v1/alerts', alert('E2E-DEAD', { category: 'utility.water-leak' }));
  const deadId = dead.body.deliveries[0].id as string;
  await waitFor('dead letter', async () => (await stateOf(dead.body.id))[0].state === 'failed');
  sandbox.get('p-cityops').setFault('none');
  await page.getByTestId('nav-dead').click();
  await page.getByTestId(`retry-${deadId}`).waitFor();
  await shot(page, '04-dead-letters');
  await page.getByTestId(`retry-${deadId}`).click();
  await page.getByTestId('confirm-dialog').waitFor();
  await page.getByTestId('confirm').click(); // no reason: refused by the dialog
  t.ok(await page.getByTestId('confirm-dialog').isVisible(), 'a reason is required');
  await page.getByTestId('reason').fill('平台已恢复，重新推送');
  await shot(page, '05-retry-dialog');
  await page.getByTestId('confirm').click();
  await page.getByTestId('flash').filter({ hasText: /已重新排队/ }).waitFor();
  await waitFor('redelivery', async () => (await stateOf(dead.body.id))[0].state === 'delivered');
  const hist = (await admin.get(`/v1/deliveries/${deadId}`)).body.history as { to: string; source: string; note?: string }[];
  t.ok(hist.some((h) => h.source === 'operator' && h.to === 'queued' && h.note === '平台已恢复，重新推送'), 'retry recorded with the reason');
  const afterRetry = (await admin.get(`/v1/deliveries/${deadId}`)).body;
  t.same(afterRetry.attemptLog.map((x: { n: number }) => x.n), [1, 2], 'attempt rows numbered across the operator retry');
  t.equal(afterRetry.attempts, 2, 'attempt count goes on after the operator retry');
  await page.reload();
  await page.getByTestId('dead-p-cityops').waitFor();
  t.equal(await page.getByTestId(`retry-${deadId}`).count(), 0, 'dead letter gone');

  // ── A failing platform: 5xx on every request. Two attempts, then the next one is ten minutes away.
  sandbox.get('p-12345').setFault({ fault: '5xx', status: 503 });
  const failing = await src.post('/v1/alerts', alert('E2E-RETRY', { category: 'assist.unlock' }));
  t.equal(failing.status, 202);
  const retryId = failing.body.deliveries[0].id as string;
  const retrying = await waitFor('two failed attempts', async () => {
    const d = (await admin.get(`/v1/deliveries/${retryId}`)).body;
    return d.attempts === 2 && d.retrying ? d : undefined;
  });
  t.equal(retrying.state, 'queued', 'the lifecycle state is still queued');
  t.ok(Date.parse(retrying.nextAttemptAt) > Date.now() + 500_000, 'next attempt about ten minutes away');
  t.same(retrying.attemptLog.map((x: { n: number; status: number }) => [x.n, x.status]), [[1, 503], [2, 503]], 'attempts #1 and #2');
  const plat = ((await admin.get('/v1/platforms')).body.items as any[]).find((p) => p.id === 'p-12345');
  t.match(plat, { circuit: 'open', circuitFailures: 2, circuitThreshold: 2, lastFailure: { errorClass: 'http-5xx', status: 503, deliveryId: retryId } }, 'GET /v1/platforms: circuit open, last error');
  t.ok(plat.queueDepth >= 1 && plat.oldestWaitingAgeMs >= 0, `queue depth ${plat.queueDepth}, oldest waiting ${plat.oldestWaitingAgeMs} ms`);

  await page.goto(`${f.url}/console#/alerts/${failing.body.id}`);
  await page.getByTestId('state-p-12345').filter({ hasText: '重试中' }).waitFor();
  t.equal(await page.getByTestId('attempts-p-12345').textContent(), '2', '尝试次数 2 after two attempts');
  t.match(await page.getByTestId('next-attempt-p-12345').textContent(), /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/, 'next attempt time shown');
  t.match(await page.getByTestId('state-p-12345').textContent(), /已尝试 2 次/, 'attempt count beside 重试中');
  const rows = await page.getByTestId('attempts-table-p-12345').locator('tbody tr td:first-child').allTextContents();
  t.same(rows, ['1', '2'], 'attempt rows #1 and #2');
  await shot(page, '06-retrying-delivery');

  await page.getByTestId('nav-flow').click();
  await page.getByTestId('state-retrying').filter({ hasText: /^1/ }).waitFor();

  // ── Platforms: the failing platform's last error and its circuit, as the engine sees them.
  await page.getByTestId('nav-platforms').click();
  await page.getByTestId('circuit-p-cityops').waitFor();
  await page.getByTestId('circuit-p-12345').filter({ hasText: '熔断' }).waitFor();
  t.match(await page.getByTestId('last-error-p-12345').textContent(), /平台服务器错误（5xx）.*HTTP 503/, 'last error: class and HTTP status');
  t.match(await page.getByTestId('last-error-p-12345').textContent(), /\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}/, 'last error: time');
  t.match(await page.getByTestId('platform-p-12345').textContent(), NAMES['p-12345'], 'platform by name');
  t.match(await page.getByTestId('depth-p-12345').textContent(), /^[1-9]/, 'queue depth');
  t.notMatch(await page.getByTestId('oldest-p-12345').textContent(), /^—$/, 'oldest waiting age');
  await shot(page, '06-platforms');
  await page.getByTestId('nav-sla').click();
  await page.locator('.content table, .content .error').first().waitFor();
  await shot(page, '07-sla');
  await page.getByTestId('nav-stats').click();
  await page.locator('[data-testid=stats-cards], .content .error').first().waitFor();
  await shot(page, '08-stats');

  // ── No raw enum value, id or code on any page in zh-CN: every page's visible text, word by word.
  const rawValues = rawEnumValues(cfg);
  const pages = ['flow', 'alerts', `alerts/${a1.body.id}`, `alerts/${a3.body.id}`, `alerts/${failing.body.id}`, `alerts/${dead.body.id}`, 'dead', 'platforms', 'sla', 'stats'];
  for (const hash of pages) {
    await page.goto(`${f.url}/console#/${hash}`);
    await page.waitForFunction(() => {
      const c = document.querySelector('.content');
      return !!c && !c.textContent!.includes('加载中') && !!c.querySelector('table, .error');
    });
    // Charts and late tables settle within a tick of the last fetch.
    await page.waitForLoadState('networkidle').catch(() => undefined);
    // What a platform or person wrote (error bodies, reasons; class .verbatim) is evidence, shown as it is.
    const text = await page.evaluate(() => {
      const words = [...document.querySelectorAll<HTMLElement>('.verbatim')];
      for (const el of words) el.style.display = 'none';
      const all = document.body.innerText;
      for (const el of words) el.style.display = '';
      return all;
    });
    const found = [...new Set(text.split(/[\s,，、:：;；()（）[\]【】·→/|"'“”]+/).filter((w) => rawValues.has(w)))];
    t.same(found, [], `#/${hash}: no raw enum values in zh-CN`);
  }

  // ── English.
  await page.getByTestId('nav-flow').click();
  await page.getByTestId('lang').click();
  await page.getByTestId('nav-flow').filter({ hasText: 'Flow' }).waitFor();
  await page.getByTestId('kpi-received').waitFor();
  await shot(page, '09-flow-en');
  await page.getByTestId('lang').click();

  // ── Queue dashboard (bull-board), admin only.
  const qres = await page.goto(`${f.url}/admin/queues`);
  t.equal(qres?.status(), 200, 'bull-board for admin');
  await page.waitForLoadState('networkidle').catch(() => undefined);
  await shot(page, '10-queues');

  // ── A change without the CSRF token is refused even with the session cookie.
  await page.goto(`${f.url}/console#/flow`);
  await page.getByTestId('who').waitFor();
  const noToken = await pageFetch(page, `/v1/platforms/p-cityops/dead-letters/retry`, { method: 'POST', body: { reason: 'x' } });
  t.equal(noToken.status, 403, 'no CSRF token: refused');
  t.match(noToken.body, /CSRF/);

  // ── Sign out: the session is gone server-side too.
  await page.getByTestId('signout').click();
  await page.getByTestId('key').waitFor();
  t.equal((await pageFetch(page, '/console/api/session')).status, 401, 'signed out');
  t.equal((await pageFetch(page, `/v1/deliveries/${deadId}/retry`, { method: 'POST', body: { reason: 'x' }, csrf: true })).status, 401, 'signed out: cannot retry');
  await context.close();

  // ── An auditor sees dead letters but cannot retry them.
  sandbox.get('p-cityops').setFault('4xx');
  const dead2 = await src.post('/v1/alerts', alert('E2E-DEAD-2', { category: 'utility.water-leak' }));
  const dead2Id = dead2.body.deliveries[0].id as string;
  await waitFor('second dead letter', async () => (await stateOf(dead2.body.id))[0].state === 'failed');
  sandbox.get('p-cityops').setFault('none');
  const aud = await newPage();
  await aud.page.goto(`${f.url}/console#/dead`);
  await aud.page.getByTestId('key').fill(KEYS.auditor);
  await aud.page.getByTestId('signin').click();
  await aud.page.getByTestId('admin-only').waitFor();
  await aud.page.getByTestId('dead-p-cityops').filter({ hasText: dead2Id }).waitFor();
  t.equal(await aud.page.getByTestId(`retry-${dead2Id}`).count(), 0, 'auditor: no retry button');
  t.equal(await aud.page.getByTestId('retry-all-p-cityops').count(), 0, 'auditor: no retry-all button');
  await shot(aud.page, '11-dead-letters-auditor');
  const audRetry = await pageFetch(aud.page, `/v1/deliveries/${dead2Id}/retry`, { method: 'POST', body: { reason: 'x' }, csrf: true });
  t.equal(audRetry.status, 403, 'auditor: retry refused by the API');
  t.equal((await stateOf(dead2.body.id))[0].state, 'failed', 'still a dead letter');
  t.equal((await pageFetch(aud.page, '/admin/queues')).status, 403, 'auditor: no queue dashboard');
  await aud.context.close();

  // ── A source key's console session sees its alerts with personal data masked.
  const srcView = await newPage();
  await srcView.page.goto(`${f.url}/console#/alerts/${a3.body.id}`);
  await srcView.page.getByTestId('key').fill(KEYS.sourceA);
  await srcView.page.getByTestId('signin').click();
  await srcView.page.getByTestId('masked').waitFor();
  const caller = await srcView.page.getByTestId('caller').textContent();
  t.notMatch(caller, /张三丰|13800138000/, 'caller masked');
  t.match(caller, /张\*+/);
  const raw = await pageFetch(srcView.page, `/v1/alerts/${a3.body.id}`);
  t.notMatch(raw.body, /张三丰|13800138000|李四|13900139000/, 'masked on the server, not only on screen');
  const rawTimeline = await pageFetch(srcView.page, `/v1/alerts/${a3.body.id}/timeline`);
  t.equal(rawTimeline.status, 200);
  t.notMatch(rawTimeline.body, /张三丰|13800138000|李四|13900139000/, 'the timeline (alert.received carries the body) is masked too');
  await shot(srcView.page, '12-alert-detail-masked');
  await srcView.context.close();
  t.equal((await api(f.url, KEYS.sourceA).get(`/v1/alerts/${a3.body.id}`)).body.alert.caller.name, '张三丰', 'the API with the key itself is unchanged');
  t.equal((await src.get('/v1/alerts?source=' + SOURCE_A)).status, 200);

  t.same(problems, [], 'no page errors or CSP violations');
});
