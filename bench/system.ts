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
 *
 * Stacks are measured in turns (`sliceSeconds`): all of them run side by side, and the load goes
 * to one at a time, round after round, so the naive pair and fenliu see the same moments of this
 * VM. Measured one after the other, a minute apart, the ratio swung 0.28–0.43 between runs of the
 * same code, because the machine's speed drifts on that scale (the naive pair alone: 2322–3694
 * alerts/s). After each slice the stack's backlog is drained and its processes are let go quiet
 * (its archiver catching up, say) before the next stack's slice starts, so no stack works in
 * another's slice; the CPU a slice caused is counted up to that quiet point.
 */
import { Pool } from 'undici';
import type { Redis } from 'ioredis';
import { SOURCE_KEY, benchAlert, commandBreakdown, cpuOf, percentile, redisCalls, redisCommandCalls, redisCommandUsec, redisCpuSplit, redisNet, sleep } from './lib.js';

/** One API + worker stack under test. */
export interface SystemStack {
  /** Row name (`naive`, `fenliu`, `fenliu-noarchive`...). */
  name: string;
  /** Base URL of the API process. */
  apiUrl: string;
  apiPid: number;
  /** The worker process, and any other whose CPU counts as the worker's (a separate archiver). */
  workerPids: number[];
  /** Send the source's API key (fenliu). */
  auth: boolean;
  /** Tag of its alerts' source ids. */
  tag: string;
  /** Its own Redis (INFO cpu / commandstats), and that server's pid (frozen with the stack). */
  redis: Redis;
  redisPid: number;
}

export interface SystemOptions {
  /** Base URL of bench/receiver.ts (its `/_stats` is drained by this run). */
  receiverUrl: string;
  /** Seconds measured per stack, in all. */
  seconds: number;
  /** Seconds measured per turn of one stack; the stacks take turns until each has had `seconds`. 0 or absent: one turn of `seconds`. */
  sliceSeconds?: number;
  /** Seconds of load before each stack's first measured slice (later slices: 1). @default 2 */
  warmup?: number;
  /** Concurrent HTTP clients. */
  connections: number;
  /** Most alerts accepted (or in flight) and not yet at the receiver. */
  backlog: number;
  /** How long to wait, after a slice, for every accepted alert to reach the receiver. @default 120000 */
  drainTimeoutMs?: number;
  /** Also break the slices' Redis calls and CPU down by command (`--commands`). */
  commands?: boolean;
  /** Told after each slice (progress). */
  onSlice?: (stack: string, round: number, perSec: number) => void;
}

export interface SystemResult {
  /** Alerts at the receiver per second over the measured windows. */
  deliveredPerSec: number;
  /** 2xx answers per second over the measured windows. */
  acceptedPerSec: number;
  /** POST sent → request at the receiver, alerts sent in the measured windows (ms). */
  p50: number;
  p99: number;
  /** Whole run, warm-ups included. */
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
  /** Per slice, alerts/s delivered in its measured window (in round order). */
  slicePerSec: number[];
  /**
   * Share of the API + worker CPU spent after the turns' load ended: work the turns' throughput
   * does not wait for (the last backlog draining, an archiver catching up). Sustained, that work
   * competes with the load, so a high share means the turns overstate what the stack sustains.
   */
  tailCpuShare: number;
  /** Per alert accepted in the slices, everything it cost up to the stack's quiet point. */
  redisCallsPerAlert: number;
  apiCpuUsPerAlert: number;
  workerCpuUsPerAlert: number;
  redisCpuUsPerAlert: number;
  /** Of redisCpuUsPerAlert, what its forks (AOF rewrites) took. */
  redisForkCpuUsPerAlert: number;
  /** With `commands`: calls and Redis µs per alert by command (scripts include their inner calls). */
  commandCalls?: string;
  commandUsec?: string;
  /** With `commands`: bytes per alert into and out of Redis (INFO stats, every client). */
  netBytes?: [number, number];
}

interface Costs {
  api: number;
  worker: number;
  redisCpu: number;
  redisForks: number;
  redisCalls: number;
  calls?: Map<string, number>;
  usec?: Map<string, number>;
  net?: [number, number];
}

interface StackRun {
  s: SystemStack;
  pool: Pool;
  headers: Record<string, string>;
  /** The receiver's key of each accepted alert (fenliu's delivery id, its webhook's Idempotency-Key; or the naive job id) → sent at. */
  sentAt: Map<string, number>;
  accepted: number;
  non2xx: number;
  errors: number;
  inFlight: number;
  /** Per turn, the alerts that reached the receiver in its measured window. */
  delivered: number[];
  /** POST sent → receiver (ms) of the alerts sent in the windows. */
  lat: number[];
  acceptedInWindows: number;
  /** Alerts accepted in its slices, warm-ups included: what `cost` was spent on. */
  acceptedInSlices: number;
  cost: Costs;
  /** API + worker CPU after the turns' load ended (the backlog draining, an archiver catching up), µs. */
  tailCpu: number;
}

function addMap(into: Map<string, number>, before: Map<string, number>, after: Map<string, number>): void {
  for (const [k, v] of after) into.set(k, (into.get(k) ?? 0) + v - (before.get(k) ?? 0));
}

/** Runs the stacks' slices in turns, then checks that every accepted alert arrived. */
export async function measureSystems(stacks: SystemStack[], o: SystemOptions): Promise<Record<string, SystemResult>> {
  const sliceSeconds = o.sliceSeconds ? Math.min(o.sliceSeconds, o.seconds) : o.seconds;
  const rounds = Math.max(1, Math.round(o.seconds / sliceSeconds));
  const arrivedAt = new Map<string, number>();
  const duplicateKeys: string[] = [];

  const stats = async () => {
    const res = await fetch(`${o.receiverUrl}/_stats`);
    const body = (await res.json()) as { records: { key: string; at: number }[] };
    for (const r of body.records) {
      if (arrivedAt.has(r.key)) duplicateKeys.push(r.key);
      else arrivedAt.set(r.key, r.at);
    }
  };
  await stats(); // clears what earlier rows left
  arrivedAt.clear();
  duplicateKeys.length = 0;

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

  const runs: StackRun[] = stacks.map((s) => ({
    s,
    pool: new Pool(s.apiUrl, { connections: o.connections, keepAliveTimeout: 30_000 }),
    headers: { 'content-type': 'application/json', ...(s.auth ? { authorization: `Bearer ${SOURCE_KEY}` } : {}) },
    sentAt: new Map(),
    accepted: 0,
    non2xx: 0,
    errors: 0,
    inFlight: 0,
    delivered: [],
    lat: [],
    acceptedInWindows: 0,
    acceptedInSlices: 0,
    tailCpu: 0,
    cost: { api: 0, worker: 0, redisCpu: 0, redisForks: 0, redisCalls: 0, ...(o.commands ? { calls: new Map(), usec: new Map(), net: [0, 0] as [number, number] } : {}) },
  }));

  const procCpu = (x: StackRun) => ({ api: cpuOf(x.s.apiPid), worker: x.s.workerPids.reduce((sum, pid) => sum + cpuOf(pid), 0) });
  const costSample = async (x: StackRun) => ({
    ...procCpu(x),
    ...(await redisCpuSplit(x.s.redis).then((c) => ({ redisCpu: c.main + c.forks, redisForks: c.forks }))),
    redisCalls: await redisCalls(x.s.redis),
    ...(o.commands ? { calls: await redisCommandCalls(x.s.redis), usec: await redisCommandUsec(x.s.redis), net: await redisNet(x.s.redis) } : {}),
  });

  /**
   * Until the stack's processes use under 5% of a core over 500 ms and its Redis has no fork at
   * work (an AOF rewrite, which a SIGSTOP of Redis would not stop), or 60 s passed: the work its
   * slice caused is done.
   */
  const quiet = async (x: StackRun) => {
    const until = Date.now() + 60_000;
    let prev = procCpu(x);
    while (Date.now() < until) {
      await sleep(500);
      const now = procCpu(x);
      const used = now.api + now.worker - prev.api - prev.worker;
      prev = now;
      if (used < 25_000 && !/(aof_rewrite|rdb_bgsave)_in_progress:1/.test(await x.s.redis.info('persistence'))) return;
    }
  };

  const slice = async (x: StackRun, warmupS: number) => {
    const c0 = await costSample(x);
    const acceptedBefore = x.accepted;
    // The other stacks are drained and quiet: what arrives during this slice is this stack's.
    const arrivedBefore = arrivedAt.size;
    const keys: string[] = [];
    const t0 = Date.now();
    const windowStart = t0 + warmupS * 1000;
    const end = windowStart + sliceSeconds * 1000;
    const client = async () => {
      while (Date.now() < end) {
        while (x.accepted - acceptedBefore + x.inFlight - (arrivedAt.size - arrivedBefore) >= o.backlog && Date.now() < end) await new Promise<void>((r) => wake.push(r));
        if (Date.now() >= end) break;
        x.inFlight++;
        const at = Date.now();
        try {
          const res = await x.pool.request({ method: 'POST', path: '/v1/alerts', headers: x.headers, body: JSON.stringify(benchAlert(x.s.tag)) });
          const text = await res.body.text();
          // 202 is "stored, deliveries queued"; anything else (even a 200 `linked`) queues nothing.
          if (res.statusCode === 202) {
            const b = JSON.parse(text) as { id: string; deliveries?: { id: string }[] };
            const key = b.deliveries?.[0]?.id ?? b.id;
            x.sentAt.set(key, at);
            keys.push(key);
            x.accepted++;
            if (at >= windowStart) x.acceptedInWindows++;
          } else x.non2xx++;
        } catch {
          x.errors++;
        } finally {
          x.inFlight--;
        }
      }
    };
    await Promise.all(Array.from({ length: o.connections }, client));
    const atEnd = procCpu(x);
    // Everything accepted must reach the receiver; then the stack is let go quiet.
    const drainEnd = Date.now() + (o.drainTimeoutMs ?? 120_000);
    while (keys.some((k) => !arrivedAt.has(k)) && Date.now() < drainEnd) await sleep(100);
    // The other stacks were drained before this turn: what arrived in its window is its own alerts.
    let delivered = 0;
    for (const k of keys) {
      const got = arrivedAt.get(k);
      if (got === undefined) continue;
      if (got >= windowStart && got < end) delivered++;
      const at = x.sentAt.get(k)!;
      if (at >= windowStart && at < end) x.lat.push(got - at);
    }
    x.delivered.push(delivered);
    await quiet(x);
    const c1 = await costSample(x);
    x.acceptedInSlices += x.accepted - acceptedBefore;
    x.tailCpu += c1.api + c1.worker - atEnd.api - atEnd.worker;
    x.cost.api += c1.api - c0.api;
    x.cost.worker += c1.worker - c0.worker;
    x.cost.redisCpu += c1.redisCpu - c0.redisCpu;
    x.cost.redisForks += c1.redisForks - c0.redisForks;
    // The INFO calls of the second sample are not the system's.
    x.cost.redisCalls += c1.redisCalls - c0.redisCalls - 2;
    if (x.cost.calls && c0.calls && c1.calls) {
      addMap(x.cost.calls, c0.calls, c1.calls);
      addMap(x.cost.usec!, c0.usec!, c1.usec!);
      x.cost.net![0] += c1.net![0] - c0.net![0];
      x.cost.net![1] += c1.net![1] - c0.net![1];
    }
  };

  // A stack out of turn is frozen (SIGSTOP), quiet and drained: its idle loops and timers (engine
  // polls, archiver, dispatcher reads) would otherwise take CPU, and Redis CPU, from the stack in
  // turn. They run when it is continued, in its own turn.
  const signal = (x: StackRun, sig: NodeJS.Signals) => {
    // Redis goes last into the freeze and first out of it: no process of the stack ever waits on a frozen Redis.
    const pids = [x.s.apiPid, ...x.s.workerPids, x.s.redisPid];
    for (const pid of sig === 'SIGSTOP' ? pids : pids.reverse()) process.kill(pid, sig);
  };
  if (runs.length > 1) for (const x of runs) signal(x, 'SIGSTOP');
  try {
    for (let round = 0; round < rounds; round++) {
      for (const x of runs) {
        if (runs.length > 1) signal(x, 'SIGCONT');
        await slice(x, round === 0 ? (o.warmup ?? 2) : 1);
        if (runs.length > 1) signal(x, 'SIGSTOP');
        o.onSlice?.(x.s.name, round, x.delivered[round] / sliceSeconds);
      }
    }
  } finally {
    if (runs.length > 1) for (const x of runs) signal(x, 'SIGCONT');
  }

  await sleep(200); // a late duplicate would show here
  polling = false;
  await poller;
  await stats();

  const out: Record<string, SystemResult> = {};
  for (const x of runs) {
    await x.pool.close();
    const lost = [...x.sentAt.keys()].filter((k) => !arrivedAt.has(k));
    const lat = [...x.lat].sort((a, b) => a - b);
    const secs = x.delivered.length * sliceSeconds;
    const n = Math.max(1, x.acceptedInSlices);
    out[x.s.name] = {
      deliveredPerSec: x.delivered.reduce((a, b) => a + b, 0) / secs,
      acceptedPerSec: x.acceptedInWindows / secs,
      p50: percentile(lat, 50),
      p99: percentile(lat, 99),
      accepted: x.accepted,
      non2xx: x.non2xx,
      errors: x.errors,
      received: [...x.sentAt.keys()].filter((k) => arrivedAt.has(k)).length,
      lost: lost.length,
      lostSample: lost.slice(0, 5),
      duplicates: duplicateKeys.filter((k) => x.sentAt.has(k)).length,
      tailCpuShare: x.tailCpu / Math.max(1, x.cost.api + x.cost.worker),
      slicePerSec: x.delivered.map((c) => c / sliceSeconds),
      redisCallsPerAlert: x.cost.redisCalls / n,
      apiCpuUsPerAlert: x.cost.api / n,
      workerCpuUsPerAlert: x.cost.worker / n,
      redisCpuUsPerAlert: x.cost.redisCpu / n,
      redisForkCpuUsPerAlert: x.cost.redisForks / n,
      ...(x.cost.calls
        ? { commandCalls: commandBreakdown(new Map(), x.cost.calls, n), commandUsec: commandBreakdown(new Map(), x.cost.usec!, n), netBytes: [x.cost.net![0] / n, x.cost.net![1] / n] as [number, number] }
        : {}),
    };
  }
  return out;
}

/** The median of per-round ratios of `a`'s slice rate to `b`'s (the rounds pair slices taken moments apart). */
export function roundRatios(a: SystemResult, b: SystemResult): { median: number; min: number; max: number } {
  const r = a.slicePerSec.map((v, i) => v / b.slicePerSec[i]).filter((v) => Number.isFinite(v)).sort((x, y) => x - y);
  const mid = r.length / 2;
  return { median: r.length % 2 ? r[Math.floor(mid)] : (r[mid - 1] + r[mid]) / 2, min: r[0], max: r[r.length - 1] };
}
