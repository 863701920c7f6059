/**
 * The system row of `npm run bench` (`--only s`): an API process and a worker process together,
 * POST → request at the receiver, sustained for a fixed time. Used for the naive pair
 * (bench/servers/naive.ts + naive-worker.ts) and for fenliu (`serve --role api` + `--role worker`).
 *
 * The load is closed end to end: `connections` clients POST as fast as they are answered, but no
 * new alert is sent while `backlog` alerts are accepted (or in flight) and not yet at the
 * receiver. Without that cap an API faster than its worker would fill the queue for the whole run
 * and the row would measure how the CPU is split between the two processes, not what the pair
 * delivers; with it, throughput is what the pair sustains and latency is bounded by the cap
 * (Little's law: ≈ backlog / throughput at saturation).
 */
import { Pool } from 'undici';
import type { Redis } from 'ioredis';
import { SOURCE_KEY, benchAlert, commandBreakdown, cpuOf, percentile, redisCalls, redisCommandCalls, redisCommandUsec, redisCpu, redisNet, sleep } from './lib.js';

export interface SystemOptions {
  /** Base URL of the API process. */
  apiUrl: string;
  /** Base URL of bench/receiver.ts (its `/_stats` is drained by this run). */
  receiverUrl: string;
  apiPid: number;
  /** The worker process, and any other whose CPU counts as the worker's (a separate archiver). */
  workerPids: number[];
  /** The bench Redis, for INFO cpu / commandstats. */
  redis: Redis;
  /** Seconds measured, after `warmup`. */
  seconds: number;
  /** Seconds of load before the measured window. @default 2 */
  warmup?: number;
  /** Concurrent HTTP clients. */
  connections: number;
  /** Most alerts accepted (or in flight) and not yet at the receiver. */
  backlog: number;
  /** Send the source's API key (fenliu). */
  auth: boolean;
  /** How long to wait, after the load, for every accepted alert to reach the receiver. @default 120000 */
  drainTimeoutMs?: number;
  tag: string;
  /** Also break the window's Redis calls and CPU down by command (`--commands`). */
  commands?: boolean;
}

export interface SystemResult {
  /** Alerts at the receiver per second over the measured window. */
  deliveredPerSec: number;
  /** 2xx answers per second over the measured window. */
  acceptedPerSec: number;
  /** POST sent → request at the receiver, alerts sent in the measured window (ms). */
  p50: number;
  p99: number;
  /** Whole run, warm-up included. */
  accepted: number;
  /** Answers other than 202. */
  non2xx: number;
  errors: number;
  received: number;
  /** Accepted alerts that never reached the receiver within the drain timeout. */
  lost: number;
  lostSample: string[];
  /** Receiver requests beyond the first for the same Idempotency-Key. */
  duplicates: number;
  redisCallsPerAlert: number;
  apiCpuUsPerAlert: number;
  workerCpuUsPerAlert: number;
  redisCpuUsPerAlert: number;
  /** With `commands`: calls and Redis µs per alert by command (scripts include their inner calls). */
  commandCalls?: string;
  commandUsec?: string;
  /** With `commands`: bytes per alert into and out of Redis (INFO stats, every client). */
  netBytes?: [number, number];
}

interface Sample {
  at: number;
  api: number;
  worker: number;
  redisCpu: number;
  redisCalls: number;
  received: number;
  accepted: number;
  calls?: Map<string, number>;
  usec?: Map<string, number>;
  net?: [number, number];
}

/** Runs the load, then waits for the backlog to drain and checks that every accepted alert arrived. */
export async function measureSystem(o: SystemOptions): Promise<SystemResult> {
  const warmup = o.warmup ?? 2;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (o.auth) headers.authorization = `Bearer ${SOURCE_KEY}`;
  const pool = new Pool(o.apiUrl, { connections: o.connections, keepAliveTimeout: 30_000 });
  // The receiver's key for an accepted alert: fenliu's delivery id (its webhook's
  // Idempotency-Key), or the naive job id.
  const sentAt = new Map<string, number>();
  const arrivedAt = new Map<string, number>();
  let duplicates = 0;
  let accepted = 0;
  let non2xx = 0;
  let errors = 0;
  let inFlight = 0;

  const stats = async () => {
    const res = await fetch(`${o.receiverUrl}/_stats`);
    const body = (await res.json()) as { records: { key: string; at: number }[] };
    for (const r of body.records) {
      if (arrivedAt.has(r.key)) duplicates++;
      else arrivedAt.set(r.key, r.at);
    }
  };
  await stats(); // clears what earlier rows left
  arrivedAt.clear();
  duplicates = 0;

  // Clients blocked on the backlog cap wake on the next receiver poll.
  let wake: (() => void)[] = [];
  let polling = true;
  const poller = (async () => {
    while (polling) {
      await stats();
      const w = wake;
      wake = [];
      for (const f of w) f();
      await sleep(20);
    }
  })();

  const sample = async (): Promise<Sample> => ({
    at: Date.now(),
    api: cpuOf(o.apiPid),
    worker: o.workerPids.reduce((sum, pid) => sum + cpuOf(pid), 0),
    redisCpu: await redisCpu(o.redis),
    redisCalls: await redisCalls(o.redis),
    received: arrivedAt.size,
    accepted,
    ...(o.commands ? { calls: await redisCommandCalls(o.redis), usec: await redisCommandUsec(o.redis), net: await redisNet(o.redis) } : {}),
  });

  const t0 = Date.now();
  const windowStart = t0 + warmup * 1000;
  const end = windowStart + o.seconds * 1000;
  const client = async () => {
    while (Date.now() < end) {
      while (accepted + inFlight - arrivedAt.size >= o.backlog && Date.now() < end) await new Promise<void>((r) => wake.push(r));
      if (Date.now() >= end) break;
      inFlight++;
      const at = Date.now();
      try {
        const res = await pool.request({ method: 'POST', path: '/v1/alerts', headers, body: JSON.stringify(benchAlert(o.tag)) });
        const text = await res.body.text();
        // 202 is "stored, deliveries queued"; anything else (even a 200 `linked`) queues nothing.
        if (res.statusCode === 202) {
          const b = JSON.parse(text) as { id: string; deliveries?: { id: string }[] };
          sentAt.set(b.deliveries?.[0]?.id ?? b.id, at);
          accepted++;
        } else non2xx++;
      } catch {
        errors++;
      } finally {
        inFlight--;
      }
    }
  };
  const clients = Array.from({ length: o.connections }, client);
  await sleep(windowStart - Date.now());
  const s0 = await sample();
  await sleep(end - Date.now());
  const s1 = await sample();
  await Promise.all(clients);

  // Everything accepted must reach the receiver.
  const drainEnd = Date.now() + (o.drainTimeoutMs ?? 120_000);
  while ([...sentAt.keys()].some((k) => !arrivedAt.has(k)) && Date.now() < drainEnd) await sleep(100);
  await sleep(200); // a late duplicate would show here
  polling = false;
  await poller;
  await stats();
  await pool.close();

  const lost = [...sentAt.keys()].filter((k) => !arrivedAt.has(k));
  const lat: number[] = [];
  for (const [k, at] of sentAt) {
    const got = arrivedAt.get(k);
    if (at >= s0.at && at < s1.at && got !== undefined) lat.push(got - at);
  }
  lat.sort((a, b) => a - b);
  const secs = (s1.at - s0.at) / 1000;
  // Per alert delivered in the window; the API's CPU per alert it accepted, which differs from the
  // delivered count while the backlog is still filling (a short run, or one starting cold).
  const n = Math.max(1, s1.received - s0.received);
  const nAccepted = Math.max(1, s1.accepted - s0.accepted);
  return {
    deliveredPerSec: (s1.received - s0.received) / secs,
    acceptedPerSec: (s1.accepted - s0.accepted) / secs,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    accepted,
    non2xx,
    errors,
    received: arrivedAt.size,
    lost: lost.length,
    lostSample: lost.slice(0, 5),
    duplicates,
    // The two INFO calls of the second sample are not the system's.
    redisCallsPerAlert: (s1.redisCalls - s0.redisCalls - 2) / n,
    apiCpuUsPerAlert: (s1.api - s0.api) / nAccepted,
    workerCpuUsPerAlert: (s1.worker - s0.worker) / n,
    redisCpuUsPerAlert: (s1.redisCpu - s0.redisCpu) / n,
    ...(s0.calls && s1.calls ? { commandCalls: commandBreakdown(s0.calls, s1.calls, n), commandUsec: commandBreakdown(s0.usec!, s1.usec!, n), netBytes: [(s1.net![0] - s0.net![0]) / n, (s1.net![1] - s0.net![1]) / n] as [number, number] } : {}),
  };
}
