/**
 * `npm run bench:audit [-- --events 1000000 --at 100000 --samples 500 --batch 20000]`: the audit trail at size.
 *
 * Events go through the real path: onto the Redis Stream (pipelined) as fenliu's producers write them (`addAudit`, or sealed: docs/audit.md "Stream entries"), the real
 * AuditArchiver (with the index hook, as in production) into segment files. An alert with two
 * deliveries writes 15 events as fenliu writes them today (received with the route, one
 * delivery.attempt per attempt, the first with the body sent, the lifecycle changes, feedback to
 * 110, an SLA expiry; every tenth alert has a retried delivery: 16), spread over two days and
 * interleaved with other alerts' events in time order, as a province's log is (10,000 alerts a
 * day: 1M events ≈ 6.6 days). `--batch`: events written to the stream between two archive runs (the worker's archiver
 * takes what 250 ms brought, ≈ 500 events at 700 deliveries/s; 20,000 measures the bulk rate).
 *
 * Reported at each size in --at and at --events: archive throughput (events/s, archiver time
 * only), full verify throughput (MB/s), index rebuild time, p50/p99 of one alert's timeline
 * (readAlertTimeline: index lookup + reading the lines), p99 of proof generation
 * against a signed checkpoint (src/audit/proof.ts, through the index), and proof size (mean JSON bytes).
 */
import { rm, stat, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis, type ChainableCommander } from 'ioredis';
import { AuditArchiver } from '../src/audit/archiver.js';
import { addAudit, AUDIT_SEALED_FIELD, auditHeadKey, auditStreamKey, type AuditEvent } from '../src/audit/events.js';
import { closeAuditIndexes, eventsOfAlert, openAuditIndex, rebuildIndex } from '../src/audit/event-index.js';
import { listSegments, sealForStream } from '../src/audit/format.js';
import { readAlertTimeline } from '../src/audit/query.js';
import { generateKey, parseSigner } from '../src/audit/checkpoint.js';
import { refreshCheckpoint } from '../src/audit/checkpoint-log.js';
import { proveAlert } from '../src/audit/proof.js';
import { verifyAuditDir } from '../src/audit/verify.js';
import { benchAlert, percentile, redisCalls, startRedis, tempDir } from './lib.js';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '1000000' },
    at: { type: 'string', default: '100000' },
    samples: { type: 'string', default: '500' },
    dir: { type: 'string' },
    keep: { type: 'boolean', default: false },
    /** measure the timeline again on an existing --dir written by an earlier run (no generation) */
    reuse: { type: 'boolean', default: false },
    /** write a CPU profile of the archive phases only (the archiver's own work) to this file */
    profile: { type: 'string' },
    batch: { type: 'string', default: '20000' },
    /**
     * Run the archiver as the worker does (started: lock held, tail and tree kept in memory,
     * XREAD BLOCK between batches) instead of one flushOnce per batch, which re-reads the tail
     * and the tree from the files each time (what a small --batch would measure otherwise).
     */
    running: { type: 'boolean', default: false },
  },
});
const BATCH = Number(values.batch);
const TOTAL = Number(values.events);
const CHECKPOINTS = [...new Set([...values.at!.split(',').map(Number).filter((n) => n > 0 && n < TOTAL), TOTAL])].sort((a, b) => a - b);
const SAMPLES = Number(values.samples);
const T0 = Date.UTC(2026, 10, 1);
const ALERT_EVERY_MS = 86_400_000 / 10_000;
const H = 3_600_000;
/** Every RETRY_EVERY-th alert's 12345 delivery needs a second attempt (the first answered 503). */
const RETRY_EVERY = 10;
/** Events of an alert: 15, 16 with a retried delivery. Mean, for the span of a log of n events. */
const PER_ALERT = 15 + 1 / RETRY_EVERY;
/** A timeline is complete this long after receipt (the last lifecycle change: closed by poll at 44 h). */
const COMPLETE_AFTER = 45 * H;

/**
 * The events of alert n, with their times (ms after receipt), as fenliu writes them today
 * (docs/audit.md, "One event per attempt", "One event per received alert"): alert.received (the
 * alert, a body, and the route) from the dispatcher; per delivery one delivery.attempt per attempt (the first carrying the
 * adapter, sha256 and the body sent, each the request, response and the state change it led to);
 * then the platform's lifecycle changes (callbacks, poll); feedback to 110 (deliveries of their
 * own, one attempt each); an SLA expiry.
 */
function alertEvents(n: number): [number, () => AuditEvent][] {
  const alertId = `HS-2026-${String(n).padStart(7, '0')}`;
  const sourceId = n % 5 ? 'huangshi-110' : 'ezhou-110';
  const t0 = T0 + n * ALERT_EVERY_MS;
  const at = (ms: number) => new Date(t0 + ms).toISOString();
  const out: [number, () => AuditEvent][] = [];
  const add = (ms: number, ev: () => Omit<AuditEvent, 'at' | 'alertId'>) => out.push([t0 + ms, () => ({ at: at(ms), alertId, ...ev() }) as AuditEvent]);
  const deliveries = [
    { platformId: 'huangshi-12345', id: `${alertId}.1` },
    { platformId: 'xialu-grid', id: `${alertId}.2` },
  ];
  // the dispatcher's one event: the alert first in data (spliced in by its script), then the rest, the route last
  add(0, () => ({ data: { alert: { ...benchAlert(String(n)), id: alertId, receivedAt: at(0) }, bodyHash: 'a'.repeat(64), idempotencyKey: `${sourceId}:${n}`, ruleId: 'consumer-huangshi', targets: ['huangshi-12345', 'xialu-grid'], deliveryIds: deliveries.map((d) => d.id) }, type: 'alert.received', sourceId, actor: { kind: 'source', id: sourceId, keyId: `${sourceId}-2026a` } }));
  /** One attempt (engine.ts attempt()): the attempt record, the first also what was sent, then the state change. */
  const attempt = (ms: number, d: { platformId: string; id: string }, k: number, o: { first: boolean; status: number; body?: () => string; response: string; to: string; ticket?: string; nextAttemptAt?: string }) =>
    add(ms, () => {
      const body = o.body?.();
      const sha = body !== undefined ? 'f'.repeat(64) : undefined;
      const ok = o.status < 300;
      const data: Record<string, unknown> = {
        n: k,
        at: at(ms - 87),
        durationMs: 87,
        outcome: ok ? 'delivered' : 'retry',
        request: { method: 'POST', url: `https://${d.platformId}.example.gov.cn/api/workorders`, headers: { 'content-type': 'application/json; charset=utf-8', accept: 'application/json', 'idempotency-key': d.id, 'x-fenliu-delivery-id': d.id, 'webhook-id': d.id, 'webhook-timestamp': String(Math.floor((t0 + ms) / 1000)), 'webhook-signature': '[redacted]' }, bodySha256: sha },
        status: o.status,
        response: o.response,
        ...(ok ? {} : { errorClass: 'http_5xx', reason: 'HTTP 503', nextAttemptAt: o.nextAttemptAt }),
      };
      if (o.first && body !== undefined) Object.assign(data, { adapter: d.platformId === 'huangshi-110-feedback' ? 'feedback-110' : 'hotline-12345', adapterVersion: '1.4.0', sha256: sha, body });
      Object.assign(data, { from: 'sending', to: o.to, source: 'engine', ...(o.ticket ? { remoteTicketId: o.ticket } : {}) });
      return { type: 'delivery.attempt', deliveryId: d.id, platformId: d.platformId, data };
    });
  for (const [i, d] of deliveries.entries()) {
    const base = { deliveryId: d.id, platformId: d.platformId };
    const st = (ms: number, from: string, to: string, source: string) => add(ms, () => ({ type: 'delivery.state', ...base, data: { from, to, source } }));
    const body = () => JSON.stringify({ 工单编号: null, 关联警情号: alertId, 来电人: '张某', 联系电话: '13000000000', 诉求类型: '0301', 诉求内容: '米粉店消费纠纷，顾客要求退款，民警已到场控制', 事发地址: `湖北省黄石市下陆区杭州西路${n}号`, 行政区划: '420204', 紧急程度: '一般', 办理时限: at(12 * H) });
    const ticket = `GD${n}${i}`;
    const answer = JSON.stringify({ code: 0, 工单编号: ticket });
    let t = 180 + i;
    if (i === 0 && n % RETRY_EVERY === 0) {
      attempt(t, d, 1, { first: true, status: 503, body, response: 'Service Unavailable', to: 'queued', nextAttemptAt: at(t + 5_000) });
      t += 5_100;
      attempt(t, d, 2, { first: false, status: 200, response: answer, to: 'delivered', ticket });
    } else attempt(t, d, 1, { first: true, status: 200, body, response: answer, to: 'delivered', ticket });
    st(2 * H + i, 'delivered', 'accepted', 'callback');
    st(5 * H + i, 'accepted', 'in_progress', 'callback');
    st(20 * H + i, 'in_progress', 'resolved', 'callback');
    st(44 * H + i, 'resolved', 'closed', 'poll');
  }
  // feedback to 110 (a delivery of its own): accepted and resolved for 12345, resolved for the grid
  for (const [k, ms] of [2 * H + 10, 20 * H + 10, 20 * H + 20].entries()) {
    const d = { deliveryId: `${alertId}.fb${k}`, platformId: 'huangshi-110-feedback' };
    attempt(ms + 50, { id: d.deliveryId, platformId: d.platformId }, 1, { first: true, status: 200, body: () => JSON.stringify({ alertId, state: k ? 'resolved' : 'accepted' }), response: '{"code":0}', to: 'delivered' });
  }
  add(12 * H + 5, () => ({ type: 'sla.expired', deliveryId: deliveries[1].id, platformId: 'xialu-grid', data: { clock: 'intervention', dueAt: at(12 * H) } }));
  return out;
}

/** Every event time in order, as [ms, alert, index]: the order the stream sees them in. */
function schedule(alerts: number): { order: Int32Array; kth: Int32Array; times: Float64Array } {
  const rows: { t: number; a: number; k: number }[] = [];
  for (let a = 0; a < alerts; a++) alertEvents(a).forEach(([t], k) => rows.push({ t, a, k }));
  rows.sort((x, y) => x.t - y.t || x.a - y.a || x.k - y.k);
  return { order: Int32Array.from(rows, (r) => r.a), kth: Int32Array.from(rows, (r) => r.k), times: Float64Array.from(rows, (r) => r.t) };
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const v = await fn();
  return [v, performance.now() - t];
}

async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for (const s of await listSegments(dir)) n += (await stat(join(dir, s))).size;
  return n;
}

/** Timeline latency of `samples` random complete alerts: [p50, p99, mean events]. */
async function timelines(r: Redis, prefix: string, dir: string, complete: number): Promise<[number, number, number]> {
  await eventsOfAlert(dir, 'warm-up');
  const lat: number[] = [];
  let events = 0;
  for (let s = 0; s < SAMPLES; s++) {
    const a = Math.floor(Math.random() * complete);
    const [tl, ms] = await timed(() => readAlertTimeline({ redis: r, prefix, dir, alertId: `HS-2026-${String(a).padStart(7, '0')}` }));
    events += tl.length;
    lat.push(ms);
  }
  lat.sort((a, b) => a - b);
  return [percentile(lat, 50), percentile(lat, 99), events / SAMPLES];
}

/** Proof generation of `samples` random complete alerts against the checkpoint in `dir`: [p99 ms, mean bytes, max bytes]. */
async function proofs(dir: string, complete: number): Promise<[number, number, number]> {
  const lat: number[] = [];
  let bytes = 0;
  let max = 0;
  for (let s = 0; s < SAMPLES; s++) {
    const a = Math.floor(Math.random() * complete);
    const [p, ms] = await timed(() => proveAlert(dir, `HS-2026-${String(a).padStart(7, '0')}`));
    const n = Buffer.byteLength(JSON.stringify(p));
    bytes += n;
    max = Math.max(max, n);
    lat.push(ms);
  }
  lat.sort((a, b) => a - b);
  return [percentile(lat, 99), bytes / SAMPLES, max];
}

type CpuProfile = { nodes: { id: number; children?: number[] }[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number };
const profiles: CpuProfile[] = [];

/** Several profiles as one (node ids renumbered), for bench/profile-summary.ts. */
function mergeProfiles(ps: CpuProfile[]): CpuProfile {
  const out: CpuProfile = { nodes: [], samples: [], timeDeltas: [], startTime: ps[0]?.startTime ?? 0, endTime: ps[ps.length - 1]?.endTime ?? 0 };
  let base = 0;
  for (const p of ps) {
    let max = 0;
    for (const n of p.nodes) {
      out.nodes.push({ ...n, id: n.id + base, children: n.children?.map((c) => c + base) });
      max = Math.max(max, n.id);
    }
    out.samples.push(...p.samples.map((s) => s + base));
    out.timeDeltas.push(...p.timeDeltas);
    base += max;
  }
  return out;
}

async function main() {
  const redis = await startRedis();
  if (values.reuse) {
    if (!values.dir) throw new Error('--reuse needs --dir');
    const r = new Redis(redis.url);
    const n = openAuditIndex(values.dir).count();
    // the log spans n / (PER_ALERT × 10,000) days; alerts received COMPLETE_AFTER before its end are complete
    const complete = Math.max(1, Math.floor((n / (PER_ALERT * 10_000) - COMPLETE_AFTER / 86_400_000) * 10_000));
    const [p50, p99, ev] = await timelines(r, 'bench', values.dir, complete);
    console.log(JSON.stringify({ events: n, timelineEvents: +ev.toFixed(1), timelineP50ms: +p50.toFixed(2), timelineP99ms: +p99.toFixed(2) }));
    closeAuditIndexes();
    r.disconnect();
    await redis.stop();
    return;
  }
  const r = new Redis(redis.url);
  const prefix = 'bench';
  const dir = values.dir ?? tempDir('audit');
  await rm(dir, { recursive: true, force: true });
  // the Merkle tree is on (the default), as in production
  // --running: the bench waits for the archiver's head to reach what it wrote
  let archivedTo = 0;
  let onArchived: (() => void) | null = null;
  const archiver = new AuditArchiver({
    redis: r,
    prefix,
    dir,
    index: { add: (l) => openAuditIndex(dir).add(l) },
    ...(values.running ? { minIntervalMs: 0, hooks: { afterFsync: (i: { lastSeq: number }) => void ((archivedTo = i.lastSeq) >= written && onArchived?.()) } } : {}),
  });
  /** --running: resolves once every event written is archived and the stream trimmed (the head moved). */
  const caughtUp = async () => {
    if (archivedTo < written) await new Promise<void>((resolve) => (onArchived = resolve));
    onArchived = null;
    while (JSON.parse((await r.get(auditHeadKey(prefix))) ?? '{"seq":0}').seq < written) await new Promise(setImmediate);
  };
  if (values.running) await archiver.start();
  const signer = parseSigner(generateKey('bench.example/audit').privateKey);

  const alerts = Math.ceil(TOTAL / PER_ALERT) + 1;
  const { order, kth, times } = schedule(alerts);
  process.stderr.write(`scheduled ${alerts} alerts (${order.length} events, first ${TOTAL} written)…\n`);
  const cache = new Map<number, [number, () => AuditEvent][]>();
  const eventOf = (i: number) => {
    const a = order[i];
    let evs = cache.get(a);
    if (!evs) cache.set(a, (evs = alertEvents(a)));
    const ev = evs[kth[i]][1]();
    if (kth[i] === evs.length - 1) cache.delete(a);
    return ev;
  };

  let session: Session | undefined;
  if (values.profile) {
    session = new Session();
    session.connect();
    await session.post('Profiler.enable');
  }
  // as fenliu's producers write them: the two hot events sealed (the attempt's record script, the
  // materialise script; docs/audit.md "Stream entries"), the others whole
  const produce = (m: ChainableCommander, ev: AuditEvent): void => {
    if (ev.type !== 'delivery.attempt' && ev.type !== 'alert.received') return addAudit(m, prefix, ev);
    const { event, bodyFields } = sealForStream(ev);
    m.xadd(auditStreamKey(prefix), '*', AUDIT_SEALED_FIELD, JSON.stringify(event), ...bodyFields);
  };
  const results: Record<string, unknown>[] = [];
  let written = 0;
  let archiveMs = 0;
  // CPU of the whole process (main thread and libuv/SQLite threads) while only the archiver runs,
  // and the Redis commands it sends (INFO commandstats; the probe itself subtracted).
  let archiveCpuUs = 0;
  let archiveCalls = 0;
  const started = performance.now();
  for (const target of CHECKPOINTS) {
    while (written < target) {
      const n = Math.min(BATCH, target - written);
      if (values.running) {
        // one transaction: the blocked archiver wakes once the whole batch is in the stream
        const m = r.multi();
        for (let i = written; i < written + n; i++) produce(m, eventOf(i));
        await m.exec();
      } else {
        for (let off = 0; off < n; off += 1_000) {
          const p = r.pipeline();
          for (let i = written + off; i < written + Math.min(n, off + 1_000); i++) produce(p, eventOf(i));
          await p.exec();
        }
      }
      written += n;
      const calls0 = await redisCalls(r);
      // profiled: the archive phases only, as one profile (the producers' time is cut out)
      if (session) await session.post('Profiler.start');
      const cpu0 = process.cpuUsage();
      const [, ms] = await timed<unknown>(() => (values.running ? caughtUp() : archiver.flushOnce()));
      const cpu = process.cpuUsage(cpu0);
      if (session) profiles.push((await session.post('Profiler.stop')).profile as CpuProfile);
      archiveCpuUs += cpu.user + cpu.system;
      archiveCalls += (await redisCalls(r)) - calls0 - 1;
      archiveMs += ms;
      process.stderr.write(`\r${written} events archived (${Math.round(written / (archiveMs / 1000))}/s archiver, ${(archiveCpuUs / written).toFixed(1)} CPU µs/event, ${Math.round((performance.now() - started) / 1000)} s)`);
    }
    process.stderr.write('\n');
    if (session && target === CHECKPOINTS[CHECKPOINTS.length - 1]) await writeFile(values.profile!, JSON.stringify(mergeProfiles(profiles)));
    const bytes = await dirBytes(dir);
    const [v, verifyMs] = await timed(() => verifyAuditDir(dir));
    if (!v.ok) throw new Error(`verify failed: ${JSON.stringify(v.error)}`);
    closeAuditIndexes();
    const [built, indexMs] = await timed(() => rebuildIndex(dir));
    // alerts whose events are all written by now (received COMPLETE_AFTER before the last event),
    // else (a shorter log) every alert received so far
    const lastT = times[target - 1];
    const done = Math.floor((lastT - COMPLETE_AFTER - T0) / ALERT_EVERY_MS);
    const complete = done >= 1 ? done : Math.max(1, Math.floor((lastT - T0) / ALERT_EVERY_MS));
    const [p50, p99, events] = await timelines(r, prefix, dir, complete);
    await refreshCheckpoint(dir, { signer });
    const [proofP99, proofMean, proofMax] = await proofs(dir, complete);
    const row = {
      events: target,
      segments: (await listSegments(dir)).length,
      logMB: +(bytes / 1e6).toFixed(1),
      archiveEventsPerS: Math.round(written / (archiveMs / 1000)),
      archiveCpuUsPerEvent: +(archiveCpuUs / written).toFixed(1),
      archiveRedisCallsPer1k: +((archiveCalls / written) * 1000).toFixed(1),
      verifyMBps: +(bytes / 1e6 / (verifyMs / 1000)).toFixed(1),
      verifyS: +(verifyMs / 1000).toFixed(1),
      indexBuildS: +(indexMs / 1000).toFixed(1),
      indexed: built.records,
      indexMB: +((await stat(join(dir, 'index.sqlite'))).size / 1e6).toFixed(1),
      timelineEvents: +events.toFixed(1),
      timelineP50ms: +p50.toFixed(2),
      timelineP99ms: +p99.toFixed(2),
      proofP99ms: +proofP99.toFixed(2),
      proofBytes: Math.round(proofMean),
      proofBytesMax: proofMax,
    };
    results.push(row);
    process.stderr.write(`${JSON.stringify(row)}\n`);
  }
  console.log('\n| events | segments | log MB | archive events/s | archive CPU µs/event | archive Redis calls/1k events | verify MB/s | index build s | index MB | timeline events | timeline p50 ms | timeline p99 ms | proof p99 ms | proof bytes |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const x of results) {
    console.log(`| ${x.events} | ${x.segments} | ${x.logMB} | ${x.archiveEventsPerS} | ${x.archiveCpuUsPerEvent} | ${x.archiveRedisCallsPer1k} | ${x.verifyMBps} | ${x.indexBuildS} | ${x.indexMB} | ${x.timelineEvents} | ${x.timelineP50ms} | ${x.timelineP99ms} | ${x.proofP99ms} | ${x.proofBytes} |`);
  }
  await archiver.stop();
  closeAuditIndexes();
  r.disconnect();
  await redis.stop();
  if (!values.keep && !values.dir) await rm(dir, { recursive: true, force: true });
}

await main();
