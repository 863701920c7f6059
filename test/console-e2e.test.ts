/**
 * The operator console end to end, in headless Chromium (Debian's /usr/bin/chromium driven by
 * playwright-core; no browser is downloaded): sign in, see submitted alerts on the flow and
 * search pages, force a dead letter with a sandbox fault, retry it from the console and see it
 * delivered; a signed-out user and an auditor cannot retry. Screenshots of every page go to
 * test-artifacts/console/.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startSandbox } from '../src/sandbox/index.js';
import { consoleDist } from '../src/console/routes.js';
import { useRedis } from './helpers/redis.js';
import { alert, api, KEYS, ROOT, SOURCE_A, startTestFenliu, testConfig } from './helpers/fenliu.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = join(ROOT, 'test-artifacts', 'console');
const skip = existsSync(CHROMIUM) ? false : `Chromium not found at ${CHROMIUM}: install it with "apt-get install -y chromium" (.ci/run does this) to run the console e2e test`;

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
  const cfg = testConfig({ platforms: base.platforms.map((p: { id: string }) => ({ ...p, url: sandbox.get(p.id).url })) });
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
  const a3 = await src.post('/v1/alerts', alert('E2E-3', { category: 'dispute.neighbor', caller: { name: '张三丰', phone: '13800138000', confidential: false }, parties: [{ role: 'neighbor', name: '李四', phone: '13900139000' }] }));
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
  await page.getByTestId('f-category').fill('dispute');
  await page.getByTestId('search').click();
  await page.getByTestId('alert-E2E-3').click();
  await page.getByTestId('delivery-p-grid').waitFor();
  t.match(await page.getByTestId('ticket-p-grid').textContent(), /\S{3,}/, 'remote ticket id shown');
  t.match(await page.getByTestId('caller').textContent(), /张三丰/, 'admin sees personal data');
  await page.getByTestId('timeline').filter({ hasNotText: /加载中/ }).waitFor();
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
  await page.reload();
  await page.getByTestId('dead-p-cityops').waitFor();
  t.equal(await page.getByTestId(`retry-${deadId}`).count(), 0, 'dead letter gone');

  // ── Platforms, SLA, statistics (the last two show "not available" until lifecycle lands).
  await page.getByTestId('nav-platforms').click();
  await page.getByTestId('circuit-p-cityops').waitFor();
  await shot(page, '06-platforms');
  await page.getByTestId('nav-sla').click();
  await page.locator('.content table, .content .error').first().waitFor();
  await shot(page, '07-sla');
  await page.getByTestId('nav-stats').click();
  await page.locator('[data-testid=stats-cards], .content .error').first().waitFor();
  await shot(page, '08-stats');

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
