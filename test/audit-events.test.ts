import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Redis } from 'ioredis';
import { startSandbox } from '../src/sandbox/index.js';
import { auditStreamKey } from '../src/audit/events.js';
import { sha256Hex } from '../src/audit/format.js';
import { startRedis } from './helpers/redis.js';
import { KEYS, ROOT, alert, api, startTestFenliu, testConfig } from './helpers/fenliu.js';
import { until } from './helpers/engine.js';

type Item = { archived: boolean; event: { type: string; alertId?: string; deliveryId?: string; actor?: { kind: string; keyId?: string }; reason?: string; data?: Record<string, any> } };

/** Runs the compiled CLI (what users run) and collects its output. */
function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [join(ROOT, 'dist', 'src', 'cli.js'), ...args], { cwd: ROOT });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

t.test('operator actions and replay runs are on the log under the documented names', async (t) => {
  const redis = await startRedis();
  const dir = await mkdtemp(join(tmpdir(), 'fenliu-audit-events-'));
  const sandbox = await startSandbox({ platforms: [{ id: 'p-cityops', kind: 'city-ops' }, { id: 'p-grid', kind: 'grid-governance' }] });
  const fast = { retry: { delaysMs: [50], jitter: 'none' }, timeouts: { connectMs: 1000, headersMs: 1000, bodyMs: 1000 } };
  const doc = testConfig({
    platforms: [
      { id: 'p-12345', adapter: 'hotline-12345', url: 'http://127.0.0.1:9', options: { defaultCategoryCode: '9999' } },
      { id: 'p-grid', adapter: 'grid-governance', url: sandbox.get('p-grid').url, options: { defaultGridCode: '420200000000', defaultEventType: 'MD99' }, ...fast },
      { id: 'p-cityops', adapter: 'city-ops', url: sandbox.get('p-cityops').url, options: {}, ...fast },
    ],
    audit: { dir, archive: true },
  });
  const f = await startTestFenliu({ redisUrl: redis.url, cfg: doc, role: 'all' });
  const r = new Redis(redis.url);
  const cfgFile = join(dir, '..', `${dir.split('/').pop()}-config.yaml`);
  await writeFile(cfgFile, JSON.stringify({ ...doc, redis: { prefix: f.cfg.redis.prefix } }));
  t.teardown(async () => {
    await sandbox.close();
    await f.stop();
    r.disconnect();
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
    await rm(cfgFile, { force: true });
  });
  const src = api(f.url, KEYS.sourceA);
  const admin = api(f.url, KEYS.admin);
  const auditor = api(f.url, KEYS.auditor);
  const state = async (id: string) => (await admin.get(`/v1/deliveries/${id}`)).body;
  const ofType = async (type: string) => (await auditor.get(`/v1/audit?type=${encodeURIComponent(type)}&limit=1000`)).body.items as Item[];

  // An operator retry: failed once (4xx), retried with a reason.
  sandbox.get('p-cityops').setFault({ fault: '4xx', times: 1 });
  const c = await src.post('/v1/alerts', alert('EV-C', { category: 'utility.water-leak', location: { address: '八泉街道 C', regionCode: '420203' } }));
  const cOps = c.body.deliveries[0].id;
  await until(async () => (await state(cOps)).state === 'failed', 10_000, 'failed');
  t.equal((await admin.post(`/v1/deliveries/${cOps}/retry`, { reason: '平台已修复字段校验' })).status, 202);
  await until(async () => (await state(cOps)).state === 'delivered', 10_000, 'delivered');

  const retry = (await ofType('operator.action')).find((i) => i.event.data?.action === 'retry');
  t.ok(retry, 'GET /v1/audit?type=operator.action finds the retry');
  t.equal(retry?.event.actor?.keyId, 'test-admin', 'with the acting key');
  t.equal(retry?.event.reason, '平台已修复字段校验', 'and the reason');
  t.same(retry?.event.data?.target, { kind: 'delivery', id: cOps }, 'and the target');

  // Dead-letter triage: a bulk retry of a platform's dead letters is one action per delivery.
  sandbox.get('p-cityops').setFault({ fault: '4xx', times: 1 });
  const d = await src.post('/v1/alerts', alert('EV-D', { category: 'utility.water-leak', location: { address: '八泉街道 D', regionCode: '420203' } }));
  const dOps = d.body.deliveries[0].id;
  await until(async () => (await state(dOps)).state === 'failed', 10_000, 'd failed');
  t.equal((await admin.post('/v1/platforms/p-cityops/dead-letters/retry', { reason: '批量重试' })).status, 202);
  const bulk = (await ofType('operator.action')).find((i) => i.event.data?.action === 'dead-letters.retry');
  t.equal(bulk?.event.deliveryId, dOps, 'dead-letter retry is an operator.action on the delivery');
  t.equal(bulk?.event.reason, '批量重试');
  await until(async () => (await state(dOps)).state === 'delivered', 10_000, 'd delivered');

  // An operator cancel (an admin key withdrawing an alert).
  const b = await src.post('/v1/alerts', alert('EV-B', { category: 'dispute.debt', location: { address: '团城山 B', regionCode: '420204' } }));
  await until(async () => (await state(b.body.deliveries[0].id)).state === 'delivered', 10_000, 'b delivered');
  t.equal((await admin.post(`/v1/alerts/${b.body.id}/cancel`, { reason: '重复警情' })).status, 200);
  const cancel = (await ofType('operator.action')).find((i) => i.event.data?.action === 'cancel');
  t.equal(cancel?.event.alertId, b.body.id, 'operator cancel is an operator.action');
  t.equal(cancel?.event.reason, '重复警情');
  t.notOk((await ofType('operator.action')).some((i) => i.event.actor?.kind === 'source'), 'a source withdrawing its own alert is not an operator action');

  // Archive, then replay through the compiled CLI.
  await until(async () => (await r.xlen(auditStreamKey(f.cfg.redis.prefix))) === 0, 10_000, 'audit stream drained');
  const before = sandbox.get('p-cityops').received.length;
  const re = await cli(['replay', dir, '--mode', 'redeliver', '--platform', 'p-cityops', '--reason', '平台数据丢失', '--key', KEYS.admin, '--url', f.url, '--config', cfgFile, '--json']);
  t.equal(re.code, 0, re.stderr);
  const out = JSON.parse(re.stdout) as { replayId: string; queued: number };
  t.equal(out.queued, 2, 'both p-cityops deliveries (C and D)');
  await until(() => sandbox.get('p-cityops').received.length >= before + 2, 10_000, 'redelivered');
  const run = async () => (await ofType('replay.*')).filter((i) => i.event.data?.replayId === out.replayId);
  await until(async () => (await run()).length === 4, 10_000, 'replay events');
  const evs = await run();
  t.same(evs.map((i) => i.event.type), ['replay.started', 'replay.delivery', 'replay.delivery', 'replay.finished'], 'started, a delivery each, finished');
  t.same(evs[0].event.data?.selection, { platform: 'p-cityops' });
  t.equal(evs[0].event.data?.mode, 'redeliver');
  t.same(evs.slice(1, 3).map((i) => i.event.data?.originalDeliveryId).sort(), [cOps, dOps].sort(), 'each delivery sent again');
  t.equal(evs[0].event.data?.selected, 2);
  t.same(evs[3].event.data?.counts, { selected: 2, queued: 2, missing: 0, refused: 0 });
  t.ok(evs.every((i) => i.event.actor?.keyId === 'test-admin'), 'the admin key is the actor of the whole run');
  t.ok((await ofType('operator.action')).some((i) => i.event.data?.action === 'redeliver' && i.event.data?.replayId === out.replayId), 'the redelivery is an operator action too');
  t.notOk((await ofType('replay.redeliver')).length, 'the old name is gone');

  // Offline diff, appended through Redis.
  const viaRedis = await cli(['replay', dir, '--mode', 'diff', '--config', cfgFile, '--redis', redis.url, '--json']);
  t.equal(viaRedis.code, 0, viaRedis.stderr);
  const id = /replay (\S+) recorded in the audit log/.exec(viaRedis.stderr)?.[1];
  t.ok(id, viaRedis.stderr);
  await until(async () => (await ofType('replay.*')).filter((i) => i.event.data?.replayId === id).length === 5, 10_000, 'diff events');
  const diffEvs = (await ofType('replay.*')).filter((i) => i.event.data?.replayId === id);
  t.same(diffEvs.map((i) => i.event.type), ['replay.started', 'replay.delivery', 'replay.delivery', 'replay.delivery', 'replay.finished']);
  t.ok(diffEvs.filter((i) => i.event.type === 'replay.delivery').every((i) => i.event.data?.result === 'same'));

  // Offline diff without Redis: a hashed report.
  const report = join(dir, '..', `${dir.split('/').pop()}-report.json`);
  t.teardown(() => rm(report, { force: true }));
  const offline = await cli(['replay', dir, '--mode', 'diff', '--config', cfgFile, '--report', report]);
  t.equal(offline.code, 0, offline.stderr);
  const text = await readFile(report, 'utf8');
  t.match(offline.stderr, `(sha256 ${sha256Hex(text)})`, 'the report hash is printed');
  t.same((JSON.parse(text).events as { type: string }[]).map((e) => e.type), ['replay.started', 'replay.delivery', 'replay.delivery', 'replay.delivery', 'replay.finished']);
});
