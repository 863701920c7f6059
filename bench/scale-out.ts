/**
 * `npm run bench:scale-out [-- --alerts 3000 --connections 50 --delay 20 --concurrency 50 --workers 2 --rate 0]`
 *
 * Two API processes and `--workers` worker processes (default two) (`node --import tsx src/cli.ts serve --role api|worker`)
 * against one private Redis (AOF everysec) and one receiver that records every request with its
 * Idempotency-Key and keeps each in flight `--delay` ms. Load is split across both APIs. Then:
 *   - no delivery was sent twice concurrently (no request arrived while one with the same key was in flight),
 *   - none was lost (every accepted alert's delivery reached the receiver and is `delivered`),
 *   - throughput of ingest and of delivery.
 * Also the Redis script calls (EVALSHA: fenliu's scripts, the bench sends none) per alert, which
 * is where extra worker processes would show a cost of their own (each one woken by every
 * enqueue, src/delivery/wake.ts, makes its take). `--rate N`: alerts sent at N/s in all instead of
 * as fast as the connections go, so the workers idle between alerts, as on a quiet day.
 * Exits 1 when a check fails. Writes bench/scale-out.json.
 *
 * `--cluster`: the same run against a Redis Cluster of 1, 2 and 3 masters (no replicas, AOF
 * everysec; test/helpers/cluster.ts) with three platforms at the receiver, each alert routed to all
 * three (a platform's queue lives on one shard, so one platform cannot use more than one).
 * Prints deliveries/s per shard count; writes bench/scale-out-cluster.json.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { Cluster, Redis } from 'ioredis';
import { startCluster } from '../test/helpers/cluster.js';
import { keys } from '../src/store/keys.js';
import { deliveryId } from '../src/store/ids.js';
import { ROOT, SOURCE_KEY, benchAlert, fenliuConfig, freePort, redisCommandCalls, sleep, startFenliuProcess, startNode, startRedis, tempDir, writeConfig } from './lib.js';
import { each, zcardAll, zMembersByScore } from '../src/store/fanout.js';

const { values: opt } = parseArgs({
  options: {
    alerts: { type: 'string', default: '3000' },
    connections: { type: 'string', default: '50' },
    delay: { type: 'string', default: '20' },
    concurrency: { type: 'string', default: '50' },
    cluster: { type: 'boolean', default: false },
    workers: { type: 'string', default: '2' },
    rate: { type: 'string', default: '0' },
  },
});
const N = Number(opt.alerts);
const log = (s: string) => process.stderr.write(`scale-out: ${s}\n`);

const PLATFORMS = opt.cluster ? ['p-hook', 'p-hook2', 'p-hook3'] : ['p-hook'];

async function main(): Promise<void> {
  if (!opt.cluster) {
    const redis = await startRedis();
    const r = new Redis(redis.url);
    const result = await run(r, { redisUrl: redis.url });
    r.disconnect();
    await redis.stop();
    if (!result) process.exit(1);
    return;
  }
  const rows: Record<string, unknown>[] = [];
  for (const shards of [1, 2, 3]) {
    const c = await startCluster({ masters: shards, replicas: 0 });
    const r = new Cluster(c.nodes, { redisOptions: { maxRetriesPerRequest: null } }) as unknown as Redis;
    const result = await run(r, { cluster: c.nodes });
    r.disconnect();
    await c.stop();
    if (!result) process.exit(1);
    rows.push({ shards, ...result });
  }
  writeFileSync(join(ROOT, 'bench', 'scale-out-cluster.json'), `${JSON.stringify(rows, null, 2)}\n`);
  console.log(`| Redis Cluster (2 api + 2 worker, ${PLATFORMS.length} platforms, every alert to each) | ${rows.map((x) => `${x.shards} shard${x.shards === 1 ? '' : 's'}`).join(' | ')} |
|---|${rows.map(() => '---:').join('|')}|
| ingest, alerts/s | ${rows.map((x) => (x.ingestPerSec as number).toFixed(0)).join(' | ')} |
| delivered, deliveries/s | ${rows.map((x) => (x.deliveredPerSec as number).toFixed(0)).join(' | ')} |
| lost / sent twice concurrently | ${rows.map((x) => `${x.lost} / ${x.concurrentDoubleSends}`).join(' | ')} |`);
}

/** One run against `r` (the test's view of Redis); `target` goes into the fenliu configs. */
async function run(r: Redis, target: { redisUrl: string } | { cluster: { host: string; port: number }[] }): Promise<Record<string, unknown> | undefined> {
  const receiver = await startNode([join(ROOT, 'bench', 'receiver.ts')], { env: { DELAY_MS: opt.delay } });
  const auditDir = tempDir('audit');
  const cfgFor = async () => {
    const doc = fenliuConfig({ port: await freePort(), redisUrl: 'redisUrl' in target ? target.redisUrl : '', receiverUrl: receiver.url, auditDir, concurrency: Number(opt.concurrency), logLevel: 'warn' }) as Record<string, any>;
    if ('cluster' in target) {
      const { url: _u, ...redisRest } = doc.redis;
      doc.redis = { ...redisRest, cluster: target.cluster };
      doc.platforms = PLATFORMS.map((id) => ({ ...doc.platforms[0], id }));
      doc.routes = [{ id: 'default', default: true, targets: PLATFORMS }];
    }
    return writeConfig(doc);
  };
  // The first API process creates the shared repeat-matching secret; the others read it.
  const apis = [await startFenliuProcess(await cfgFor(), 'api')];
  apis.push(await startFenliuProcess(await cfgFor(), 'api'));
  const workers = await Promise.all(Array.from({ length: Number(opt.workers) }, async () => startFenliuProcess(await cfgFor(), 'worker')));
  log(`2 APIs (${apis.map((a) => a.url).join(', ')}), ${workers.length} workers, receiver ${receiver.url} (${opt.delay} ms per request)`);
  const scripts0 = await scriptCalls(r);

  const t0 = Date.now();
  const runs = await Promise.all(
    apis.map((a, i) =>
      autocannon({
        url: a.url,
        connections: Math.ceil(Number(opt.connections) / 2),
        amount: Math.ceil(N / 2),
        ...(Number(opt.rate) > 0 ? { overallRate: Number(opt.rate) / 2 } : {}),
        requests: [{ method: 'POST', path: '/v1/alerts', headers: { 'content-type': 'application/json', authorization: `Bearer ${SOURCE_KEY}` }, setupRequest: (req: any) => ({ ...req, body: JSON.stringify(benchAlert(`so${i}`)) }) }],
      } as autocannon.Options),
    ),
  );
  const ingestMs = Date.now() - t0;
  const accepted = runs.reduce((a, x) => a + x['2xx'], 0);
  const k = keys('fenliu');
  const end = Date.now() + 300_000;
  const deliveredCount = async () => (await Promise.all(PLATFORMS.map((p) => zcardAll(r, each(k.bucketList, (b) => k.flowDelivered(b, p)))))).reduce((a, n) => a + n, 0);
  while ((await deliveredCount()) < accepted * PLATFORMS.length && Date.now() < end) await sleep(50);
  const deliverMs = Date.now() - t0;
  await sleep(500);
  const scripts = (await scriptCalls(r)) - scripts0;
  const stats = (await (await fetch(`${receiver.url}/_stats`)).json()) as { records: { key: string }[]; overlaps: string[] };

  const alertIds = await zMembersByScore(r, each(k.bucketList, k.alerts), '-inf', '+inf');
  const expected = alertIds.flatMap((id) => PLATFORMS.map((p) => deliveryId(id, p)));
  const received = new Map<string, number>();
  for (const x of stats.records) received.set(x.key, (received.get(x.key) ?? 0) + 1);
  const states = await Promise.all(expected.map((d) => r.hget(k.delivery(d), 'state')));
  const lost = expected.filter((d, i) => !received.has(d) || states[i] !== 'delivered');
  const sentTwice = [...received].filter(([, n]) => n > 1).map(([d]) => d);
  const result = {
    processes: { api: 2, worker: workers.length },
    rate: Number(opt.rate) || undefined,
    scriptCallsPerAlert: scripts / accepted,
    alertsSent: runs.reduce((a, x) => a + x.requests.sent, 0),
    accepted,
    stored: alertIds.length,
    non2xx: runs.reduce((a, x) => a + x.non2xx + x.errors, 0),
    ingestPerSec: (accepted * 1000) / ingestMs,
    deliveredPerSec: (accepted * PLATFORMS.length * 1000) / deliverMs,
    receiverRequests: stats.records.length,
    concurrentDoubleSends: stats.overlaps.length,
    sentMoreThanOnce: sentTwice.length,
    lost: lost.length,
    lostSample: lost.slice(0, 5),
    receiverDelayMs: Number(opt.delay),
  };
  await Promise.all([...apis, ...workers].map((x) => x.stop()));
  await receiver.stop();
  const ok = result.concurrentDoubleSends === 0 && result.lost === 0 && accepted === result.stored;
  if (!ok) console.error('scale-out: FAILED', JSON.stringify(result));
  if ('cluster' in target) return ok ? result : undefined;
  writeFileSync(join(ROOT, 'bench', 'scale-out.json'), `${JSON.stringify(result, null, 2)}\n`);
  console.log(`| scale-out (2 api + ${workers.length} worker${Number(opt.rate) > 0 ? `, ${opt.rate} alerts/s` : ''}, 1 Redis) | value |
|---|---:|
| alerts accepted / stored | ${accepted} / ${result.stored} |
| ingest, alerts/s (both APIs) | ${result.ingestPerSec.toFixed(0)} |
| delivered, deliveries/s (from first request to last delivered) | ${result.deliveredPerSec.toFixed(0)} |
| receiver requests | ${result.receiverRequests} |
| sent twice concurrently (same key in flight) | ${result.concurrentDoubleSends} |
| sent more than once (at all) | ${result.sentMoreThanOnce} |
| lost (accepted, not received or not delivered) | ${result.lost} |
| Redis script calls per alert (all processes) | ${result.scriptCallsPerAlert.toFixed(2)} |`);
  return ok ? result : undefined;
}

/** EVALSHA and EVAL calls so far, over every node of a Cluster (INFO commandstats). */
async function scriptCalls(r: Redis): Promise<number> {
  const nodes = 'nodes' in r && typeof (r as unknown as Cluster).nodes === 'function' ? (r as unknown as Cluster).nodes('master') : [r];
  let n = 0;
  for (const x of nodes) {
    const calls = await redisCommandCalls(x);
    n += (calls.get('evalsha') ?? 0) + (calls.get('eval') ?? 0);
  }
  return n;
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`scale-out failed: ${(err as Error).stack}`);
    process.exit(1);
  },
);
