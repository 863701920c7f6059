/**
 * `npm run bench:audit [-- --events 1000000 --at 100000 --samples 500]`: the audit trail at size.
 *
 * Events go through the real path: `addAudit` onto the Redis Stream (pipelined), the real
 * AuditArchiver (with the index hook, as in production) into segment files. An alert with two
 * deliveries writes 28 events (received, routed, per delivery translated/state/attempt and its
 * lifecycle, feedback to 110, an SLA expiry), spread over two days and interleaved with other
 * alerts' events in time order, as a province's log is (10,000 alerts a day: 1M events ≈ 3.6 days).
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
import { Redis } from 'ioredis';
import { AuditArchiver } from '../src/audit/archiver.js';
import { addAudit, type AuditEvent } from '../src/audit/events.js';
import { closeAuditIndexes, eventsOfAlert, openAuditIndex, rebuildIndex } from '../src/audit/event-index.js';
import { listSegments } from '../src/audit/format.js';
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
  },
});
const TOTAL = Number(values.events);
const CHECKPOINTS = [...new Set([...values.at!.split(',').map(Number).filter((n) => n > 0 && n < TOTAL), TOTAL])].sort((a, b) => a - b);
const SAMPLES = Number(values.samples);
const PER_ALERT = 28;
const T0 = Date.UTC(2026, 10, 1);
const ALERT_EVERY_MS = 86_400_000 / 10_000;
const H = 3_600_000;

/** The 28 events of alert n, with their times (ms after receipt). */
function alertEvents(n: number): [number, () => AuditEvent][] {
  const alertId = `HS-2026-${String(n).padStart(7, '0')}`;
  const sourceId = n % 5 ? 'huangshi-110' : 'ezhou-110';
  const t0 = T0 + n * ALERT_EVERY_MS;
  const at = (ms: number) => new Date(t0 + ms).toISOString();
  const out: [number, () => AuditEvent][] = [];
  const add = (ms: number, ev: () => Omit<AuditEvent, 'at' | 'alertId'>) => out.push([t0 + ms, () => ({ at: at(ms), alertId, ...ev() }) as AuditEvent]);
  add(0, () => ({ type: 'alert.received', sourceId, actor: { kind: 'source', id: sourceId, keyId: `${sourceId}-2026a` }, data: { alert: benchAlert(String(n)) } }));
  add(40, () => ({ type: 'alert.routed', sourceId, data: { ruleId: 'consumer-huangshi', targets: ['huangshi-12345', 'xialu-grid'] } }));
  const deliveries = [
    { platformId: 'huangshi-12345', id: `${alertId}.1` },
    { platformId: 'xialu-grid', id: `${alertId}.2` },
  ];
  for (const [i, d] of deliveries.entries()) {
    const base = { deliveryId: d.id, platformId: d.platformId };
    const st = (ms: number, from: string, to: string, source = 'engine') => add(ms, () => ({ type: 'delivery.state', ...base, data: { from, to, source } }));
    const body = () => JSON.stringify({ 工单编号: null, 关联警情号: alertId, 来电人: '张某', 联系电话: '13000000000', 诉求类型: '0301', 诉求内容: '米粉店消费纠纷，顾客要求退款，民警已到场控制', 事发地址: `湖北省黄石市下陆区杭州西路${n}号`, 行政区划: '420204', 紧急程度: '一般', 办理时限: at(12 * H) });
    add(60 + i, () => ({ type: 'delivery.translated', ...base, data: { adapter: { id: 'hotline-12345', version: '1.4.0' }, sha256: 'f'.repeat(64), contentType: 'application/json', body: body() } }));
    st(70 + i, 'queued', 'sending');
    add(180 + i, () => ({ type: 'delivery.attempt', ...base, data: { attempt: 1, request: { method: 'POST', url: `https://${d.platformId}.example.gov.cn/api/workorders`, headers: { 'content-type': 'application/json', 'idempotency-key': d.id } }, status: 200, response: JSON.stringify({ code: 0, 工单编号: `GD${n}${i}` }), durationMs: 87, errorClass: null } }));
    st(190 + i, 'sending', 'delivered');
    st(2 * H + i, 'delivered', 'accepted', 'callback');
    st(5 * H + i, 'accepted', 'in_progress', 'callback');
    st(20 * H + i, 'in_progress', 'resolved', 'callback');
    st(44 * H + i, 'resolved', 'closed', 'poll');
  }
  // feedback to 110 (a delivery of its own): accepted and resolved for 12345, resolved for the grid
  for (const [k, ms] of [2 * H + 10, 20 * H + 10, 20 * H + 20].entries()) {
    const base = { deliveryId: `${alertId}.fb${k}`, platformId: 'huangshi-110-feedback' };
    add(ms, () => ({ type: 'delivery.translated', ...base, data: { adapter: { id: 'feedback-110', version: '1.0.0' }, sha256: 'e'.repeat(64), contentType: 'application/json', body: JSON.stringify({ alertId, state: k ? 'resolved' : 'accepted' }) } }));
    add(ms + 50, () => ({ type: 'delivery.attempt', ...base, data: { attempt: 1, status: 200, durationMs: 12 } }));
    add(ms + 60, () => ({ type: 'delivery.state', ...base, data: { from: 'sending', to: 'delivered', source: 'engine' } }));
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
    // the log spans n / (28 × 10,000) days; alerts received 45 h before its end are complete
    const complete = Math.max(1, Math.floor((n / (PER_ALERT * 10_000) - 45 / 24) * 10_000));
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
  const archiver = new AuditArchiver({ redis: r, prefix, dir, index: { add: (l) => openAuditIndex(dir).add(l) } });
  const signer = parseSigner(generateKey('bench.example/audit').privateKey);

  const alerts = Math.ceil(TOTAL / PER_ALERT);
  process.stderr.write(`scheduling ${alerts} alerts (${alerts * PER_ALERT} events, first ${TOTAL} written)…\n`);
  const { order, kth, times } = schedule(alerts);
  const cache = new Map<number, [number, () => AuditEvent][]>();
  const eventOf = (i: number) => {
    const a = order[i];
    let evs = cache.get(a);
    if (!evs) cache.set(a, (evs = alertEvents(a)));
    const ev = evs[kth[i]][1]();
    if (kth[i] === PER_ALERT - 1) cache.delete(a);
    return ev;
  };

  let session: Session | undefined;
  if (values.profile) {
    session = new Session();
    session.connect();
    await session.post('Profiler.enable');
  }
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
      const n = Math.min(20_000, target - written);
      for (let off = 0; off < n; off += 1_000) {
        const p = r.pipeline();
        for (let i = written + off; i < written + Math.min(n, off + 1_000); i++) addAudit(p, prefix, eventOf(i));
        await p.exec();
      }
      written += n;
      const calls0 = await redisCalls(r);
      // profiled: the archive phases only, as one profile (the producers' time is cut out)
      if (session) await session.post('Profiler.start');
      const cpu0 = process.cpuUsage();
      const [, ms] = await timed(() => archiver.flushOnce());
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
    // alerts whose 28 events are all written by now (received 45 h before the last event), else
    // (a log shorter than 45 h) every alert received so far
    const lastT = times[target - 1];
    const done = Math.floor((lastT - 45 * H - T0) / ALERT_EVERY_MS);
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
  closeAuditIndexes();
  r.disconnect();
  await redis.stop();
  if (!values.keep && !values.dir) await rm(dir, { recursive: true, force: true });
}

await main();
