import type { ChainableCommander, Redis } from 'ioredis';
import type { ScriptOp } from '../lifecycle/transition.js';
import { bucketOf, type Keys } from '../store/keys.js';

/** What every delivery job carries: enough to find the records, nothing else (no personal data in the queue). */
export interface DeliveryJobData {
  alertId: string;
  deliveryId: string;
  platformId: string;
  /** `deliver` (first send), or a follow-up kind added by the lifecycle (cancel, update, urge). */
  kind?: 'deliver' | 'cancel' | 'update' | 'urge' | 'redeliver';
  /** For cancel: why 110 withdrew the alert. */
  reason?: string;
  /** For urge: the repeat call that prompted it. */
  repeat?: { alertId: string; reportedAt: string; summary: string };
}

/** Queue priority, as BullMQ numbered it (lower runs first): 1 urgent, 10 normal. Urgent jobs have their own set. */
export function jobPriority(priority: 'normal' | 'urgent' | undefined): number {
  return priority === 'urgent' ? 1 : 10;
}

/** One job taken by the engine (src/delivery/engine.ts). */
export interface WorkJob {
  id: string;
  bucket: number;
  platformId: string;
  data: DeliveryJobData;
  urgent: boolean;
  /** Times it was rescheduled (follow-ups count their attempts with it). */
  attemptsMade: number;
  /** Times its lease expired before it finished (a worker died or hung). */
  stalls: number;
  /** The job has fields in `jobs(b)` to remove when it ends. */
  fields: boolean;
}

export interface EnqueueRequest {
  jobId: string;
  data: DeliveryJobData;
  urgent: boolean;
  /** Epoch ms it is due; default now (Redis's clock) plus `delayMs`. */
  dueMs?: number;
  delayMs?: number;
}

/**
 * The alert id of a delivery id: `dlv_<x>.<platform>`, `fb_<x>.<n>`, `esc_<x>.<n>` → `alt_<x>`.
 * Plain first-delivery jobs carry no data, so the engine derives it (the claim checks it against
 * the delivery's own `alertId`).
 */
export function alertOfJob(deliveryId: string): string {
  const dot = deliveryId.indexOf('.');
  const us = deliveryId.indexOf('_');
  return `alt_${deliveryId.slice(us + 1, dot < 0 ? undefined : dot)}`;
}

/** A job that needs no field in `jobs(b)`: a first delivery whose job id is its delivery id. */
export function isPlain(jobId: string, data: DeliveryJobData): boolean {
  return (data.kind ?? 'deliver') === 'deliver' && jobId === data.deliveryId;
}

/** Job ids start with their delivery id, so a job lives in its delivery's bucket (one slot for both). */
function checkId(jobId: string, data: DeliveryJobData): number {
  const b = bucketOf(jobId);
  if (!jobId.startsWith(data.deliveryId) || b !== bucketOf(data.deliveryId)) throw new Error(`job id ${jobId} does not start with its delivery id ${data.deliveryId}`);
  return b;
}

/**
 * Enqueue as writes for the caller's own script or MULTI, in the delivery's slot. Without the
 * check of `enqueue` that the job is not running: only for a job id that cannot exist yet (the
 * first job of a delivery written in the same script).
 */
export function enqueueOps(k: Keys, r: EnqueueRequest): ScriptOp[] {
  const b = checkId(r.jobId, r.data);
  const ops: ScriptOp[] = [{ cmd: 'ZADD', key: k.work(b, r.data.platformId, r.urgent), args: ['NX', r.dueMs ?? Date.now(), r.jobId] }];
  if (!isPlain(r.jobId, r.data)) ops.push({ cmd: 'HSETNX', key: k.jobs(b), args: [r.jobId, JSON.stringify(r.data)] });
  return ops;
}

/** Lua: \`now\`, the epoch ms by Redis's clock, which all due times and leases are compared on (worker clocks may differ). */
const NOW_LUA = `local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
`;

/**
 * Idempotent by job id, like BullMQ's \`jobId\`: nothing happens while the id waits in either set
 * or is being attempted. KEYS: its work set, the other priority's, working, jobs.
 * ARGV: id, due ('' for now + delay), data ('' plain), delay ms.
 */
const ENQUEUE = `${NOW_LUA}
if redis.call('ZSCORE', KEYS[3], ARGV[1]) or redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
local due = ARGV[2] ~= '' and ARGV[2] or now + tonumber(ARGV[4])
local added = redis.call('ZADD', KEYS[1], 'NX', due, ARGV[1])
if ARGV[3] ~= '' then redis.call('HSETNX', KEYS[4], ARGV[1], ARGV[3]) end
return added`;

/**
 * Takes due work of one platform in one group of buckets (`k.groups`). First, when asked (ARGV[6]),
 * leases that expired go back to the urgent set (their `#s` counted); beyond maxStalled a job is
 * handed back as dead instead. Then up to n due jobs, urgent sets before normal ones, the
 * earliest due first over the group's buckets (so first come, first served on one Redis; on
 * Cluster, where a group is one bucket, only within a bucket), each moved to `working` with its
 * lease expiry. One EXISTS per priority skips empty sets; the sets are merged by due time, read
 * a few members at a time (about need / buckets + 2 per set), which also gives the earliest due
 * time of the rest (for the sleep).
 *
 * KEYS: per bucket: urgent set, normal set, working, jobs.
 * ARGV: now ('' for Redis's clock; tests pass one), n, lease ms, maxStalled, rotation, recover (1|0).
 * Returns {taken, dead, next}: taken flat [id, data or '', attemptsMade, stalls, urgent 1|0,
 * bucket index], dead flat [id, data or '', stalls, bucket index], next the earliest due score ('' none).
 */
const TAKE = `${NOW_LUA}
if ARGV[1] ~= '' then now = tonumber(ARGV[1]) end
local want, lease, maxStalled, rot = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local nb = #KEYS / 4
local taken, dead = {}, {}
local count = 0
local next = nil
if ARGV[6] == '1' then
  for b = 0, nb - 1 do
    local w, j = KEYS[b * 4 + 3], KEYS[b * 4 + 4]
    local exp = redis.call('ZRANGEBYSCORE', w, '-inf', now, 'LIMIT', 0, 200)
    if #exp > 0 then
      redis.call('ZREM', w, unpack(exp))
      for _, id in ipairs(exp) do
        local s = redis.call('HINCRBY', j, id .. '#s', 1)
        if s > maxStalled then
          local data = redis.call('HGET', j, id) or ''
          redis.call('HDEL', j, id, id .. '#n', id .. '#s')
          dead[#dead + 1] = id
          dead[#dead + 1] = data
          dead[#dead + 1] = s
          dead[#dead + 1] = b
        else
          redis.call('ZADD', KEYS[b * 4 + 1], now, id)
        end
      end
    end
  end
end
for set = 1, 2 do
  local need = want - count
  local sk = {}
  for b = 0, nb - 1 do sk[#sk + 1] = KEYS[b * 4 + set] end
  if need > 0 and redis.call('EXISTS', unpack(sk)) > 0 then
    -- The earliest due jobs over the group's buckets (first come, first served across buckets):
    -- a merge of the sets (each sorted by due), read a few members at a time, so a take reads
    -- about what it takes, not need members of every bucket (and sorts nothing).
    local chunk = math.floor(need / nb) + 2
    local heads = {}
    for i = 0, nb - 1 do
      local b = (i + rot) % nb
      local key = KEYS[b * 4 + set]
      local z = redis.call('ZRANGE', key, 0, chunk - 1, 'WITHSCORES')
      if #z > 0 then heads[#heads + 1] = {b = b, key = key, z = z, p = 1, off = chunk, done = #z < chunk * 2} end
    end
    local per = {}
    local picked = 0
    while picked < need do
      local best, bestDue
      for h = 1, #heads do
        local L = heads[h]
        if L.p > #L.z and not L.done then
          L.z = redis.call('ZRANGE', L.key, L.off, L.off + chunk - 1, 'WITHSCORES')
          L.p, L.off, L.done = 1, L.off + chunk, #L.z < chunk * 2
        end
        if L.p <= #L.z then
          local due = tonumber(L.z[L.p + 1])
          if due <= now and (bestDue == nil or due < bestDue) then best, bestDue = h, due end
        end
      end
      if not best then break end
      local L = heads[best]
      if not per[L.b] then per[L.b] = {} end
      per[L.b][#per[L.b] + 1] = L.z[L.p]
      L.p = L.p + 2
      picked = picked + 1
    end
    for h = 1, #heads do
      local L = heads[h]
      if L.p <= #L.z then
        local due = tonumber(L.z[L.p + 1])
        if next == nil or due < next then next = due end
      end
    end
    for b, ids in pairs(per) do
      local lz, f = {}, {}
      for _, id in ipairs(ids) do
        lz[#lz + 1] = now + lease
        lz[#lz + 1] = id
        f[#f + 1] = id
        f[#f + 1] = id .. '#n'
        f[#f + 1] = id .. '#s'
      end
      redis.call('ZREM', KEYS[b * 4 + set], unpack(ids))
      redis.call('ZADD', KEYS[b * 4 + 3], unpack(lz))
      local v = redis.call('HMGET', KEYS[b * 4 + 4], unpack(f))
      for r = 1, #ids do
        taken[#taken + 1] = ids[r]
        taken[#taken + 1] = v[r * 3 - 2] or ''
        taken[#taken + 1] = v[r * 3 - 1] or '0'
        taken[#taken + 1] = v[r * 3] or '0'
        taken[#taken + 1] = set == 1 and 1 or 0
        taken[#taken + 1] = b
      end
      count = count + #ids
    end
  end
end
return {taken, dead, next and tostring(next) or ''}`;

/**
 * The platform's shared rate limit (a fixed window, like BullMQ's limiter, but counted per
 * attempt granted): reserves up to ARGV[1] of ARGV[2] per ARGV[3] ms. Returns {granted, ms left in the window}.
 */
const RESERVE = `
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local grant = math.min(tonumber(ARGV[1]), tonumber(ARGV[2]) - used)
if grant <= 0 then return {0, redis.call('PTTL', KEYS[1])} end
redis.call('INCRBY', KEYS[1], grant)
if used == 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return {grant, 0}`;

/** Gives back what a take did not use, in the same window only. */
const GIVE_BACK = `
if redis.call('PTTL', KEYS[1]) > 0 then redis.call('DECRBY', KEYS[1], ARGV[1]) end
return 0`;

type Scripted = Redis & {
  fenliuEnqueue?: (...a: (string | number)[]) => Promise<number>;
  fenliuTake?: (...a: (string | number)[]) => Promise<[(string | number)[], (string | number)[], string]>;
  fenliuReserve?: (...a: (string | number)[]) => Promise<[number, number]>;
  fenliuGiveBack?: (...a: (string | number)[]) => Promise<number>;
  fenliuExtend?: (...a: (string | number)[]) => Promise<number>;
};

function define(redis: Redis): Scripted {
  const r = redis as Scripted;
  if (!r.fenliuEnqueue) {
    r.defineCommand('fenliuEnqueue', { numberOfKeys: 4, lua: ENQUEUE });
    // Keys vary with the group of buckets, so the key count travels with each call.
    r.defineCommand('fenliuTake', { lua: TAKE });
    r.defineCommand('fenliuReserve', { numberOfKeys: 1, lua: RESERVE });
    r.defineCommand('fenliuGiveBack', { numberOfKeys: 1, lua: GIVE_BACK });
    r.defineCommand('fenliuExtend', { numberOfKeys: 1, lua: EXTEND });
  }
  return r;
}

/** Enqueues one job (idempotent by job id); true when it was added. */
export async function enqueue(redis: Redis, k: Keys, r: EnqueueRequest): Promise<boolean> {
  const b = checkId(r.jobId, r.data);
  const p = r.data.platformId;
  const added = await define(redis).fenliuEnqueue!(k.work(b, p, r.urgent), k.work(b, p, !r.urgent), k.working(b, p), k.jobs(b), r.jobId, r.dueMs ?? '', isPlain(r.jobId, r.data) ? '' : JSON.stringify(r.data), r.delayMs ?? 0);
  return added === 1;
}

export interface TakeResult {
  jobs: WorkJob[];
  /** Jobs whose lease expired more than maxStalled times: the engine gives their deliveries up. */
  dead: WorkJob[];
  /** Earliest due time of what is left, when fewer than asked were due. */
  nextDueMs?: number;
}

export interface TakeOptions {
  n: number;
  leaseMs: number;
  maxStalled: number;
  /** Also return expired leases to the work sets. */
  recover: boolean;
  rotate: number;
  /** Default: Redis's clock. */
  now?: number;
}

function jobOf(platformId: string, id: string, raw: string): { data: DeliveryJobData; fields: boolean } {
  if (raw) return { data: JSON.parse(raw) as DeliveryJobData, fields: true };
  return { data: { alertId: alertOfJob(id), deliveryId: id, platformId, kind: 'deliver' }, fields: false };
}

/** One take call for one group of buckets (see TAKE). */
export async function take(redis: Redis, k: Keys, platformId: string, buckets: number[], o: TakeOptions): Promise<TakeResult> {
  const keyList: string[] = [];
  for (const b of buckets) keyList.push(k.work(b, platformId, true), k.work(b, platformId, false), k.working(b, platformId), k.jobs(b));
  const [taken, dead, next] = await define(redis).fenliuTake!(keyList.length, ...keyList, o.now ?? '', o.n, o.leaseMs, o.maxStalled, o.rotate % buckets.length, o.recover ? '1' : '0');
  const jobs: WorkJob[] = [];
  for (let i = 0; i < taken.length; i += 6) {
    const id = String(taken[i]);
    const attemptsMade = Number(taken[i + 2]);
    const stalls = Number(taken[i + 3]);
    const j = jobOf(platformId, id, String(taken[i + 1]));
    jobs.push({ id, bucket: buckets[Number(taken[i + 5])], platformId, data: j.data, urgent: Number(taken[i + 4]) === 1, attemptsMade, stalls, fields: j.fields || attemptsMade > 0 || stalls > 0 });
  }
  const deadJobs: WorkJob[] = [];
  for (let i = 0; i < dead.length; i += 4) {
    const id = String(dead[i]);
    const j = jobOf(platformId, id, String(dead[i + 1]));
    deadJobs.push({ id, bucket: buckets[Number(dead[i + 3])], platformId, data: j.data, urgent: true, attemptsMade: 0, stalls: Number(dead[i + 2]), fields: false });
  }
  return { jobs, dead: deadJobs, nextDueMs: next ? Number(next) : undefined };
}

/** The end of a job, as writes for the attempt's own script or MULTI (same slot as the delivery). */
export function finishOps(k: Keys, job: WorkJob): ScriptOp[] {
  const ops: ScriptOp[] = [{ cmd: 'ZREM', key: k.working(job.bucket, job.platformId), args: [job.id] }];
  if (job.fields) ops.push({ cmd: 'HDEL', key: k.jobs(job.bucket), args: [job.id, `${job.id}#n`, `${job.id}#s`] });
  return ops;
}

/**
 * The job again at `dueMs`, in its own priority's set, as writes for the caller's script or
 * MULTI. `count` adds one to its attempts made (follow-ups count their attempts by it). The due
 * time is the worker's clock (a retry delay; a skew of the hosts' clocks only shifts it).
 */
export function rescheduleOps(k: Keys, job: WorkJob, dueMs: number, count: boolean): ScriptOp[] {
  const ops: ScriptOp[] = [
    { cmd: 'ZREM', key: k.working(job.bucket, job.platformId), args: [job.id] },
    { cmd: 'ZADD', key: k.work(job.bucket, job.platformId, job.urgent), args: [Math.round(dueMs), job.id] },
  ];
  if (count) ops.push({ cmd: 'HINCRBY', key: k.jobs(job.bucket), args: [`${job.id}#n`, 1] });
  return ops;
}

/** Adds ops to a MULTI or pipeline. */
export function addOps(m: ChainableCommander, ops: ScriptOp[]): void {
  for (const op of ops) m.call(op.cmd, op.key, ...op.args);
}

/** Runs ops (of one slot) as one MULTI: the rare finishes that have no script of their own. */
export async function runOps(redis: Redis, ops: ScriptOp[]): Promise<void> {
  const m = redis.multi();
  addOps(m, ops);
  const res = await m.exec();
  const failed = (res ?? []).find(([e]) => e);
  if (!res || failed) throw failed?.[0] ?? new Error('MULTI aborted');
}

/** Renews leases (Redis's clock): KEYS[1] working, ARGV: lease ms, ids. */
const EXTEND = `${NOW_LUA}
local z = {}
for i = 2, #ARGV do
  z[#z + 1] = now + tonumber(ARGV[1])
  z[#z + 1] = ARGV[i]
end
return redis.call('ZADD', KEYS[1], 'XX', unpack(z))`;

/** Renews the leases of jobs in flight: one call per platform and bucket. */
export async function extendLeases(redis: Redis, k: Keys, jobs: WorkJob[], leaseMs: number): Promise<void> {
  const byKey = new Map<string, string[]>();
  for (const j of jobs) {
    const key = k.working(j.bucket, j.platformId);
    const list = byKey.get(key);
    if (list) list.push(j.id);
    else byKey.set(key, [j.id]);
  }
  const r = define(redis);
  await Promise.all([...byKey].map(([key, ids]) => r.fenliuExtend!(key, leaseMs, ...ids)));
}

/** Reserves up to `want` sends in the platform's rate window: {granted, waitMs until the window ends when none}. */
export async function reserveRate(redis: Redis, k: Keys, platformId: string, want: number, max: number, durationMs: number): Promise<{ granted: number; waitMs: number }> {
  const [granted, ttl] = await define(redis).fenliuReserve!(k.rate(platformId), want, max, durationMs);
  return { granted: Number(granted), waitMs: Math.max(1, Number(ttl) > 0 ? Number(ttl) : durationMs) };
}

export async function giveBackRate(redis: Redis, k: Keys, platformId: string, n: number): Promise<void> {
  if (n > 0) await define(redis).fenliuGiveBack!(k.rate(platformId), n);
}

export interface QueueCounts {
  /** Due now (both priorities). */
  waiting: number;
  /** Due later (retries, circuit waits). */
  delayed: number;
  /** Being attempted (a lease held). */
  active: number;
}

/** Counts of a platform's work sets: three calls per bucket, in parallel. */
export async function counts(redis: Redis, k: Keys, platformId: string, now = Date.now()): Promise<QueueCounts> {
  const out: QueueCounts = { waiting: 0, delayed: 0, active: 0 };
  await Promise.all(
    k.bucketList.map(async (b) => {
      const [u, n, w, ut, nt] = await Promise.all([
        redis.zcount(k.work(b, platformId, true), '-inf', String(now)),
        redis.zcount(k.work(b, platformId, false), '-inf', String(now)),
        redis.zcard(k.working(b, platformId)),
        redis.zcard(k.work(b, platformId, true)),
        redis.zcard(k.work(b, platformId, false)),
      ]);
      out.waiting += u + n;
      out.delayed += ut + nt - u - n;
      out.active += w;
    }),
  );
  return out;
}

/** The earliest due time among a platform's waiting jobs (for a first delivery, when it was queued). */
export async function oldest(redis: Redis, k: Keys, platformId: string): Promise<number | undefined> {
  const firsts = await Promise.all(k.bucketList.flatMap((b) => [true, false].map((u) => redis.zrange(k.work(b, platformId, u), '0', '0', 'WITHSCORES'))));
  let min: number | undefined;
  for (const f of firsts) if (f.length && (min === undefined || Number(f[1]) < min)) min = Number(f[1]);
  return min;
}

/** A job as the tests and the console list it (the shape BullMQ's listing had). */
export interface QueuedJob {
  id: string;
  /** The job's kind. */
  name: string;
  data: DeliveryJobData;
  priority: number;
  /** waiting (due now or later) or active. */
  state: 'waiting' | 'active';
  dueMs: number;
}

/** Every job of a platform, waiting or active (tests, the console); not for the hot path. */
export async function listJobs(redis: Redis, k: Keys, platformId: string): Promise<QueuedJob[]> {
  const out: QueuedJob[] = [];
  for (const b of k.bucketList) {
    const sets: [string, number, 'waiting' | 'active'][] = [
      [k.work(b, platformId, true), 1, 'waiting'],
      [k.work(b, platformId, false), 10, 'waiting'],
      [k.working(b, platformId), 0, 'active'],
    ];
    const lists = await Promise.all(sets.map(([key]) => redis.zrange(key, '0', '-1', 'WITHSCORES')));
    const ids = lists.flatMap((l) => l.filter((_, i) => i % 2 === 0));
    const raw = ids.length ? await redis.hmget(k.jobs(b), ...ids) : [];
    let at = 0;
    sets.forEach(([, prio, state], s) => {
      const l = lists[s];
      for (let i = 0; i < l.length; i += 2) {
        const id = l[i];
        const data = raw[at] ? (JSON.parse(raw[at]!) as DeliveryJobData) : { alertId: alertOfJob(id), deliveryId: id, platformId, kind: 'deliver' as const };
        at++;
        out.push({ id, name: data.kind ?? 'deliver', data, priority: prio || 10, state, dueMs: Number(l[i + 1]) });
      }
    });
  }
  return out;
}
