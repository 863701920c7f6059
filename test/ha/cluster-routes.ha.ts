/**
 * Redis Cluster (3 masters, real processes): the routes merged after the bucket layout each run
 * their reads, scripts and MULTIs on the cluster, where a command over keys of two slots is
 * refused (CROSSSLOT, a 500). Covered: a platform's last failed attempt (written in the attempt's
 * script) and queue depth on GET /v1/platforms, the console flow with retrying deliveries, a
 * repeat call matched by phone and place (two buckets), an operator's update (operator.action in
 * the alert's bucket), redeliver, and a replay run (its key in the audit stream's slot).
 * Then the case lifecycle: a signed callback (Standard Webhooks) moving a delivery to accepted and
 * resolved, feedback notices to the 110 system, a short intervention deadline expiring (overdue
 * flag, GET /v1/sla), GET /v1/stats, the timeline and GET /v1/audit of the alert, an offline
 * `fenliu replay --mode diff` (compiled CLI) recording into the cluster, and the retention sweep.
 */
import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { Cluster, type Redis } from 'ioredis';
import { collectAlerts } from '../../src/audit/replay.js';
import { standardWebhookSignature } from '../../src/delivery/http.js';
import { startSandbox } from '../../src/sandbox/index.js';
import { deliveryId } from '../../src/store/ids.js';
import { keys as redisKeys } from '../../src/store/keys.js';
import { each, zcardAll } from '../../src/store/fanout.js';
import { sweepRetention } from '../../src/store/retention.js';
import { startCluster } from '../helpers/cluster.js';
import { ADAPTER_OPTIONS, FAST } from '../helpers/engine.js';
import { KEYS, ROOT, alert, api, childEnv, startTestFenliu, testConfig } from '../helpers/fenliu.js';
import { FEEDBACK_ID, HOTLINE_WORD, hotlineEvent } from '../helpers/lifecycle.js';
import { Receiver, faultConfig, until, writeConfig } from '../faults/harness.js';

const c = await startCluster({ masters: 3, replicas: 0 });
t.teardown(() => c.stop());

t.test('Cluster: platforms, flow, repeat calls, operator actions and replays', async (t) => {
  const receiver = await new Receiver().listen();
  let f: Awaited<ReturnType<typeof startTestFenliu>> | undefined;
  t.teardown(async () => {
    await f?.stop();
    await receiver.close();
  });
  let failing = true;
  receiver.behave = () => (failing ? '503' : 'ok');
  const doc = faultConfig(receiver.url, { redis: { prefix: 'hcr', cluster: c.nodes }, log: { level: 'silent' }, repeat: { enabled: true, window: '72h' } });
  f = await startTestFenliu({ cfg: doc, role: 'all' });
  const src = api(f.url, KEYS.sourceA);
  const admin = api(f.url, KEYS.admin);

  const first = await src.post('/v1/alerts', alert('CL-1', { caller: { phone: '13800138000' }, location: { address: '湖北省黄石市下陆区杭州西路1号', regionCode: '420204' } }));
  t.equal(first.status, 202, first.text);
  const id = first.body.id as string;

  // A failed attempt: the last error is written in the attempt's script, read over the buckets.
  let lastSeen = '';
  const platform = await until('last failure on GET /v1/platforms', async () => {
    const r = await admin.get('/v1/platforms');
    lastSeen = `${receiver.total} requests; ${r.text}`;
    t.equal(r.status, 200, r.text);
    const p = r.body.items[0];
    return p.lastFailure ? p : undefined;
  }).catch((err: Error) => {
    throw new Error(`${err.message}: ${lastSeen}`);
  });
  t.equal(platform.lastFailure.deliveryId, deliveryId(id, 'p1'), 'the failing delivery named');
  t.equal(platform.lastFailure.status, 503);
  t.type(platform.queueDepth, 'number');
  const flow = await admin.get('/v1/flow');
  t.equal(flow.status, 200, flow.text);

  failing = false;
  await until('delivered', async () => (await admin.get(`/v1/deliveries/${deliveryId(id, 'p1')}`)).body?.state === 'delivered' || undefined);

  // A repeat call: same place and phone, looked up in two buckets.
  const again = await src.post('/v1/alerts', alert('CL-2', { caller: { phone: '13800138000' }, location: { address: '湖北省黄石市下陆区杭州西路1号', regionCode: '420204' } }));
  t.ok(again.status === 200 || again.status === 202, again.text);
  t.equal(again.body.repeatOf, id, 'linked to the open case');

  const upd = await admin.post(`/v1/alerts/${id}/update`, { reason: 'caller corrected the summary', alert: alert('CL-1', { summary: '更正', caller: { phone: '13800138000' }, location: { address: '湖北省黄石市下陆区杭州西路1号', regionCode: '420204' } }) });
  t.equal(upd.status, 200, upd.text);

  const run = await admin.post('/v1/replays', { mode: 'redeliver', reason: 'cluster check', selected: 1 });
  t.equal(run.status, 201, run.text);
  const re = await admin.post(`/v1/deliveries/${deliveryId(id, 'p1')}/redeliver`, { reason: 'cluster check', replayId: run.body.replayId });
  t.equal(re.status, 202, re.text);
  const fin = await admin.post(`/v1/replays/${run.body.replayId}/finish`, { counts: { redelivered: 1 } });
  t.equal(fin.status, 200, fin.text);
  t.equal(fin.body.finished, true);

  const timeline = await until('operator.action and replay events on the timeline', async () => {
    const r = await admin.get(`/v1/alerts/${id}/timeline`);
    const types = ((r.body?.items ?? []) as { event?: { type: string }; type?: string }[]).map((i) => i.event?.type ?? i.type);
    return types.includes('operator.action') && types.includes('replay.delivery') ? types : undefined;
  });
  t.ok(timeline!.includes('alert.updated'), 'alert.updated recorded');
});

const execFileP = promisify(execFile);
/** Runs the compiled CLI (what users run); a non-zero exit is a result, not an exception. */
const runDist = (args: string[]) =>
  execFileP(process.execPath, [join(ROOT, 'dist', 'src', 'cli.js'), ...args], { cwd: ROOT, env: childEnv() }).then(
    (r) => ({ code: 0 as number | null, ...r }),
    (e: { code: number | null; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

const SECRET = 'whsec_dGVzdC1jYWxsYmFjay1zZWNyZXQtMDEyMzQ1Njc4OQ==';
type Item = { event: { type: string; alertId?: string; deliveryId?: string; data?: Record<string, any> } };

t.test('Cluster: callback, feedback, SLA, stats, audit, replay diff and retention', async (t) => {
  const prefix = 'hlc';
  const dir = await mkdtemp(join(tmpdir(), 'fenliu-cluster-lc-'));
  const sandbox = await startSandbox({
    platforms: [
      { id: 'p-hot', kind: 'hotline-12345' },
      { id: 'p-slow', kind: 'hotline-12345' },
      { id: FEEDBACK_ID, kind: 'feedback-110' },
    ],
  });
  const rr = new Cluster(c.nodes, { redisOptions: { maxRetriesPerRequest: 3 } }) as unknown as Redis;
  let f: Awaited<ReturnType<typeof startTestFenliu>> | undefined;
  t.teardown(async () => {
    await f?.stop();
    await sandbox.close();
    rr.disconnect();
  });
  const plat = (id: string, extra: Record<string, unknown> = {}) => ({ ...FAST, id, adapter: 'hotline-12345', url: sandbox.get(id).url, options: ADAPTER_OPTIONS['hotline-12345'], ...extra });
  const base = testConfig();
  base.sources[0].feedback = { url: sandbox.get(FEEDBACK_ID).url, ...FAST };
  const doc = testConfig({
    sources: base.sources,
    platforms: [plat('p-hot', { callback: { secret: SECRET, toleranceSeconds: 60 } }), plat('p-slow')],
    routes: [
      { id: 'slow', match: { category: ['utility.*'] }, targets: ['p-slow'], sla: { interveneBy: '700ms' } },
      { id: 'default', default: true, targets: ['p-hot'] },
    ],
    sla: { ackBy: '30m' },
    engine: { slaSweepMs: 100 },
    audit: { dir, archive: true },
    redis: { prefix, cluster: c.nodes },
    log: { level: 'silent' },
  });
  f = await startTestFenliu({ cfg: doc, role: 'all' });
  const k = redisKeys(prefix);
  const src = api(f.url, KEYS.sourceA);
  const admin = api(f.url, KEYS.admin);
  const auditor = api(f.url, KEYS.auditor);
  const state = async (id: string) => (await admin.get(`/v1/deliveries/${id}`)).body as Record<string, any>;
  const waitState = (id: string, want: string) => until(`${id} ${want}`, async () => ((await state(id))?.state === want ? state(id) : undefined));

  // A: delivered to p-hot, then signed callbacks accepted → resolved.
  const a = await src.post('/v1/alerts', alert('CLC-A'));
  t.equal(a.status, 202, a.text);
  const aId = a.body.id as string;
  const aDel = deliveryId(aId, 'p-hot');
  const delivered = await waitState(aDel, 'delivered');
  const ticket = delivered!.remoteTicketId as string;
  t.ok(ticket, 'a ticket id from the platform');
  let n = 0;
  const callback = (status: string) => {
    const text = JSON.stringify(hotlineEvent(ticket, HOTLINE_WORD[status], `CLC-E-${++n}`));
    const id = `msg_clc_${n}`;
    const ts = Math.floor(Date.now() / 1000);
    return api(f!.url).post('/v1/platforms/p-hot/events', undefined, {
      raw: text,
      contentType: 'application/json',
      headers: { 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': standardWebhookSignature(SECRET, id, ts, text) },
    });
  };
  for (const to of ['accepted', 'resolved']) {
    const res = await callback(to);
    t.equal(res.status, 200, res.text);
    t.match(res.body.results[0], { applied: true, to });
  }
  t.equal((await state(aDel)).state, 'resolved');
  const unsigned = await api(f.url).post('/v1/platforms/p-hot/events', hotlineEvent(ticket, HOTLINE_WORD.closed, 'CLC-E-x'));
  t.equal(unsigned.status, 401, 'an unsigned callback is refused');

  // Feedback: the 110 system hears of the signing-for and the resolution.
  const fb = sandbox.get(FEEDBACK_ID);
  const heard = (alertId: string, s: string) => fb.received.some((r) => (r.parsed as any)?.caseId === alertId && (r.parsed as any)?.state === s);
  await until('feedback accepted and resolved', async () => heard(aId, 'accepted') && heard(aId, 'resolved'));
  t.pass('feedback notices received by the 110 system');

  // B: routed to p-slow with a 700 ms intervention deadline that nobody meets.
  const b = await src.post('/v1/alerts', alert('CLC-B', { category: 'utility.water-leak' }));
  t.equal(b.status, 202, b.text);
  const bId = b.body.id as string;
  const bDel = deliveryId(bId, 'p-slow');
  const overdue = await until('intervene overdue', async () => {
    const d = await state(bDel);
    return d?.overdue?.includes?.('intervene') ? d : undefined;
  });
  t.equal(overdue!.state, 'delivered', 'the flag sits beside the state');
  const board = await auditor.get('/v1/sla');
  t.equal(board.status, 200, board.text);
  t.match(board.body.items, [{ deliveryId: bDel, kind: 'intervene', overdue: true }]);
  await until('overdue feedback', async () => fb.received.some((r) => (r.parsed as any)?.type === 'overdue' && (r.parsed as any)?.caseId === bId));
  t.pass('overdue notice received by the 110 system');

  // Stats count both alerts.
  const stats = await auditor.get('/v1/stats');
  t.equal(stats.status, 200, stats.text);
  t.equal(stats.body.received, 2, 'both alerts counted');
  t.equal(stats.body.diverted, 2);
  t.equal(stats.body.completed, 1, 'A resolved');

  // Timeline and audit of A.
  const typesOf = (items: unknown) => ((items ?? []) as { event?: { type: string }; type?: string }[]).map((i) => i.event?.type ?? i.type);
  const tl = await until('timeline with the callback states', async () => {
    const r = await admin.get(`/v1/alerts/${aId}/timeline`);
    const types = typesOf(r.body?.items);
    return types.filter((x) => x === 'delivery.state').length >= 2 ? types : undefined;
  });
  t.ok(tl!.includes('alert.received') && tl!.includes('delivery.attempt'), tl!.join(','));
  const au = await auditor.get(`/v1/audit?alertId=${aId}&limit=1000`);
  t.equal(au.status, 200, au.text);
  const auTypes = typesOf(au.body.items);
  for (const want of ['alert.received', 'delivery.attempt', 'delivery.state']) t.ok(auTypes.includes(want), `GET /v1/audit has ${want}: ${auTypes.join(',')}`);
  // One event per received alert (docs/audit.md): the route is on alert.received, relayed from the alert's bucket stream.
  t.notOk(auTypes.includes('alert.routed'), 'no separate alert.routed');
  const rd = (au.body.items as Item[]).find((i) => i.event.type === 'alert.received')?.event.data;
  t.same([rd?.ruleId, rd?.targets, rd?.deliveryIds], ['default', ['p-hot'], [aDel]], 'alert.received holds the route');
  t.ok((au.body.items as Item[]).every((i) => i.event.alertId === aId), 'only events of this alert');
  const bItems = (await auditor.get(`/v1/audit?alertId=${bId}&limit=1000`)).body.items as Item[];
  const bAudit = typesOf(bItems);
  t.ok(bAudit.includes('sla.expired'), `B's audit has sla.expired: ${bAudit.join(',')}`);

  // An offline replay diff over the archive, recorded into the cluster's audit log.
  await until('both alerts archived', async () => ((await collectAlerts(dir, {})).length >= 2 ? true : undefined), 30_000);
  const diff = await runDist(['replay', dir, '--mode', 'diff', '--config', writeConfig(doc), '--json']);
  t.equal(diff.code, 0, `replay diff exit code: ${diff.stderr.slice(-500)}`);
  const replayId = /replay (\S+) recorded in the audit log \(cluster /.exec(diff.stderr)?.[1];
  t.ok(replayId, `recorded in the cluster's audit log: ${diff.stderr.slice(-300)}`);
  const run = async () => ((await auditor.get(`/v1/audit?type=${encodeURIComponent('replay.*')}&limit=1000`)).body.items as Item[]).filter((i) => i.event.data?.replayId === replayId);
  const evs = await until('replay events on the audit log', async () => {
    const x = await run();
    return x.some((i) => i.event.type === 'replay.finished') ? x : undefined;
  });
  // One replay.delivery per translated delivery: p-hot, p-slow and the three feedback notices.
  // A first send is a delivery.attempt carrying the translated body (docs/audit.md, "One event per attempt").
  const translated = [...(au.body.items as Item[]), ...bItems].filter((i) => i.event.type === 'delivery.attempt' && i.event.data?.body !== undefined && !i.event.data?.kind).length;
  t.equal(translated, 5, 'five translated deliveries on the two alerts');
  t.same(evs!.map((i) => i.event.type), ['replay.started', ...Array(translated).fill('replay.delivery'), 'replay.finished']);
  t.same(new Set(evs!.filter((i) => i.event.type === 'replay.delivery').map((i) => i.event.alertId)), new Set([aId, bId]), 'deliveries of both alerts diffed');
  t.equal(JSON.parse(diff.stdout).deliveries, translated);

  // Retention: both alerts and their indexes go.
  const swept = await sweepRetention(rr, k, prefix, Date.now() + 1);
  t.equal(swept.alerts, 2, 'retention removed both alerts');
  t.equal(await zcardAll(rr, each(k.bucketList, k.alerts)), 0, 'no alert left in any bucket');
  t.equal(await rr.exists(k.delivery(aDel)), 0, "A's delivery gone");
  t.equal(await rr.exists(k.delivery(bDel)), 0, "B's delivery gone");
});
