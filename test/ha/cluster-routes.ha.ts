/**
 * Redis Cluster (3 masters, real processes): the routes merged after the bucket layout each run
 * their reads, scripts and MULTIs on the cluster, where a command over keys of two slots is
 * refused (CROSSSLOT, a 500). Covered: a platform's last failed attempt (written in the attempt's
 * script) and queue depth on GET /v1/platforms, the console flow with retrying deliveries, a
 * repeat call matched by phone and place (two buckets), an operator's update (operator.action in
 * the alert's bucket), redeliver, and a replay run (its key in the audit stream's slot).
 */
import t from 'tap';
import { deliveryId } from '../../src/store/ids.js';
import { startCluster } from '../helpers/cluster.js';
import { KEYS, alert, api, startTestFenliu } from '../helpers/fenliu.js';
import { Receiver, faultConfig, until } from '../faults/harness.js';

t.test('Cluster: platforms, flow, repeat calls, operator actions and replays', async (t) => {
  const c = await startCluster({ masters: 3, replicas: 0 });
  const receiver = await new Receiver().listen();
  let f: Awaited<ReturnType<typeof startTestFenliu>> | undefined;
  t.teardown(async () => {
    await f?.stop();
    await receiver.close();
    await c.stop();
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
