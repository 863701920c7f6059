/**
 * `npm run bench [-- --duration 8 --connections 50 --sustain 20 --deliveries 4000 --delivery-warmup 2000 --rate 100 --concurrency 50 --system-seconds 60 --system-backlog 500 --system-slice 10 --only a,b,c,w,d,e,s --profile DIR --node-args=... --archiver worker|separate --commands --slowlog --variants noarchive,writethrough,norepeat,noaccess,aof200,aof400,semi32 --compare DIR --baselines kept,kept-atomic]`
 *
 * One run, on a private redis-server (AOF everysec, noeviction), servers in child processes and
 * autocannon in this one:
 *   ingest   (a) bare Fastify + Ajv, (b) naive handler + one BullMQ queue.add, (c) fenliu POST /v1/alerts (role api)
 *            (w) = (c) with one replica attached, without and with `redis.waitReplicas: 1` (WAIT 1 before each 202)
 *   delivery (d) naive BullMQ worker + undici POST, (e) fenliu worker (adapter → receiver → delivered)
 *            throughput: drain of a pre-loaded backlog, measured after its first --delivery-warmup
 *            deliveries (both workers start cold); latency: acceptance → receipt at a paced rate
 *   system   (s) API + worker together, POST → request at the receiver, sustained `--system-seconds`:
 *            the naive pair and fenliu (api + worker, archiving on), all up side by side, the load taking
 *            turns of `--system-slice` seconds (0: one stack after the other, as with --slowlog and --profile);
 *            fails the run if an accepted alert is lost
 *   memory   Redis bytes per retained alert (with deliveries, jobs, audit), after retention;
 *            fenliu API RSS before/after a sustained run
 *   `--variants noarchive,norepeat,noaccess,aof200,aof400,semi32`: with (s), fenliu again with one
 *            piece of its work turned off each (audit archiving, repeat-call matching, the per-request
 *            access log line), on a Redis that rewrites its AOF less often (auto-aof-rewrite-percentage
 *            200 or 400 instead of 100), or with a larger V8 young generation (--max-semi-space-size=32),
 *            to put a figure on what each costs; never part of the targets.
 *   `--compare DIR`: with (s), fenliu again from another checkout (say a `git worktree` of the commit
 *            before a change, its node_modules linked to these), in the same turns; the table gives
 *            fenliu/compare in alerts/s and in CPU per alert. Runs minutes apart drift by ±10% on
 *            these machines, more than most single changes save.
 *   `--baselines kept`: with (s), one more pair in the same turns: the naive pair made to keep the
 *            promises of fenliu's 202 and of its worker, written plainly with BullMQ (bench/servers/
 *            kept.ts, kept-worker.ts: key check, idempotency with body hash, keyed repeat keys, the
 *            record, its indexes, the delivery with deadlines, history and SLA timer, minimisation,
 *            per-attempt state, attempt log and indexes, dead letters, fenliu's retry horizon and
 *            circuit breaker, a rate limit in Redis, metrics, audit events archived with a hash
 *            chain, Merkle tiles and an index; since 2026-12-01, before that a lighter subset: see
 *            docs/performance.md, the fourteenth and fifteenth steps). The table gives
 *            fenliu/kept: what fenliu's way of keeping them costs, apart from what keeping them costs.
 *            Not a target row. `kept-atomic`: the same pair with the API's claim and writes in one
 *            script (KEPT_ATOMIC=1), so a crash between them cannot leave a claim without a record.
 * Prints a table and writes bench/results.json. `--commands`: Redis calls (and µs) by command per delivery for (d) and (e), per alert for (s).
 *   `--slowlog`: with it, the script split (and plain commands by key shape) from the slow log, which
 *   inflates every figure of its run (Redis logs each call): a split, not a cost.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import { sweepRetention } from '../src/store/retention.js';
import { keys } from '../src/store/keys.js';
import { RepeatMatcher } from '../src/lifecycle/repeat.js';
import { INGEST_SCRIPT, MATERIALISE_SCRIPT } from '../src/ingest/script.js';
import { measureSystems, roundRatios, type SystemResult } from './system.js';
import {
  ROOT,
  SOURCE_KEY,
  benchAlert,
  fenliuConfig,
  freePort,
  percentile,
  cpuOf,
  redisCalls,
  redisCommandCalls,
  commandBreakdown,
  redisCommandUsec,
  redisCpu,
  redisMemory,
  rssOf,
  archiverFigures,
  sleep,
  startFenliuProcess,
  startNode,
  startRedis,
  tempDir,
  writeConfig,
  type Proc,
} from './lib.js';
import { each, zcardAll } from '../src/store/fanout.js';

const { values: opt } = parseArgs({
  options: {
    duration: { type: 'string', default: '8' },
    connections: { type: 'string', default: '50' },
    sustain: { type: 'string', default: '20' },
    deliveries: { type: 'string', default: '4000' },
    'delivery-warmup': { type: 'string', default: '2000' },
    rate: { type: 'string', default: '100' },
    concurrency: { type: 'string', default: '50' },
    profile: { type: 'string' },
    'node-args': { type: 'string' },
    archiver: { type: 'string', default: 'worker' },
    'system-seconds': { type: 'string', default: '60' },
    'system-backlog': { type: 'string', default: '500' },
    'system-slice': { type: 'string', default: '10' },
    only: { type: 'string' },
    commands: { type: 'boolean', default: false },
    slowlog: { type: 'boolean', default: false },
    variants: { type: 'string' },
    compare: { type: 'string' },
    baselines: { type: 'string' },
  },
});
const DURATION = Number(opt.duration);
const CONNECTIONS = Number(opt.connections);
const SUSTAIN = Number(opt.sustain);
const N = Number(opt.deliveries);
/** Deliveries drained before the measured ones, in the same drain: JIT and connections warm, as the ingest rows' warm-up run. */
const W = Number(opt['delivery-warmup']);
const RATE = Number(opt.rate);
const CONCURRENCY = Number(opt.concurrency);
const SYSTEM_SECONDS = Number(opt['system-seconds']);
const SYSTEM_BACKLOG = Number(opt['system-backlog']);
// --slowlog would mix the stacks' calls in one log, and a frozen process would put its pause into a --profile's samples: one stack at a time.
const SYSTEM_SLICE = opt.slowlog || opt.profile ? 0 : Number(opt['system-slice']);
const only = opt.only ? new Set(opt.only.split(',')) : undefined;
const want = (x: string) => !only || only.has(x);
/** `--profile dir`: fenliu children run with --cpu-prof into that directory; `--node-args "..."`: more Node flags for them. */
const profArgs = [...(opt.profile ? ['--cpu-prof', `--cpu-prof-dir=${opt.profile}`] : []), ...(opt['node-args']?.split(' ').filter(Boolean) ?? [])];

interface IngestResult {
  reqPerSec: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  total: number;
}

async function load(url: string, o: { duration?: number; amount?: number; rate?: number; connections?: number; tag: string; auth?: boolean }): Promise<IngestResult> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (o.auth) headers.authorization = `Bearer ${SOURCE_KEY}`;
  const r = await autocannon({
    url,
    connections: o.connections ?? CONNECTIONS,
    ...(o.duration !== undefined ? { duration: o.duration } : {}),
    ...(o.amount !== undefined ? { amount: o.amount } : {}),
    ...(o.rate !== undefined ? { overallRate: o.rate } : {}),
    requests: [{ method: 'POST', path: '/v1/alerts', headers, setupRequest: (req: any) => ({ ...req, body: JSON.stringify(benchAlert(o.tag)) }) }],
  } as autocannon.Options);
  return { reqPerSec: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors + r.timeouts, total: r['2xx'] };
}

let statsRedis: Redis | undefined;

/** Audit events written so far: archived (the archiver's head seq) plus those still in the stream. */
async function auditEventCount(r: Redis): Promise<number> {
  // One MULTI: the archiver trims the stream and moves its head in one MULTI too.
  const [[, head], [, len]] = (await r.multi().get('fenliu:{audit}:head').xlen('fenliu:{audit}').exec()) as [[null, string | null], [null, number]];
  return (head ? Number((JSON.parse(head) as { seq?: number }).seq ?? 0) : 0) + len;
}

type IngestRow = IngestResult & { redisCallsPerRequest?: number; serverCpuUsPerRequest?: number; redisCpuUsPerRequest?: number };

/**
 * One ingest run. Besides req/s it records CPU time per request of the server process and of
 * Redis: on a shared 2-core box these barely move with the machine's load, unlike req/s.
 */
async function measureIngest(url: string, tag: string, pid: number, auth = false, connections = CONNECTIONS): Promise<IngestRow> {
  await load(url, { duration: 2, tag: `${tag}w`, auth, connections }); // warm-up: JIT, connections, Redis
  const c0 = statsRedis ? await redisCalls(statsRedis) : 0;
  const r0 = statsRedis ? await redisCpu(statsRedis) : 0;
  const s0 = cpuOf(pid);
  const res = await load(url, { duration: DURATION, tag, auth, connections });
  const s1 = cpuOf(pid);
  const r1 = statsRedis ? await redisCpu(statsRedis) : 0;
  const c1 = statsRedis ? await redisCalls(statsRedis) : 0;
  const per = (x: number) => (res.total ? x / res.total : undefined);
  return { ...res, redisCallsPerRequest: statsRedis ? per(c1 - c0 - 3) : undefined, serverCpuUsPerRequest: per(s1 - s0), redisCpuUsPerRequest: statsRedis ? per(r1 - r0) : undefined };
}

/**
 * CPU per delivery of a draining worker and of Redis, from the first delivery seen on (so the
 * worker's start-up is not counted). Includes everything the worker process does meanwhile
 * (for fenliu: the lifecycle worker and the audit archiver too).
 */
class DrainCpu {
  private start?: { done: number; worker: number; redis: number };
  constructor(
    private readonly pid: number,
    private readonly redis: Redis,
  ) {}
  async poll(done: number): Promise<void> {
    if (!this.start && done > 0 && done >= W) this.start = { done, worker: cpuOf(this.pid), redis: await redisCpu(this.redis) };
  }
  async end(total: number): Promise<{ workerCpuUsPerDelivery?: number; redisCpuUsPerDelivery?: number }> {
    if (!this.start || total <= this.start.done) return {};
    const n = total - this.start.done;
    return { workerCpuUsPerDelivery: (cpuOf(this.pid) - this.start.worker) / n, redisCpuUsPerDelivery: ((await redisCpu(this.redis)) - this.start.redis) / n };
  }
}

interface Receipt {
  key: string;
  at: number;
  acceptedAt?: number;
}
async function receipts(receiverUrl: string): Promise<{ records: Receipt[]; overlaps: string[] }> {
  const res = await fetch(`${receiverUrl}/_stats`);
  return (await res.json()) as { records: Receipt[]; overlaps: string[] };
}

async function waitFor(cond: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

interface DeliveryResult {
  perSec: number;
  drained: number;
  drainMs: number;
  p50: number;
  p99: number;
  paced: number;
  duplicates: number;
}

/** Throughput from the W-th receipt of the drain (the warm-up before it is not counted) to its end. */
function summarise(drain: Receipt[], drainEnd: number, paced: { at: number; acceptedAt: number }[], duplicates: number): DeliveryResult {
  const times = drain.map((r) => r.at).sort((a, b) => a - b);
  const t0 = times[Math.min(W, times.length - 1)];
  const counted = times.length - Math.min(W, times.length - 1);
  const ms = Math.max(1, drainEnd - t0);
  const lat = paced.map((r) => r.at - r.acceptedAt).sort((a, b) => a - b);
  return { perSec: ((counted - 1) * 1000) / ms, drained: drain.length, drainMs: ms, p50: percentile(lat, 50), p99: percentile(lat, 99), paced: lat.length, duplicates };
}

const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : '—');
const mb = (b: number) => `${(b / 1048576).toFixed(1)} MB`;

async function main(): Promise<void> {
  const started = Date.now();
  const redisVersion = /v=(\S+)/.exec(execFileSync('redis-server', ['--version']).toString())?.[1];
  const machine = { nproc: cpus().length, cpu: cpus()[0]?.model, node: process.version, redis: redisVersion, platform: `${process.platform} ${process.arch}` };
  const redis = await startRedis();
  const r = new Redis(redis.url);
  statsRedis = r;
  const receiver = await startNode([join(ROOT, 'bench', 'receiver.ts')]);
  const results: Record<string, unknown> = { machine, options: { duration: DURATION, connections: CONNECTIONS, sustain: SUSTAIN, deliveries: N, deliveryWarmup: W, rate: RATE, concurrency: CONCURRENCY, systemSeconds: SYSTEM_SECONDS, systemBacklog: SYSTEM_BACKLOG, systemSlice: SYSTEM_SLICE, archiver: opt.archiver, compare: opt.compare, baselines: opt.baselines } };
  const ingest: Record<string, IngestRow> = {};
  const delivery: Record<string, DeliveryResult & { redisCallsPerDelivery?: number; auditEventsPerDelivery?: number }> = {};
  const memory: Record<string, number | string> = {};
  const system: Record<string, SystemResult & { logProblems?: number; logProblemKinds?: Record<string, number>; rssMb?: number[]; archiver?: Awaited<ReturnType<typeof archiverFigures>> }> = {};
  const log = (s: string) => process.stderr.write(`bench: ${s}\n`);

  // (a) bare Fastify + Ajv
  if (want('a')) {
    const p = await startNode([join(ROOT, 'bench', 'servers', 'bare.ts')]);
    ingest.a = await measureIngest(p.url, 'a', p.child.pid!);
    log(`a ${fmt(ingest.a.reqPerSec)} req/s`);
    await p.stop();
  }
  // (b) naive + one queue.add per request
  if (want('b')) {
    const p = await startNode([join(ROOT, 'bench', 'servers', 'naive.ts')], { env: { REDIS_URL: redis.url } });
    ingest.b = await measureIngest(p.url, 'b', p.child.pid!);
    log(`b ${fmt(ingest.b.reqPerSec)} req/s`);
    await p.stop();
    await r.flushall();
  }

  // `--archiver separate`: (e) runs the audit archiver in a third process (`--role archiver`).
  const separateArchiver = opt.archiver === 'separate';
  // Each config its own audit directory: the archiver's lock is in Redis, so two stacks of the
  // system row (each on its own Redis) would both append to one log and break its chain and tree.
  const cfgDoc = (port: number, redisUrl = redis.url) => fenliuConfig({ port, redisUrl, receiverUrl: receiver.url, auditDir: tempDir('audit'), concurrency: CONCURRENCY, archiveIn: separateArchiver ? 'archiver' : 'workers' });

  // (c) fenliu POST /v1/alerts, role api; then the sustained run for RSS
  if (want('c')) {
    const cfg = writeConfig(cfgDoc(await freePort()));
    const api = await startFenliuProcess(cfg, 'api', profArgs);
    ingest.c = await measureIngest(api.url, 'c', api.child.pid!, true);
    log(`c ${fmt(ingest.c.reqPerSec)} req/s p99 ${ingest.c.p99} ms`);
    if (SUSTAIN > 0) {
      const before = rssOf(api.child.pid!);
      // RSS every second. Garbage collection makes it swing by tens of MB within seconds, so
      // growth is judged on the medians of the first and the last fifth of the run: a plateau
      // is heap sizing, a climb between them is a leak. The raw first and last readings are kept.
      const series: number[] = [];
      const sampler = setInterval(() => series.push(rssOf(api.child.pid!)), 1000);
      const s = await load(api.url, { duration: SUSTAIN, tag: 's', auth: true });
      clearInterval(sampler);
      const after = rssOf(api.child.pid!);
      const fifth = Math.max(1, Math.floor(series.length / 5));
      const med = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);
      const early = med(series.slice(0, fifth));
      const late = med(series.slice(-fifth));
      const every = Math.max(1, Math.floor(series.length / 10));
      Object.assign(memory, {
        rssBefore: before,
        rssAfter: after,
        rssEarlyMedian: early,
        rssLateMedian: late,
        rssGrowthPct: ((late - early) / early) * 100,
        rssSeriesMB: series.filter((_, i) => i % every === 0).map((x) => Math.round(x / 1048576)).join(' '),
        sustainReqPerSec: s.reqPerSec,
        sustainSeconds: SUSTAIN,
      });
      log(`rss ${mb(before)} → ${mb(after)}`);
    }
    await api.stop();
    await r.flushall();
    // `--variants`: the same ingest run for fenliu with one piece of its work changed, each right
    // after a run of fenliu as installed (`c-<variant>-base`): each pair minutes apart at most.
    for (const v of ingestVariants()) {
      for (const [row, variant] of [[`c-${v}-base`, undefined], [`c-${v}`, VARIANTS[v]]] as const) {
        const doc = cfgDoc(await freePort());
        const p = await startFenliuProcess(writeConfig(variant?.config?.(doc) ?? doc), 'api', [...profArgs, ...(variant?.nodeArgs ?? [])]);
        ingest[row] = await measureIngest(p.url, row, p.child.pid!, true);
        log(`${row} ${fmt(ingest[row].reqPerSec)} req/s p99 ${ingest[row].p99} ms`);
        await p.stop();
        await r.flushall();
      }
    }
  }

  // (w) the price of waitReplicas: one replica attached to the bench Redis, fenliu ingest measured
  // without WAIT (replication alone) and with `redis.waitReplicas: 1` (WAIT 1 after each batch).
  if (want('w')) {
    const replica = await startRedis(['--replicaof', '127.0.0.1', String(redis.port)]);
    const rr = new Redis(replica.url);
    rr.on('error', () => undefined);
    await waitFor(async () => /master_link_status:up/.test(await rr.info('replication').catch(() => '')), 30_000, 'replica in sync');
    rr.disconnect();
    // With `connections` concurrent clients (batches of many alerts, one WAIT each), then with one
    // client (every alert its own batch and its own WAIT: the worst case).
    for (const [row, waitReplicas, connections] of [['cr', 0, CONNECTIONS], ['cw', 1, CONNECTIONS], ['cr1', 0, 1], ['cw1', 1, 1]] as const) {
      const doc = cfgDoc(await freePort());
      (doc.redis as Record<string, unknown>).waitReplicas = waitReplicas;
      const api = await startFenliuProcess(writeConfig(doc), 'api', profArgs);
      ingest[row] = await measureIngest(api.url, row, api.child.pid!, true, connections);
      log(`${row} ${fmt(ingest[row].reqPerSec)} req/s p50 ${ingest[row].p50} ms p99 ${ingest[row].p99} ms (waitReplicas ${waitReplicas}, ${connections} connections)`);
      await api.stop();
      await r.flushall();
    }
    await replica.stop();
  }

  // (d) naive delivery: pre-load N jobs with the worker stopped, then drain; then a paced run for latency
  if (want('d')) {
    const api = await startNode([join(ROOT, 'bench', 'servers', 'naive.ts')], { env: { REDIS_URL: redis.url } });
    await load(api.url, { amount: W + N, tag: 'd' });
    await receipts(receiver.url);
    const dc0 = await redisCalls(r);
    const dcmd0 = opt.commands ? await redisCommandCalls(r) : undefined;
    const dus0 = opt.commands ? await redisCommandUsec(r) : undefined;
    const w = await startNode([join(ROOT, 'bench', 'servers', 'naive-worker.ts')], { env: { REDIS_URL: redis.url, TARGET_URL: receiver.url, CONCURRENCY: String(CONCURRENCY) } });
    const drain: Receipt[] = [];
    const cpu = new DrainCpu(w.child.pid!, r);
    await waitFor(async () => (drain.push(...(await receipts(receiver.url)).records), await cpu.poll(drain.length), drain.length >= W + N), 120_000, 'naive drain');
    const drainEnd = Math.max(...drain.map((x) => x.at));
    const dc1 = await redisCalls(r);
    if (dcmd0) log(`d commands/delivery: ${commandBreakdown(dcmd0, await redisCommandCalls(r), W + N)}`);
    if (dus0) log(`d Redis µs/delivery by command (scripts include their inner calls): ${commandBreakdown(dus0, await redisCommandUsec(r), W + N)}`);
    const dcpu = await cpu.end(W + N);
    await load(api.url, { duration: Math.min(DURATION, 10), rate: RATE, connections: 10, tag: 'dp' });
    await sleep(1_000);
    const paced = (await receipts(receiver.url)).records.filter((x) => x.acceptedAt) as { at: number; acceptedAt: number }[];
    delivery.d = { ...summarise(drain, drainEnd, paced, 0), redisCallsPerDelivery: (dc1 - dc0) / (W + N), ...dcpu };
    log(`d ${fmt(delivery.d.perSec)} deliveries/s`);
    await w.stop();
    await api.stop();
    await r.flushall();
  }

  // (e) fenliu: API process + worker process; pre-load N alerts, drain to `delivered`, then paced
  if (want('e')) {
    const cfg = writeConfig(cfgDoc(await freePort()));
    const api = await startFenliuProcess(cfg, 'api', profArgs);
    // Started before the backlog is loaded, so its start-up does not fall into the drain.
    const archiver = separateArchiver ? await startFenliuProcess(cfg, 'archiver', profArgs) : undefined;
    const k = keys('fenliu');
    const baseline = await redisMemory(r);
    const pre = await load(api.url, { amount: W + N, tag: 'e', auth: true });
    if (pre.total !== W + N) throw new Error(`fenliu accepted ${pre.total} of ${W + N} alerts`);
    await receipts(receiver.url);
    const ec0 = await redisCalls(r);
    const ecmd0 = opt.commands ? await redisCommandCalls(r) : undefined;
    const eus0 = opt.commands ? await redisCommandUsec(r) : undefined;
    // Every command of the drain in the slow log, to split the scripts' time (commandstats lumps them under evalsha).
    if (opt.slowlog) await slowlogStart(r);
    const audit0 = await auditEventCount(r);
    const worker = await startFenliuProcess(cfg, 'worker', profArgs);
    const drain: Receipt[] = [];
    let drainEnd = 0;
    const cpu = new DrainCpu(worker.child.pid!, r);
    await waitFor(
      async () => {
        drain.push(...(await receipts(receiver.url)).records);
        const delivered = await zcardAll(r, each(k.bucketList, (b) => k.flowDelivered(b, 'p-hook')));
        await cpu.poll(delivered);
        if (delivered >= W + N) drainEnd = Date.now();
        return delivered >= W + N;
      },
      300_000,
      'fenliu drain',
    );
    const ec1 = await redisCalls(r);
    if (ecmd0) log(`e commands/delivery: ${commandBreakdown(ecmd0, await redisCommandCalls(r), W + N)}`);
    if (eus0) log(`e Redis µs/delivery by command (scripts include their inner calls): ${commandBreakdown(eus0, await redisCommandUsec(r), W + N)}`);
    // Emptied at once: its entries would count as the alerts' memory below.
    if (opt.slowlog) log(`e Redis µs/delivery by script (slow log; sha, calls/delivery): ${await slowlogSplit(r, W + N)}`);
    const auditEventsPerDelivery = ((await auditEventCount(r)) - audit0) / (W + N);
    const ecpu = await cpu.end(W + N);
    // The drain ends when the last delivery is `delivered` in Redis (polled every 20 ms), not when the receiver saw it.
    const duplicates = drain.length - new Set(drain.map((x) => x.key)).size;
    const paceStart = Date.now();
    const paced = await load(api.url, { duration: Math.min(DURATION, 10), rate: RATE, connections: 10, tag: 'ep', auth: true });
    const total = W + N + paced.total;
    await waitFor(async () => (await zcardAll(r, each(k.bucketList, (b) => k.flowDelivered(b, 'p-hook')))) >= total, 60_000, 'fenliu paced deliveries');
    const recs = (await receipts(receiver.url)).records.filter((x) => x.at >= paceStart);
    const p = r.pipeline();
    for (const x of recs) p.hget(k.delivery(x.key), 'createdAt');
    const created = ((await p.exec()) ?? []).map(([, v]) => Date.parse(String(v)));
    // Includes the worker's start-up, the archiver and this script's polling (a few hundred calls).
    delivery.e = { ...summarise(drain, drainEnd, recs.map((x, i) => ({ at: x.at, acceptedAt: created[i] })), duplicates), redisCallsPerDelivery: (ec1 - ec0) / (W + N), auditEventsPerDelivery, ...ecpu };
    log(`e ${fmt(delivery.e.perSec)} deliveries/s, ${fmt(auditEventsPerDelivery, 1)} audit events/delivery`);

    // Memory: everything delivered; wait for the archiver to move the audit stream to files.
    await waitFor(async () => (await r.xlen(`fenliu:{audit}`)) < 100, 60_000, 'audit archiver').catch(() => log('audit stream not drained'));
    const retained = await redisMemory(r);
    memory.redisBaseline = baseline;
    memory.redisRetained = retained;
    memory.redisAlerts = total;
    memory.redisBytesPerAlert = (retained - baseline) / total;
    memory.auditStreamLen = await r.xlen('fenliu:{audit}');
    await worker.stop();
    await archiver?.stop();
    await api.stop();
    // Retention: everything received before now is past its retention.
    const repeat = await RepeatMatcher.create(r, k, 'fenliu', { window: '72h' });
    const swept = await sweepRetention(r, k, 'fenliu', Date.now() + 1, { repeat });
    const after = await redisMemory(r);
    memory.redisAfterRetention = after;
    memory.retentionSwept = swept.alerts;
    memory.retentionLeftKeys = await r.dbsize();
    memory.retentionLeftBytes = after - baseline;
    // What is left, largest first: the honest answer to "back to baseline?".
    const left: [string, number][] = [];
    for (const key of await r.keys('*')) left.push([key, Number(await r.memory('USAGE', key)) || 0]);
    memory.retentionLeftTop = left
      .sort((a, b) => b[1] - a[1])
      .slice(0, 8)
      .map(([key, bytes]) => `${key} ${bytes}`)
      .join('; ');
    log(`redis ${fmt(memory.redisBytesPerAlert as number)} B/alert; after retention ${mb(after)} vs baseline ${mb(baseline)}`);
  }

  // (s) the system: API and worker together, the naive pair and fenliu, same load, same receiver;
  // each stack on a Redis of its own (bench/system.ts: a stack out of turn is frozen, Redis included)
  if (want('s')) {
    // fenliu's API and worker, and with --archiver separate the archiver process (its CPU counts with the worker's).
    // The process that archives serves /metrics on a port of its own: the archiver's cost by phase.
    const archiverMetrics = new Map<Proc, string>();
    const fenliuProcs = async (doc: Record<string, unknown>, nodeArgs: string[] = [], root = ROOT): Promise<Proc[]> => {
      const cfg = writeConfig(doc);
      const args = [...profArgs, ...nodeArgs];
      const archives = (doc.audit as { archive?: boolean }).archive !== false;
      const metricsPort = String(await freePort());
      const archiverEnv = archives ? { FENLIU_METRICS_PORT: metricsPort } : {};
      const procs = [await startFenliuProcess(cfg, 'api', args, {}, root), await startFenliuProcess(cfg, 'worker', args, separateArchiver ? {} : archiverEnv, root)];
      if (separateArchiver) procs.push(await startFenliuProcess(cfg, 'archiver', args, archiverEnv, root));
      if (archives) archiverMetrics.set(procs[procs.length - 1], `http://127.0.0.1:${metricsPort}/metrics`);
      return procs;
    };
    // A pair of bench/servers: its API, then its worker.
    const serversPair = (name: string, apiEnv: NodeJS.ProcessEnv = {}) => async (url: string) => [
      await startNode([join(ROOT, 'bench', 'servers', `${name}.ts`)], { env: { REDIS_URL: url, ...apiEnv } }),
      await startNode([join(ROOT, 'bench', 'servers', `${name}-worker.ts`)], { env: { REDIS_URL: url, TARGET_URL: receiver.url, CONCURRENCY: String(CONCURRENCY) } }),
    ];
    const pairs: [string, (redisUrl: string) => Promise<Proc[]>, boolean, string[]?][] = [
      ['naive', serversPair('naive'), false],
      ['fenliu', async (url) => fenliuProcs(cfgDoc(await freePort(), url)), true],
    ];
    for (const b of opt.baselines?.split(',').filter(Boolean) ?? []) {
      if (b !== 'kept' && b !== 'kept-atomic') throw new Error(`--baselines: unknown ${b} (known: kept, kept-atomic)`);
      pairs.push([b, serversPair('kept', b === 'kept-atomic' ? { KEPT_ATOMIC: '1' } : {}), true]);
    }
    for (const v of opt.variants?.split(',').filter(Boolean) ?? []) {
      const variant = VARIANTS[v];
      if (!variant) throw new Error(`--variants: unknown ${v} (known: ${Object.keys(VARIANTS).join(', ')})`);
      const change = variant.config ?? ((doc) => doc);
      pairs.push([`fenliu-${v}`, async (url) => fenliuProcs(change(cfgDoc(await freePort(), url)), variant.nodeArgs), true, variant.redisArgs]);
    }
    // Another checkout of fenliu (its own node_modules or a link to these), in the same turns: a
    // change measured against the code before it, free of the machine's drift between runs.
    if (opt.compare) pairs.push(['fenliu-compare', async (url) => fenliuProcs(cfgDoc(await freePort(), url), [], resolve(opt.compare!)), true]);
    interface Up {
      row: string;
      procs: Proc[];
      auth: boolean;
      server: Awaited<ReturnType<typeof startRedis>>;
      client: Redis;
    }
    const up = async ([row, start, auth, redisArgs]: (typeof pairs)[number]): Promise<Up> => {
      const server = await startRedis(redisArgs);
      return { row, procs: await start(server.url), auth, server, client: new Redis(server.url) };
    };
    const down = async (u: Up) => {
      for (const p of [...u.procs].reverse()) await p.stop();
      u.client.disconnect();
      await u.server.stop();
    };
    const measure = (stacks: Up[]) =>
      measureSystems(
        stacks.map(({ row, procs: [api, ...workers], auth, server, client }) => ({ name: row, apiUrl: api.url, apiPid: api.child.pid!, workerPids: workers.map((w) => w.child.pid!), redis: client, redisPid: server.child.pid!, auth, tag: `s${row[0]}` })),
        { receiverUrl: receiver.url, seconds: SYSTEM_SECONDS, sliceSeconds: SYSTEM_SLICE, connections: CONNECTIONS, backlog: SYSTEM_BACKLOG, commands: opt.commands, onSlice: (row, round, perSec) => log(`s ${row} round ${round + 1}: ${fmt(perSec)} alerts/s`) },
      );
    const report = async (row: string, x: SystemResult, procs: Proc[]) => {
      // Warn and error lines the stack's processes logged during the row (the naive servers log none).
      const problems = new Map<string, number>();
      for (const p of procs) for (const [msg, n] of p.problems()) problems.set(msg, (problems.get(msg) ?? 0) + n);
      const logProblems = [...problems.values()].reduce((a, b) => a + b, 0);
      // Resident memory of the stack's processes at the end of the row (API, worker[, archiver]), MB.
      const rssMb = procs.map((p) => Math.round(rssOf(p.child.pid!) / 1048576));
      // The archiver's own figures (src/metrics/metrics.ts), over its process's life, warm-up included.
      const metricsUrl = procs.map((p) => archiverMetrics.get(p)).find(Boolean);
      const archiver = metricsUrl ? await archiverFigures(metricsUrl) : undefined;
      system[row] = { ...x, logProblems, logProblemKinds: Object.fromEntries(problems), rssMb, ...(archiver ? { archiver } : {}) };
      if (archiver) {
        const phases = Object.keys(archiver.cpuUsPerEvent);
        const cpu = phases.reduce((n, k) => n + archiver.cpuUsPerEvent[k], 0);
        log(`s ${row} archiver: ${archiver.events} events, ${fmt(cpu, 1)} CPU µs per event (${separateArchiver ? 'its own process' : 'the worker process: includes deliveries run while a phase waited'}); by phase, CPU / wall µs: ${phases.map((k) => `${k} ${fmt(archiver.cpuUsPerEvent[k], 1)} / ${fmt(archiver.wallUsPerEvent[k], 1)}`).join(', ')}`);
      }
      log(`s ${row} ${fmt(x.deliveredPerSec)} alerts/s delivered, p99 ${fmt(x.p99)} ms, ${x.accepted} accepted, ${x.lost} lost, ${x.duplicates} sent twice; ${fmt(x.tailCpuShare * 100, 1)}% of its API + worker CPU after its turns' load ended; Redis CPU ${fmt(x.redisCpuUsPerAlert)} µs per alert, ${fmt(x.redisForkCpuUsPerAlert)} of it in AOF rewrites; RSS ${rssMb.join(' / ')} MB; ${logProblems} warn/error log lines${logProblems ? `: ${[...problems].map(([msg, n]) => `${n} × ${msg}`).join('; ')}` : ''}`);
      if (x.commandCalls) log(`s ${row} commands/alert: ${x.commandCalls}\ns ${row} Redis µs/alert by command (scripts include their inner calls): ${x.commandUsec}\ns ${row} Redis bytes/alert in ${fmt(x.netBytes![0])}, out ${fmt(x.netBytes![1])}`);
    };
    if (SYSTEM_SLICE > 0) {
      // All stacks up side by side, the load taking turns (bench/system.ts).
      const stacks: Up[] = [];
      for (const p of pairs) stacks.push(await up(p));
      const res = await measure(stacks);
      for (const u of stacks) await report(u.row, res[u.row], u.procs);
      for (const u of stacks) await down(u);
    } else {
      // One stack at a time (`--system-slice 0`, --slowlog, --profile).
      for (const p of pairs) {
        const u = await up(p);
        if (opt.slowlog) await slowlogStart(u.client);
        const res = await measure([u]);
        await report(u.row, res[u.row], u.procs);
        if (opt.slowlog) log(`s ${u.row} Redis µs/alert by script, whole run (slow log; sha, calls/alert): ${await slowlogSplit(u.client, res[u.row].accepted)}`);
        await down(u);
      }
    }
  }

  await receiver.stop();
  r.disconnect();
  await redis.stop();

  Object.assign(results, { ingest, delivery, system, memory, ratios: { ingestCoverB: ingest.c && ingest.b ? ingest.c.reqPerSec / ingest.b.reqPerSec : undefined, waitCost: ingest.cw && ingest.cr ? ingest.cw.reqPerSec / ingest.cr.reqPerSec : undefined, waitCostSerial: ingest.cw1 && ingest.cr1 ? ingest.cw1.reqPerSec / ingest.cr1.reqPerSec : undefined, deliveryEoverD: delivery.e && delivery.d ? delivery.e.perSec / delivery.d.perSec : undefined, systemFenliuOverNaive: system.fenliu && system.naive ? system.fenliu.deliveredPerSec / system.naive.deliveredPerSec : undefined, systemRounds: system.fenliu && system.naive && system.fenliu.slicePerSec.length > 1 ? roundRatios(system.fenliu, system.naive) : undefined }, ranAt: new Date().toISOString(), seconds: (Date.now() - started) / 1000 });
  writeFileSync(join(ROOT, 'bench', 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(`\n${table(results as any)}\n`);
  // The system row's check: every alert answered 202 reached the receiver.
  const lost = Object.entries(system).filter(([, x]) => x.lost > 0 || x.accepted === 0);
  if (lost.length) throw new Error(`system row: ${lost.map(([k, x]) => `${k} lost ${x.lost} of ${x.accepted} accepted alerts (e.g. ${x.lostSample.join(', ')})`).join('; ')}`);
}

/** What one alert cost the stack in CPU: API, worker (and archiver) and Redis, forks included. */
const cpuPerAlert = (x: SystemResult) => x.apiCpuUsPerAlert + x.workerCpuUsPerAlert + x.redisCpuUsPerAlert;

export function table(res: { machine: any; options: any; ingest: Record<string, IngestResult>; delivery: Record<string, DeliveryResult>; system: Record<string, SystemResult>; memory: any; ratios: any }): string {
  const rows: string[] = [];
  const { ingest: i, delivery: d, memory: m, ratios } = res;
  rows.push(`machine: ${res.machine.nproc} cores (${res.machine.cpu}), node ${res.machine.node}, redis ${res.machine.redis}; ${res.options.connections} connections, ${res.options.duration} s per ingest run, ${res.options.deliveries} deliveries, worker concurrency ${res.options.concurrency}`);
  rows.push('');
  rows.push('| ingest | req/s | p50 ms | p99 ms | non-2xx | Redis calls/request | server CPU µs/request | Redis CPU µs/request |');
  rows.push('|---|---:|---:|---:|---:|---:|---:|---:|');
  const names: Record<string, string> = { a: '(a) bare Fastify + Ajv', b: '(b) naive + queue.add', c: '(c) fenliu POST /v1/alerts', cr: '(w) (c) with 1 replica attached', cw: '(w) (c) with 1 replica, waitReplicas: 1', cr1: '(w) same, 1 connection', cw1: '(w) same, 1 connection, waitReplicas: 1' };
  for (const x of ['a', 'b', 'c', 'cr', 'cw']) if (i[x]) rows.push(`| ${names[x]} | ${fmt(i[x].reqPerSec)} | ${i[x].p50} | ${i[x].p99} | ${i[x].non2xx + i[x].errors} | ${fmt((i[x] as any).redisCallsPerRequest ?? NaN, 1)} | ${fmt((i[x] as any).serverCpuUsPerRequest ?? NaN)} | ${fmt((i[x] as any).redisCpuUsPerRequest ?? NaN)} |`);
  if (ratios.ingestCoverB !== undefined) rows.push(`| **c/b** | **${fmt(ratios.ingestCoverB, 2)}** | | | | | | |`);
  // --variants at ingest: each variant beside a run of fenliu as installed made just before it
  for (const v of Object.keys(VARIANTS)) {
    const [base, x] = [i[`c-${v}-base`], i[`c-${v}`]];
    if (!base || !x) continue;
    for (const [row, label] of [[base, `(c) fenliu, run just before the next (--variants ${v})`], [x, `(c) fenliu, ${VARIANTS[v].label} (--variants ${v}; not a target row)`]] as const) rows.push(`| ${label} | ${fmt(row.reqPerSec)} | ${row.p50} | ${row.p99} | ${row.non2xx + row.errors} | ${fmt((row as any).redisCallsPerRequest ?? NaN, 1)} | ${fmt((row as any).serverCpuUsPerRequest ?? NaN)} | ${fmt((row as any).redisCpuUsPerRequest ?? NaN)} |`);
    rows.push(`| **${v}/installed**: req/s; server CPU µs per request | **${fmt(x.reqPerSec / base.reqPerSec, 2)}**; ${fmt((x as any).serverCpuUsPerRequest / (base as any).serverCpuUsPerRequest, 2)} | | | | | | |`);
  }
  if (ratios.waitCost !== undefined) rows.push(`| **waitReplicas: 1 / 0** | **${fmt(ratios.waitCost, 2)}** | | | | | | |`);
  for (const x of ['cr1', 'cw1']) if (i[x]) rows.push(`| ${names[x]} | ${fmt(i[x].reqPerSec)} | ${i[x].p50} | ${i[x].p99} | ${i[x].non2xx + i[x].errors} | ${fmt((i[x] as any).redisCallsPerRequest ?? NaN, 1)} | ${fmt((i[x] as any).serverCpuUsPerRequest ?? NaN)} | ${fmt((i[x] as any).redisCpuUsPerRequest ?? NaN)} |`);
  if (ratios.waitCostSerial !== undefined) rows.push(`| **waitReplicas: 1 / 0, 1 connection** | **${fmt(ratios.waitCostSerial, 2)}** | | | | | | |`);
  rows.push('');
  rows.push(`| delivery | deliveries/s (drain of ${res.options.deliveries} after ${res.options.deliveryWarmup ?? 0}) | p50 ms | p99 ms (acceptance → receipt at ${res.options.rate}/s) | Redis calls/delivery | worker CPU µs/delivery | Redis CPU µs/delivery | audit events/delivery |`);
  rows.push('|---|---:|---:|---:|---:|---:|---:|---:|');
  const dn: Record<string, string> = { d: '(d) naive BullMQ worker + undici', e: '(e) fenliu worker → delivered' };
  for (const x of ['d', 'e']) if (d[x]) rows.push(`| ${dn[x]} | ${fmt(d[x].perSec)} | ${d[x].p50} | ${d[x].p99} | ${fmt((d[x] as any).redisCallsPerDelivery ?? NaN, 1)} | ${fmt((d[x] as any).workerCpuUsPerDelivery ?? NaN)} | ${fmt((d[x] as any).redisCpuUsPerDelivery ?? NaN)} | ${fmt((d[x] as any).auditEventsPerDelivery ?? NaN, 1)} |`);
  if (ratios.deliveryEoverD !== undefined) rows.push(`| **e/d** | **${fmt(ratios.deliveryEoverD, 2)}** | | | | | | |`);
  rows.push('');
  const s = res.system;
  if (s.naive || s.fenliu) {
    rows.push(`| system (api + worker, POST → receiver, ${res.options.systemSeconds} s${res.options.systemSlice ? ` in turns of ${res.options.systemSlice} s` : ''}, ≤ ${res.options.systemBacklog} alerts in flight) | alerts/s delivered | accepted/s | p50 ms | p99 ms (POST sent → receiver) | accepted / lost / sent twice | Redis calls/alert | API CPU µs/alert | worker CPU µs/alert | Redis CPU µs/alert |`);
    rows.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    const sn: Record<string, string> = { naive: '(s) naive server + naive worker', fenliu: `(s) fenliu api + worker (archiving on${res.options.archiver === 'separate' ? ', in an archiver process counted as worker CPU' : ''})` };
    for (const v of Object.keys(VARIANTS)) sn[`fenliu-${v}`] = `(s) fenliu, ${VARIANTS[v].label} (--variants ${v}; not a target row)`;
    sn['fenliu-compare'] = `(s) fenliu from ${res.options.compare} (--compare; not a target row)`;
    sn.kept = '(s) naive pair keeping fenliu\'s promises, plainly (--baselines kept; not a target row)';
    sn['kept-atomic'] = '(s) the same, its claim and writes in one script (--baselines kept-atomic; not a target row)';
    for (const x of Object.keys(sn)) if (s[x]) rows.push(`| ${sn[x]} | ${fmt(s[x].deliveredPerSec)} | ${fmt(s[x].acceptedPerSec)} | ${fmt(s[x].p50)} | ${fmt(s[x].p99)} | ${s[x].accepted} / ${s[x].lost} / ${s[x].duplicates} | ${fmt(s[x].redisCallsPerAlert, 1)} | ${fmt(s[x].apiCpuUsPerAlert)} | ${fmt(s[x].workerCpuUsPerAlert)} | ${fmt(s[x].redisCpuUsPerAlert)} |`);
    if (ratios.systemFenliuOverNaive !== undefined) rows.push(`| **fenliu/naive** | **${fmt(ratios.systemFenliuOverNaive, 2)}** | | | | | | | | |`);
    // Against another stack in the same turns; per round too, since one round can move a ratio by a tenth.
    const versus = (label: string, o: SystemResult) => {
      const r = o.slicePerSec.length > 1 && s.fenliu.slicePerSec.length === o.slicePerSec.length ? roundRatios(s.fenliu, o) : null;
      const rounds = r ? `; per round ${fmt(r.median, 2)} (${fmt(r.min, 2)}–${fmt(r.max, 2)})` : '';
      rows.push(`| fenliu/${label}: alerts/s${r ? ', per round median (min–max)' : ''}; CPU µs per alert, API + worker + Redis | ${fmt(s.fenliu.deliveredPerSec / o.deliveredPerSec, 2)}${rounds}; ${fmt(cpuPerAlert(s.fenliu))} vs ${fmt(cpuPerAlert(o))} | | | | | | | | |`);
    };
    for (const b of ['kept', 'kept-atomic']) if (s.fenliu && s[b]) versus(b, s[b]);
    if (s.fenliu && s['fenliu-compare']) versus('compare', s['fenliu-compare']);
    for (const v of Object.keys(VARIANTS)) if (s.fenliu && s[`fenliu-${v}`]) versus(v, s[`fenliu-${v}`]);
    if (ratios.systemRounds) rows.push(`| fenliu/naive per round (slices moments apart): median, min–max | ${fmt(ratios.systemRounds.median, 2)} (${fmt(ratios.systemRounds.min, 2)}–${fmt(ratios.systemRounds.max, 2)}) | | | | | | | | |`);
    rows.push('');
  }
  rows.push('| memory | value |');
  rows.push('|---|---:|');
  if (m.redisBytesPerAlert !== undefined) {
    rows.push(`| Redis bytes per retained alert (1 delivery, delivered; audit archived) | ${fmt(m.redisBytesPerAlert)} |`);
    rows.push(`| Redis used_memory: baseline → ${m.redisAlerts} alerts → after retention sweep | ${mb(m.redisBaseline)} → ${mb(m.redisRetained)} → ${mb(m.redisAfterRetention)} |`);
    rows.push(`| keys left after the sweep (largest) | ${m.retentionLeftKeys}: ${m.retentionLeftTop} |`);
  }
  if (m.rssBefore !== undefined) {
    rows.push(`| fenliu API RSS, median of the first → last fifth of ${m.sustainSeconds} s sustained (${fmt(m.sustainReqPerSec)} req/s) | ${mb(m.rssEarlyMedian)} → ${mb(m.rssLateMedian)} (${m.rssGrowthPct >= 0 ? '+' : ''}${fmt(m.rssGrowthPct, 1)}%) |`);
    rows.push(`| fenliu API RSS, first → last reading; samples MB | ${mb(m.rssBefore)} → ${mb(m.rssAfter)}; ${m.rssSeriesMB} |`);
  }
  return rows.join('\n');
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench failed: ${(err as Error).stack}\n`);
    process.exit(1);
  },
);

type SlowEntry = [number, number, number, string[], ...unknown[]];

/** The scripts the slow log names by their SHA-1 (first 8 hex digits). */
const SCRIPT_NAMES: Record<string, string> = Object.fromEntries(
  Object.entries({ ingest: INGEST_SCRIPT, materialise: MATERIALISE_SCRIPT }).map(([name, lua]) => [createHash('sha1').update(lua).digest('hex').slice(0, 8), name]),
);

/**
 * `--variants`: fenliu with one piece of its work turned off (its bench config changed), on a Redis
 * set up otherwise (`redisArgs`), or with other Node options (`nodeArgs`), to measure what each costs.
 */
const VARIANTS: Record<string, { label: string; config?: (doc: Record<string, unknown>) => Record<string, unknown>; redisArgs?: string[]; nodeArgs?: string[] }> = {
  noarchive: { label: 'audit archiving off', config: (doc) => ({ ...doc, audit: { ...(doc.audit as object), archive: false } }) },
  // Ingest writes deliveries, jobs and audit events itself, not through the log and the dispatcher.
  writethrough: { label: 'engine.ingestWriteThrough', config: (doc) => ({ ...doc, engine: { ...(doc.engine as object), ingestWriteThrough: true } }) },
  norepeat: { label: 'repeat matching off', config: (doc) => ({ ...doc, repeat: { enabled: false } }) },
  // warn: the per-request access line (info) is not written; errors still are.
  noaccess: { label: 'access log off', config: (doc) => ({ ...doc, log: { ...(doc.log as object), level: 'warn' } }) },
  // Redis rewrites its AOF when it has grown by this percentage of its size after the last rewrite (default 100).
  aof200: { label: 'Redis with auto-aof-rewrite-percentage 200', redisArgs: ['--auto-aof-rewrite-percentage', '200'] },
  aof400: { label: 'Redis with auto-aof-rewrite-percentage 400', redisArgs: ['--auto-aof-rewrite-percentage', '400'] },
  // V8's young generation is three semi-spaces: fewer scavenges, for more resident memory.
  semi32: { label: 'node --max-semi-space-size=32', nodeArgs: ['--max-semi-space-size=32'] },
};

/** The `--variants` that change fenliu's API process (its config or Node's flags), in (c) too; one that changes Redis needs the system row's own. */
function ingestVariants(): string[] {
  return (opt.variants?.split(',').filter(Boolean) ?? []).filter((v) => VARIANTS[v] && !VARIANTS[v].redisArgs);
}

/** Every command into the slow log from now on (`--slowlog`), for slowlogSplit. */
async function slowlogStart(r: Redis): Promise<void> {
  await r.config('SET', 'slowlog-log-slower-than', '0');
  await r.config('SET', 'slowlog-max-len', '2000000');
  await r.slowlog('RESET');
}

/** The split since slowlogStart, per unit; then the slow log back to its defaults and emptied. */
async function slowlogSplit(r: Redis, units: number): Promise<string> {
  await r.config('SET', 'slowlog-log-slower-than', '10000');
  const split = scriptBreakdown((await r.slowlog('GET', -1)) as SlowEntry[], units);
  await r.slowlog('RESET');
  await r.config('SET', 'slowlog-max-len', '128');
  return split;
}

/** Slow-log entries summed per script (EVALSHA's sha, named when known) and per other command by key shape: µs and calls per unit, largest first. */
function scriptBreakdown(entries: SlowEntry[], units: number): string {
  const by = new Map<string, { us: number; n: number; keys: number }>();
  for (const [, , us, args] of entries) {
    const cmd = String(args[0]).toLowerCase();
    // One entry per script whatever its key count (the claim's varies with its batch), named when known.
    const sha = String(args[1]).slice(0, 8);
    // Plain commands by key shape (ids and bucket tags folded), so two ZADDs to different indexes are told apart.
    const shape = String(args[1] ?? '').replace(/\{[^}]*\}/, '{b}').replace(/(alt|dlv|fb|esc|evt)_[^:]*/g, '$1_*');
    const name = cmd === 'evalsha' ? `script ${SCRIPT_NAMES[sha] ?? sha}` : `${cmd} ${shape}`;
    const x = by.get(name) ?? { us: 0, n: 0, keys: 0 };
    x.us += us;
    x.n++;
    if (cmd === 'evalsha') x.keys += Number(args[2]);
    by.set(name, x);
  }
  return [...by]
    .sort((a, b) => b[1].us - a[1].us)
    .slice(0, 24)
    .map(([name, x]) => `${name} ${(x.us / units).toFixed(1)} µs ${(x.n / units).toFixed(2)}${x.keys ? ` (${(x.keys / x.n).toFixed(0)} keys)` : ''}`)
    .join('; ');
}
