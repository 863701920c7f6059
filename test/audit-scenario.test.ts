import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Redis } from 'ioredis';
import { startSandbox } from '../src/sandbox/index.js';
import { standardWebhookSignature } from '../src/delivery/http.js';
import { loadPlatforms } from '../src/delivery/platforms.js';
import { verifyAuditDir } from '../src/audit/verify.js';
import { collectAlerts, diffAlert } from '../src/audit/replay.js';
import { auditStreamKey } from '../src/audit/events.js';
import { startRedis } from './helpers/redis.js';
import { KEYS, alert, api, startTestFenliu, testConfig, validConfig } from './helpers/fenliu.js';
import { until } from './helpers/engine.js';

const SECRET = 'whsec_c2NlbmFyaW8tY2FsbGJhY2stc2VjcmV0LTAwMDE=';

/**
 * The auditor's story end to end: alerts, a retry, callbacks, a cancel and an operator retry
 * leave a log that verifies offline, gives each alert a complete ordered timeline, and replays
 * with no difference — until an adapter's mapping changes.
 */
t.test('scripted scenario: verify, timeline, replay diff', async (t) => {
  const redis = await startRedis();
  const dir = await mkdtemp(join(tmpdir(), 'fenliu-audit-scenario-'));
  const sandbox = await startSandbox({
    platforms: [
      { id: 'p-12345', kind: 'hotline-12345' },
      { id: 'p-grid', kind: 'grid-governance' },
      { id: 'p-cityops', kind: 'city-ops' },
    ],
  });
  const fast = { retry: { delaysMs: [50, 100, 200], jitter: 'none' }, timeouts: { connectMs: 1000, headersMs: 1000, bodyMs: 1000 } };
  const platforms = (transferUnit: string) => [
    { id: 'p-12345', adapter: 'hotline-12345', url: sandbox.get('p-12345').url, options: { defaultCategoryCode: '9999', transferUnit }, callback: { secret: SECRET }, ...fast },
    { id: 'p-grid', adapter: 'grid-governance', url: sandbox.get('p-grid').url, options: { defaultGridCode: '420200000000', defaultEventType: 'MD99' }, ...fast },
    { id: 'p-cityops', adapter: 'city-ops', url: sandbox.get('p-cityops').url, options: {}, ...fast },
  ];
  const doc = testConfig({ platforms: platforms('黄石市公安局110指挥中心'), audit: { dir, archive: true } });
  const f = await startTestFenliu({ redisUrl: redis.url, cfg: doc, role: 'all' });
  const r = new Redis(redis.url);
  t.teardown(async () => {
    await sandbox.close();
    await f.stop();
    r.disconnect();
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const src = api(f.url, KEYS.sourceA);
  const admin = api(f.url, KEYS.admin);
  const state = async (id: string) => (await admin.get(`/v1/deliveries/${id}`)).body;
  const waitState = (id: string, s: string) => until(async () => (await state(id)).state === s, 10_000, `${id} ${s}`);

  // A: consumer dispute in Huangshi → grid and 12345; the grid answers 5xx once.
  sandbox.get('p-grid').setFault({ fault: '5xx', times: 1 });
  const a = await src.post('/v1/alerts', alert('SCN-A', { category: 'consumer.refund', location: { address: '杭州西路88号 A', regionCode: '420204' } }));
  t.equal(a.status, 202);
  const [aGrid, a12345] = ['p-grid', 'p-12345'].map((p) => a.body.deliveries.find((d: { platformId: string }) => d.platformId === p).id);
  await waitState(aGrid, 'delivered');
  await waitState(a12345, 'delivered');
  t.equal((await state(aGrid)).attempts, 2, 'grid needed a retry');

  // 12345 signs for it, then resolves it, by signed callbacks.
  const ticket = (await state(a12345)).remoteTicketId;
  const callback = async (n: number, status: string) => {
    const body = JSON.stringify({ eventId: `SCN-CB-${n}`, 工单编号: ticket, 工单状态: status, 时间: new Date().toISOString() });
    const ts = Math.floor(Date.now() / 1000);
    const id = `scn-msg-${n}`;
    return api(f.url).post('/v1/platforms/p-12345/events', undefined, {
      raw: body,
      headers: { 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': standardWebhookSignature(SECRET, id, ts, body) },
    });
  };
  t.equal((await callback(1, '签收')).status, 200);
  t.equal((await callback(2, '办结')).status, 200);
  t.equal((await state(a12345)).state, 'resolved');

  // B: a debt dispute → grid; 110 withdraws it after delivery.
  const b = await src.post('/v1/alerts', alert('SCN-B', { category: 'dispute.debt', location: { address: '团城山 B', regionCode: '420204' } }));
  const bGrid = b.body.deliveries[0].id;
  await waitState(bGrid, 'delivered');
  t.equal((await src.post(`/v1/alerts/${b.body.id}/cancel`, { reason: '当事人已自行和解' })).status, 200);
  t.equal((await state(bGrid)).state, 'cancelled');

  // C: a water leak → city ops, refused once with a 4xx, then retried by an operator.
  sandbox.get('p-cityops').setFault({ fault: '4xx', times: 1 });
  const c = await src.post('/v1/alerts', alert('SCN-C', { category: 'utility.water-leak', location: { address: '八泉街道 C', regionCode: '420203' } }));
  const cOps = c.body.deliveries[0].id;
  await waitState(cOps, 'failed');
  t.equal((await admin.post(`/v1/deliveries/${cOps}/retry`, { reason: '平台已修复字段校验' })).status, 202);
  await waitState(cOps, 'delivered');

  // An operator re-sends A's 12345 delivery: same bytes' purpose, same idempotency key, audited.
  const before12345 = sandbox.get('p-12345').received.length;
  t.equal((await src.post(`/v1/deliveries/${a12345}/redeliver`, { reason: 'x' })).status, 403, 'redeliver needs admin');
  t.equal((await admin.post(`/v1/deliveries/${a12345}/redeliver`, { reason: '平台数据丢失，重新推送' })).status, 202);
  await until(() => sandbox.get('p-12345').received.length > before12345, 10_000, 'redelivered request');
  const again = sandbox.get('p-12345').received.at(-1)!;
  t.equal(again.headers['idempotency-key'], a12345, 'redelivery carries the original delivery id');
  t.equal((await state(a12345)).state, 'resolved', 'redelivery does not change the case state');

  // The archiver drains the stream into segment files.
  await until(async () => (await r.xlen(auditStreamKey(f.cfg.redis.prefix))) === 0, 10_000, 'audit stream drained');
  await f.stop();

  const v = await verifyAuditDir(dir);
  t.ok(v.ok, `log verifies: ${JSON.stringify(v.error)}`);
  // 18 since one event per received alert (three alerts, three alert.routed fewer).
  t.ok(v.records >= 18, `${v.records} records`);

  // Timelines: complete and in order.
  const f2 = await startTestFenliu({ redisUrl: redis.url, cfg: doc, role: 'api' });
  t.teardown(() => f2.stop());
  const auditor = api(f2.url, KEYS.auditor);
  const tl = (await auditor.get(`/v1/alerts/${a.body.id}/timeline`)).body.items as { seq: number; event: { type: string; deliveryId?: string; data?: { to?: string } } }[];
  const seqs = tl.map((i) => i.seq);
  t.same(seqs, [...seqs].sort((x, y) => x - y), 'timeline in sequence order');
  const types = tl.map((i) => `${i.event.type}${i.event.data?.to ? `:${i.event.data.to}` : ''}`);
  for (const want of ['alert.received', 'delivery.attempt:delivered', 'delivery.state:accepted', 'delivery.state:resolved']) {
    t.ok(types.includes(want), `timeline has ${want}`);
  }
  // One event per received alert: the route is on alert.received, no alert.routed of its own.
  t.notOk(types.includes('alert.routed'), `no separate alert.routed: ${types.join(',')}`);
  const receivedEv = tl.find((i) => i.event.type === 'alert.received')!.event as unknown as { data: Record<string, unknown> };
  t.same([...(receivedEv.data.targets as string[])].sort(), ['p-12345', 'p-grid'], 'alert.received holds the targets');
  t.same([...(receivedEv.data.deliveryIds as string[])].sort(), [a12345, aGrid].sort(), 'and the delivery ids');
  t.type(receivedEv.data.ruleId, 'string', 'and the rule');
  // One event per attempt: the request body, the response and the state change are facts of one attempt.
  t.notOk(types.some((x) => x === 'delivery.translated' || x === 'delivery.state:delivered'), `no separate translated or engine state events: ${types.join(',')}`);
  t.ok(types.indexOf('alert.received') < types.indexOf('delivery.state:accepted'), 'received before accepted');
  t.ok(types.includes('replay.delivery') && types.includes('operator.action'), 'the redelivery is in the timeline');
  t.ok(types.indexOf('delivery.state:accepted') < types.indexOf('delivery.state:resolved'), 'accepted before resolved');
  const gridAttempts = tl.filter((i) => i.event.type === 'delivery.attempt' && i.event.deliveryId === aGrid) as unknown as { event: { data: Record<string, unknown> } }[];
  t.equal(gridAttempts.length, 2, 'both grid attempts logged');
  const [first, retry] = gridAttempts.map((i) => i.event.data);
  t.match(first, { n: 1, from: 'sending', to: 'queued', source: 'engine', adapter: String, adapterVersion: String, sha256: /^[0-9a-f]{64}$/, body: String }, 'the first attempt carries the translated body and its state change');
  t.equal((first.request as { bodySha256?: string }).bodySha256, first.sha256, 'the body hash is the request body hash');
  t.match(retry, { n: 2, from: 'sending', to: 'delivered', source: 'engine' }, 'the retry carries its state change');
  t.notOk('body' in retry || 'adapter' in retry, 'a retry repeats no body');
  const cTl = (await auditor.get(`/v1/alerts/${c.body.id}/timeline`)).body.items as { event: { type: string; actor?: { kind: string }; reason?: string; data?: { to?: string } } }[];
  const operator = cTl.find((i) => i.event.actor?.kind === 'operator');
  t.equal(operator?.event.reason, '平台已修复字段校验', 'operator retry logged with its reason');
  const bTl = (await auditor.get(`/v1/alerts/${b.body.id}/timeline`)).body.items as { event: { type: string; data?: { to?: string } } }[];
  t.ok(bTl.some((i) => i.event.data?.to === 'cancelled'), 'cancel logged');

  // Replay diff: today's code and config translate exactly what was sent...
  const cfg = validConfig(doc);
  const logged = await collectAlerts(dir, {});
  t.equal(logged.length, 3);
  // Replay takes the route from alert.received: without it "no routing difference" below would hold vacuously.
  const routedA = logged.find((x) => x.alertId === a.body.id)?.routed;
  t.same(routedA && { ruleId: routedA.ruleId, targets: [...routedA.targets].sort() }, { ruleId: receivedEv.data.ruleId, targets: ['p-12345', 'p-grid'] }, 'replay reads the route from alert.received');
  t.ok(logged.every((x) => x.routed && x.routed.targets.length > 0), 'for every alert');
  const same = logged.flatMap((x) => diffAlert(x, cfg, new Map()).filter((d) => d.kind !== 'platform-missing'));
  t.same(same, [], 'no routing difference');
  const plats = await loadPlatforms(cfg);
  t.same(logged.flatMap((x) => diffAlert(x, cfg, plats)), [], 'no payload difference');

  // ...until an adapter's mapping changes.
  const changed = validConfig(testConfig({ platforms: platforms('黄石市公安局'), audit: { dir, archive: true } }));
  const changedPlatforms = await loadPlatforms(changed);
  const after = logged.flatMap((x) => diffAlert(x, changed, changedPlatforms));
  t.ok(after.length >= 1, 'a changed mapping is reported');
  t.ok(after.every((d) => d.kind === 'payload' && d.platformId === 'p-12345'), 'only the 12345 payloads differ');
  t.match(after[0].detail, /转办单位/, 'the difference names the field');
});
