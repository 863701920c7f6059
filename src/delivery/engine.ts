import { createHash, randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Alert, CaseEvent, OutboundRequest, TranslateContext } from '../../adapters/sdk.js';
import type { Lifecycle } from '../lifecycle/service.js';
import type { DeliveryState } from '../lifecycle/states.js';
import { addAudit } from '../audit/events.js';
import { bus } from '../events.js';
import { transition, type ScriptOp } from '../lifecycle/transition.js';
import type { RedisTarget } from '../redis/connect.js';
import { bucketOf, isStandalone, type Keys } from '../store/keys.js';
import { relayAudit } from '../store/audit-relay.js';
import { getAlertRecord, parseDelivery, type AlertRecord, type DeliveryRecord } from '../store/records.js';
import { Circuit } from './circuit.js';
import { claim, claimMany, type Claim } from './claim.js';
import { recordAttempt } from './record.js';
import { prepare, RECORDED_RESPONSE_BYTES, redactBody, redactHeaders, type PreparedRequest } from './http.js';
import { minimise } from './minimise.js';
import type { Platform } from './platforms.js';
import { classifyResponse, classifyTransportError, maxAttempts, retryDelay, type Decision } from './policy.js';
import { addOps, extendLeases, finishOps, giveBackRate, rescheduleOps, reserveRate, runOps, take, type WorkJob } from './work.js';
import { settledWithin } from '../bounded.js';
import { subscribeWork } from './wake.js';

/** Thrown to try a job again later with the delay the policy chose (a reschedule in its work set). */
export class RetryLaterError extends Error {
  constructor(
    readonly delayMs: number,
    reason: string,
  ) {
    super(reason);
    this.name = 'RetryLaterError';
  }
}

/** One attempt, as the delivery's attempt log keeps it. */
export interface AttemptRecord {
  n: number;
  /** Absent for the first delivery; cancel, update or urge for follow-ups. */
  kind?: string;
  at: string;
  durationMs: number;
  outcome: Decision['outcome'];
  request?: { method: string; url: string; headers: Record<string, string>; bodySha256?: string };
  status?: number;
  response?: string;
  errorClass?: string;
  reason?: string;
  nextAttemptAt?: string;
}

export interface EngineOptions {
  /** Where the workers' connection goes (src/redis/connect.ts). */
  redisTarget: RedisTarget;
  /** Fail-fast connection for state reads and writes. */
  redis: Redis;
  keys: Keys;
  prefix: string;
  platforms: Map<string, Platform>;
  log: Logger;
  /** The lease of a taken job: how long before a silent worker's job is taken over. Default 30 s. */
  lockDurationMs?: number;
  /** How often expired leases are looked for (a timer of each engine). Default 15 s. */
  stalledIntervalMs?: number;
  /**
   * How long an idle platform loop sleeps before it looks again. Work another process adds also
   * wakes it at once (src/delivery/wake.ts); the look is what finds work whose wake-up was lost.
   * Default 200 ms; on Redis Cluster 1 s.
   */
  pollMs?: number;
  /** Lease expiries before a job is given up (its delivery dead-lettered). Default 10. */
  maxStalled?: number;
  /** Side effects of state changes (feedback, SLA, poll index); absent in bare engine tests. */
  lifecycle?: Lifecycle;
}

interface Exchange {
  decision: Decision;
  sent?: PreparedRequest;
  status?: number;
  responseText?: string;
  durationMs: number;
  payload?: string;
}

function isDeliver(job: WorkJob): boolean {
  return !job.data.kind || job.data.kind === 'deliver';
}

/** Unexpected failures (not a policy retry) of one job before it is given up. */
const BACKSTOP_ATTEMPTS = 1_000;

/** Jobs asked for in one take at most (the script's reply stays small). */
const MAX_TAKE = 256;

/** One platform's loop in this process: what it has in flight and when it looks next. */
interface PlatformLoop {
  p: Platform;
  inFlight: Map<string, WorkJob>;
  running: Set<Promise<void>>;
  /** A take is running (at most one per platform and process). */
  pumping?: Promise<void>;
  /** A kick arrived during a take: look again as soon as it ends. */
  kicked: boolean;
  scheduled: boolean;
  timer?: NodeJS.Timeout;
  rotate: number;
  failures: number;
}

/**
 * The delivery engine: per platform one loop that takes due jobs from the platform's work sets
 * (src/delivery/work.ts) in batches, with a lease each, and runs at most `concurrency` attempts
 * at once, so a slow or dead platform never holds up another. Each job is one attempt: minimise,
 * translate, validate, sign, send, classify, record; the record script also ends the job (or
 * puts it back for its retry), so a delivery costs a share of one take, one claim and one record.
 */
export class DeliveryEngine {
  /** One loop per platform. */
  readonly workers = new Map<string, PlatformLoop>();
  readonly circuits = new Map<string, Circuit>();
  private closing = false;
  private leaseTimer?: NodeJS.Timeout;
  private recoverTimer?: NodeJS.Timeout;
  private readonly offs: (() => void)[] = [];
  /** Work published by other processes (src/delivery/wake.ts). */
  private wake?: { close(): void };
  private readonly leaseMs: number;
  private readonly stalledIntervalMs: number;
  private readonly pollMs: number;
  private readonly maxStalled: number;

  constructor(private readonly o: EngineOptions) {
    for (const p of o.platforms.values()) this.circuits.set(p.id, new Circuit(o.redis, o.prefix, p.id, p.settings.circuitBreaker));
    this.leaseMs = o.lockDurationMs ?? 30_000;
    this.stalledIntervalMs = o.stalledIntervalMs ?? 15_000;
    // Cluster: an idle look is one call per bucket, so it looks less often.
    this.pollMs = o.pollMs ?? (isStandalone(o.prefix) ? 200 : 1_000);
    this.maxStalled = o.maxStalled ?? 10;
  }

  async start(): Promise<void> {
    for (const p of this.o.platforms.values()) {
      this.workers.set(p.id, { p, inFlight: new Map(), running: new Set(), kicked: false, scheduled: false, rotate: Math.floor(Math.random() * 16), failures: 0 });
    }
    this.offs.push(
      bus.onEvent('ingest.materialised', () => {
        for (const l of this.workers.values()) this.kick(l);
      }),
      bus.onEvent('work.enqueued', ({ platformId }) => {
        const l = this.workers.get(platformId);
        if (l) this.kick(l);
      }),
    );
    // Not subscribed (Redis refused, or is away): the loops still find the work at their next look.
    this.wake = await subscribeWork(this.o.redis, this.o.prefix, (platformId) => {
      const l = this.workers.get(platformId);
      if (l) this.kick(l);
    }).catch((err: Error) => {
      this.o.log.warn({ err: { message: err.message } }, 'delivery engine: no wake-up for work added by other processes; it is found within engine.pollMs');
      return undefined;
    });
    this.leaseTimer = setInterval(() => void this.extendLeases(), Math.max(100, Math.floor(this.leaseMs / 3)));
    this.leaseTimer.unref();
    // On a timer of its own, like BullMQ's stalled check: a loop whose slots are all busy still
    // returns the jobs of a dead worker, for whichever worker has room.
    this.recoverTimer = setInterval(() => void this.recover(), this.stalledIntervalMs);
    this.recoverTimer.unref();
    for (const l of this.workers.values()) this.kick(l);
  }

  /**
   * Stops taking, finishes the attempts in flight (their records end their jobs), then returns;
   * waits `timeoutMs` at most, so a close with Redis gone still ends: an attempt whose record
   * never reached Redis keeps its job leased, and the lease's expiry brings it back.
   */
  async close(timeoutMs = 10_000): Promise<void> {
    this.closing = true;
    if (this.recoverTimer) clearInterval(this.recoverTimer);
    for (const off of this.offs) off();
    this.wake?.close();
    for (const l of this.workers.values()) if (l.timer) clearTimeout(l.timer);
    const drained = (async () => {
      await Promise.all([...this.workers.values()].map((l) => l.pumping));
      for (;;) {
        const running = [...this.workers.values()].flatMap((l) => [...l.running]);
        if (!running.length) return;
        await Promise.all(running);
      }
    })();
    const inTime = await settledWithin(drained, timeoutMs);
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    if (!inTime) {
      const left = [...this.workers.values()].reduce((n, l) => n + l.inFlight.size, 0);
      this.o.log.warn({ inFlight: left }, 'delivery engine: attempts still in flight at close; their leases expire and bring their jobs back');
    }
  }

  /** Returns jobs whose lease expired to their work sets (one call per group of buckets and platform); gives up those past maxStalled. */
  private async recover(): Promise<void> {
    if (this.closing) return;
    const { redis, keys: k } = this.o;
    for (const l of this.workers.values()) {
      try {
        for (const g of k.groups(k.bucketList)) {
          const res = await take(redis, k, l.p.id, g, { n: 0, leaseMs: this.leaseMs, maxStalled: this.maxStalled, recover: true, rotate: 0 });
          for (const job of res.dead) await this.onDead(l.p, job);
        }
        this.kick(l);
      } catch {
        // Redis away: the next round looks again (the loops report the outage).
      }
    }
  }

  /** Looks for work soon (coalesced): after a kick, a finished attempt, or a sleep. */
  private kick(l: PlatformLoop): void {
    if (this.closing) return;
    if (l.pumping) {
      l.kicked = true;
      return;
    }
    if (l.timer) {
      clearTimeout(l.timer);
      l.timer = undefined;
    }
    if (l.scheduled) return;
    l.scheduled = true;
    setImmediate(() => {
      l.scheduled = false;
      if (!l.pumping && !this.closing) l.pumping = this.pump(l).finally(() => (l.pumping = undefined));
    });
  }

  private async pump(l: PlatformLoop): Promise<void> {
    const free = l.p.settings.concurrency - l.inFlight.size;
    // While busy, take in batches of a quarter of the slots at least: a take per finished attempt
    // would cost a scan of the work sets per delivery (each finish kicks again).
    if (free <= 0 || (l.inFlight.size > 0 && free < Math.max(1, Math.floor(l.p.settings.concurrency / 4)))) return;
    l.kicked = false;
    let sleepMs: number | undefined;
    let full = false;
    const { redis, keys: k } = this.o;
    try {
      let want = Math.min(free, MAX_TAKE);
      const rl = l.p.settings.rateLimit;
      if (rl) {
        const r = await reserveRate(redis, k, l.p.id, want, rl.max, rl.durationMs);
        if (!r.granted) {
          sleepMs = r.waitMs;
          return;
        }
        want = r.granted;
      }
      // Due times and leases are compared on Redis's clock (the script reads it), not this host's.
      const groups = k.groups(k.bucketList);
      const start = l.rotate++;
      let got = 0;
      let next: number | undefined;
      for (let g = 0; g < groups.length; g++) {
        const n = want - got;
        if (n <= 0) break;
        const res = await take(redis, k, l.p.id, groups[(start + g) % groups.length], { n, leaseMs: this.leaseMs, maxStalled: this.maxStalled, recover: false, rotate: start });
        got += res.jobs.length;
        if (res.nextDueMs !== undefined && (next === undefined || res.nextDueMs < next)) next = res.nextDueMs;
        if (res.jobs.length) this.runBatch(l, res.jobs);
      }
      l.failures = 0;
      if (rl && got < want) await giveBackRate(redis, k, l.p.id, want - got).catch(() => undefined);
      full = got >= want;
      if (!full) sleepMs = Math.max(1, Math.min(this.pollMs, next !== undefined ? next - Date.now() : this.pollMs));
    } catch (err) {
      // Redis away (a restart, a failover): said once per streak, tried again with a growing pause.
      if (l.failures++ === 0) this.o.log.warn({ platform: l.p.id, err: { message: (err as Error).message } }, 'delivery engine: taking work failed; retrying');
      sleepMs = Math.min(50 * 2 ** l.failures, 2_000);
    } finally {
      if (!this.closing) {
        if (l.kicked || (full && l.inFlight.size < l.p.settings.concurrency)) setImmediate(() => this.kick(l));
        else if (sleepMs !== undefined) l.timer = setTimeout(() => this.kick(l), sleepMs);
      }
    }
  }

  /** Runs the jobs of one take, their deliveries claimed in one call (one bucket on Cluster, as the take). */
  private runBatch(l: PlatformLoop, jobs: WorkJob[]): void {
    const { redis, keys: k, prefix } = this.o;
    const reqs = jobs.map((j) => ({ deliveryId: j.data.deliveryId, deliver: isDeliver(j), alertId: j.data.alertId }));
    const claims = claimMany(redis, k, prefix, reqs, this.circuits.get(l.p.id)!.key);
    // Each job's run awaits its own answer (a failed call fails each of them, rescheduled as usual).
    claims.catch(() => undefined);
    jobs.forEach((job, i) => this.run(l, job, claims.then((c) => c[i])));
  }

  /** Runs one taken job; when the attempt did not end the job in its own write, ends it here. */
  private run(l: PlatformLoop, job: WorkJob, claimed: Promise<Claim>): void {
    l.inFlight.set(job.id, job);
    const done: Promise<void> = this.process(l.p, job, claimed)
      .then(async (ended) => {
        if (!ended) await runOps(this.o.redis, finishOps(this.o.keys, job));
      })
      .catch((err: Error) => this.retryLater(l.p, job, err))
      .catch((err: Error) => this.putBack(l.p, job, err))
      .finally(() => {
        l.inFlight.delete(job.id);
        l.running.delete(done);
        this.kick(l);
      });
    l.running.add(done);
  }

  /** A job that asked to be tried later (RetryLaterError), or failed unexpectedly (tried again in 5 s, as BullMQ's backoff did). */
  private async retryLater(p: Platform, job: WorkJob, err: Error): Promise<void> {
    const { redis, keys: k } = this.o;
    if (!(err instanceof RetryLaterError)) {
      this.o.log.warn({ platform: p.id, job: job.id, err: { message: err.message } }, 'delivery job failed unexpectedly; tried again in 5 s');
      if (job.attemptsMade + 1 >= BACKSTOP_ATTEMPTS) {
        await this.onDead(p, job, `gave up after ${BACKSTOP_ATTEMPTS} unexpected failures: ${err.message}`);
        await runOps(redis, finishOps(k, job));
        return;
      }
    }
    await runOps(redis, rescheduleOps(k, job, Date.now() + (err instanceof RetryLaterError ? err.delayMs : 5_000), true));
  }

  /**
   * The job could not be ended nor rescheduled (Redis away, a failover): tried again while its
   * lease holds (it is still renewed), so the job runs again soon after Redis is back rather
   * than after its lease expired. It may have been recorded already (a lost reply): the re-run
   * then finds the delivery past `sending` and only ends the job.
   */
  private async putBack(p: Platform, job: WorkJob, err: Error): Promise<void> {
    const until = Date.now() + this.leaseMs / 2;
    for (let i = 0; !this.closing && Date.now() < until; i++) {
      await new Promise((res) => setTimeout(res, Math.min(100 * 2 ** i, 2_000)));
      try {
        await runOps(this.o.redis, rescheduleOps(this.o.keys, job, Date.now(), false));
        return;
      } catch {
        // Still away.
      }
    }
    this.o.log.warn({ platform: p.id, job: job.id, err: { message: err.message } }, 'delivery job not ended (Redis away?); its lease expiry brings it back');
  }

  /** Renews the leases of this process's jobs in flight (every lease/3). */
  private async extendLeases(): Promise<void> {
    const jobs = [...this.workers.values()].flatMap((l) => [...l.inFlight.values()]);
    if (jobs.length) await extendLeases(this.o.redis, this.o.keys, jobs, this.leaseMs).catch(() => undefined);
  }

  /** Returns whether the job was ended (or put back) by its own write. `claimed`: the claim made with its take's batch. */
  private async process(p: Platform, job: WorkJob, claimed: Promise<Claim>): Promise<boolean> {
    const { redis, keys: k, prefix } = this.o;
    const circuit = this.circuits.get(p.id)!;
    const deliver = isDeliver(job);
    let alertId = job.data.alertId;
    let c = await claimed;
    const probeToken = randomUUID();
    let admitted: { ok: true; probe: boolean } | { ok: false; waitMs: number } = { ok: true, probe: false };
    for (let tries = 0; ; tries++) {
      // A hash without an id is a remnant (a write that raced retention), not a delivery.
      const d = c.status === 'missing' ? undefined : parseDelivery(c.hash);
      if (!d) {
        this.o.log.warn({ delivery: job.data.deliveryId }, 'job without a delivery record; dropped');
        return false;
      }
      if (!deliver) return this.followUp(p, job, d);
      // A re-run after a crash may find the work already done, or the case withdrawn.
      if (c.status === 'skip') break;
      // Each slow-path step settles one question, so a fourth round means the delivery keeps changing under us.
      if (tries > 2) {
        if (admitted.probe) await circuit.releaseProbe(probeToken);
        throw new RetryLaterError(1_000, 'delivery changed while being claimed');
      }
      if (c.status === 'ok') return this.attempt(p, circuit, c.rec, { ...d, state: 'sending', updatedAt: c.at }, admitted.probe ? probeToken : undefined, job);
      if (c.status === 'circuit') {
        // Not closed: the slow path asks the circuit (cool-down, half-open probe), then claims without it.
        admitted = await circuit.admit(probeToken);
        if (!admitted.ok) {
          const due = Date.now() + admitted.waitMs;
          await runOps(redis, [
            ...rescheduleOps(k, job, due, false),
            { cmd: 'HSET', key: k.delivery(d.id), args: ['nextAttemptAt', new Date(due).toISOString(), 'lastError', 'circuit open: platform is failing, waiting for the cool-down'] },
          ]);
          return true;
        }
      } else if (c.status === 'other-alert') alertId = d.alertId;
      else if (c.status === 'no-alert') {
        if (admitted.probe) await circuit.releaseProbe(probeToken);
        await this.fail(p, d, 'translate', `alert ${d.alertId} is missing`);
        return false;
      }
      c = await claim(redis, k, prefix, { deliveryId: job.data.deliveryId, deliver, alertId, circuitKey: admitted.probe || c.status === 'circuit' ? undefined : circuit.key });
    }
    // Nothing to send; a held probe slot must not wait for its expiry.
    if (admitted.probe) await circuit.releaseProbe(probeToken);
    return false;
  }

  /**
   * One send of a claimed delivery (state sending), and everything it changes, in one script
   * (record.ts) with one audit event: `delivery.attempt`, which carries the request body on the
   * first attempt and the state change the attempt led to (docs/audit.md).
   */
  private async attempt(p: Platform, circuit: Circuit, rec: AlertRecord, d: DeliveryRecord, probeToken: string | undefined, job: WorkJob): Promise<boolean> {
    const { redis, keys: k, prefix } = this.o;
    const n = d.attempts + 1;
    const started = new Date();
    const ctx = this.context(p, rec, d, started);
    const x = await this.exchange(p, d, ctx, () => p.adapter.translate(minimise(rec.alert, p.cfg.fields), ctx));
    const { decision, sent, status, responseText, durationMs, payload } = x;

    // The circuit counts consecutive transport faults (no answer, 5xx, 408/425/429). Any other
    // answer proves the platform reachable and closes it; an attempt that never went out
    // (output-schema, translate) says nothing, but must not keep the half-open probe slot.
    // A 429 is a platform that is up and pacing us: Retry-After handles it, the circuit must not open.
    const transportFault = decision.outcome === 'retry' && decision.errorClass !== 'unreadable' && status !== 429;
    const closeCircuit = !transportFault && status !== undefined;
    if (transportFault) {
      if ((await circuit.failure()) === 'open') bus.emitEvent('circuit.change', { platformId: p.id, state: 'open' });
    } else if (!closeCircuit && probeToken) await circuit.releaseProbe(probeToken);
    bus.emitEvent('delivery.attempt', { platformId: p.id, outcome: decision.outcome, errorClass: decision.errorClass, durationMs });

    // n counts every attempt of the delivery; the retry budget restarts when an operator retries a dead letter.
    const tries = n - (d.retryFrom ?? 0);
    const giveUp = decision.outcome === 'reject' || (decision.outcome === 'retry' && tries >= maxAttempts(p.settings.retry));
    const delay = decision.outcome === 'retry' && !giveUp ? retryDelay(p.settings.retry, tries, decision.retryAfterMs) : undefined;
    const bodySha256 = payload !== undefined ? sha256(payload) : undefined;
    const attempt: AttemptRecord = {
      n,
      at: started.toISOString(),
      durationMs,
      outcome: decision.outcome,
      request: sent ? { method: sent.method, url: sent.url, headers: redactHeaders(sent.headers), bodySha256 } : undefined,
      status,
      response: responseText?.slice(0, RECORDED_RESPONSE_BYTES),
      errorClass: decision.errorClass,
      reason: decision.reason,
      nextAttemptAt: delay !== undefined ? new Date(Date.now() + delay).toISOString() : undefined,
    };
    const b = bucketOf(d.id);
    const attemptJson = JSON.stringify(attempt);
    const before: ScriptOp[] = [{ cmd: 'RPUSH', key: k.attempts(d.id), args: [attemptJson] }];
    if (decision.outcome !== 'delivered') before.push(lastErrorOp(k, p.id, d.id, attempt));
    // The event is the attempt record plus, on the first attempt, what delivery.translated held:
    // the adapter and the exact bytes sent (redacted of credentials), so replay needs nothing else.
    const data: Record<string, unknown> = { ...attempt };
    if (payload !== undefined && n === 1) Object.assign(data, { adapter: p.adapter.id, adapterVersion: p.adapter.version, sha256: bodySha256, body: redactBody(payload, sent?.headers['content-type']) });
    // Every success resets the circuit, so no fault counted by any process while this attempt was
    // in flight survives it: the platform's answer to this attempt came after theirs. On a
    // standalone Redis the reset shares the attempt's script, and deleting a circuit that holds
    // nothing writes nothing (not even to the AOF). On Cluster the circuit is another slot: its
    // DEL goes out beside the script, at the same time, so it adds a command but no wait. A reset
    // that fails is left to the next success: the attempt's record must not depend on it.
    const after: ScriptOp[] = [];
    const standalone = isStandalone(prefix);
    const probe = probeToken !== undefined;
    if (closeCircuit && standalone) after.push(...circuit.successOps(probe));
    const reset = closeCircuit && !standalone ? circuit.success(probe).catch((err: Error) => this.o.log.warn({ platform: p.id, err: { message: err.message } }, 'circuit reset failed; the next success resets it')) : undefined;

    const to: DeliveryState = decision.outcome === 'delivered' ? 'delivered' : giveUp ? 'failed' : 'queued';
    const at = new Date().toISOString();
    const now = Date.parse(at);
    const set: Record<string, string | number | undefined> = { attempts: n };
    const unset: string[] = [];
    const ifApplied: ScriptOp[] = [];
    const ifRefused: ScriptOp[] = [{ cmd: 'HSET', key: k.delivery(d.id), args: ['attempts', String(n)] }];
    let reason: string | undefined;
    const change: Record<string, unknown> = { from: 'sending', to, source: 'engine' };
    if (to === 'delivered') {
      Object.assign(set, { remoteTicketId: decision.remoteTicketId, pendingToken: decision.pendingToken, deliveredAt: at });
      if (d.lastError !== undefined) unset.push('lastError');
      if (d.nextAttemptAt !== undefined) unset.push('nextAttemptAt');
      after.push({ cmd: 'ZADD', key: k.flowDelivered(b, p.id), args: [now, d.id] });
      if (decision.remoteTicketId) after.push({ cmd: 'HSET', key: k.ticket(b, p.id), args: [decision.remoteTicketId, d.id] });
      if (decision.pendingToken) after.push({ cmd: 'HSET', key: k.ticket(b, p.id), args: [`token:${decision.pendingToken}`, d.id] });
      // Cancelled while this attempt was in flight: the platform has a ticket all the same, and
      // the queued cancel notice needs its id.
      if (decision.remoteTicketId) ifRefused[0].args.push('remoteTicketId', decision.remoteTicketId);
      if (decision.pendingToken) ifRefused[0].args.push('pendingToken', decision.pendingToken);
      change.remoteTicketId = decision.remoteTicketId;
    } else if (to === 'failed') {
      reason = decision.reason ?? 'failed';
      Object.assign(set, { lastError: `${decision.errorClass ?? 'unknown'}: ${reason}`, failedAt: at });
      if (d.nextAttemptAt !== undefined) unset.push('nextAttemptAt');
      ifApplied.push({ cmd: 'ZADD', key: k.deadLetters(b, p.id), args: [now, d.id] });
    } else Object.assign(set, { lastError: decision.reason, nextAttemptAt: attempt.nextAttemptAt });
    // The lifecycle's side effects of the change (poll index, SLA timer), folded into the script
    // where they are plain index writes; otherwise (a failure tells 110) after() runs them.
    const folded = to !== 'queued' ? this.o.lifecycle?.foldAfter({ ...d, ...(set as Partial<DeliveryRecord>), state: to }, to, at) : undefined;
    if (folded) ifApplied.push(...folded.ops);
    // The job ends (or waits for its retry) in the same script, whatever the state check says.
    after.push(...(to === 'queued' ? rescheduleOps(k, job, now + delay!, false) : finishOps(k, job)));
    const t = await recordAttempt(redis, k, prefix, {
      deliveryId: d.id,
      to,
      from: ['sending'],
      at,
      history: JSON.stringify({ at, to, source: 'engine', from: 'sending' }),
      event: { type: 'delivery.attempt', at: attempt.at, alertId: d.alertId, deliveryId: d.id, platformId: p.id, ...(reason !== undefined ? { reason } : {}), data },
      change,
      set,
      unset,
      sla: folded?.sla,
      before,
      ifApplied,
      ifRefused,
      after,
    });
    await reset;

    if (to === 'delivered') bus.emitEvent('delivery.delivered', { platformId: p.id, latencyMs: now - Date.parse(d.createdAt) });
    if (t.ok) {
      if (to !== 'queued' && this.o.lifecycle) {
        if (folded) bus.emitEvent('delivery.state', { platformId: p.id, deliveryId: d.id, from: t.from, to, source: 'engine' });
        else await this.o.lifecycle.after(d.id, t.from, to, 'engine', reason, at);
      }
      if (to === 'failed') {
        bus.emitEvent('delivery.failed', { platformId: p.id, errorClass: decision.errorClass ?? 'unknown' });
        this.o.log.warn({ delivery: d.id, platform: p.id, errorClass: decision.errorClass ?? 'unknown' }, 'delivery failed: dead-lettered');
      }
    } else if (to === 'failed') this.o.log.info({ delivery: d.id, platform: p.id, errorClass: decision.errorClass, state: t.current }, 'delivery gave up, but its state moved on meanwhile; not dead-lettered');
    return true;
  }

  /** Builds, checks, signs and sends one request, and classifies what happened. Never throws. */
  private async exchange(p: Platform, d: DeliveryRecord, ctx: TranslateContext, build: () => OutboundRequest): Promise<Exchange> {
    const started = Date.now();
    const x: Exchange = { decision: { outcome: 'retry' }, durationMs: 0 };
    try {
      const out = build();
      if (out.body !== undefined && typeof out.body !== 'string' && !p.validateOutput(out.body) && !(ctx as { followUp?: boolean }).followUp) {
        const errs = (p.validateOutput.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}`).join('; ');
        x.decision = { outcome: 'reject', errorClass: 'output-schema', reason: `adapter ${p.adapter.id}@${p.adapter.version} produced a body that violates its output schema (a configuration bug): ${errs}` };
        return x;
      }
      const prepared = prepare(p.cfg.url, out);
      x.payload = prepared.body;
      try {
        // Inside the transport try: an OAuth2 token endpoint that is down is a transient
        // failure to retry, not a permanent translate error.
        x.sent = await p.client.authorise(prepared, d.id);
        const res = await p.client.send(x.sent);
        x.durationMs = res.durationMs;
        x.status = res.response.status;
        x.responseText = res.response.body;
        x.decision = classifyResponse(res.response, () => p.adapter.interpretResponse(res.response, ctx));
        if (res.response.status === 401 && p.settings.auth.type === 'oauth2') {
          // A cached token the platform no longer takes: fetch a new one on the next attempt.
          p.client.dropToken();
          x.decision = { outcome: 'retry', errorClass: 'http-retryable', reason: 'HTTP 401 with the cached OAuth2 token: token dropped, retrying with a new one' };
        }
      } catch (err) {
        x.durationMs = Date.now() - started;
        x.decision = classifyTransportError(err);
      }
    } catch (err) {
      x.decision = { outcome: 'reject', errorClass: 'translate', reason: `adapter ${p.adapter.id}@${p.adapter.version} failed to translate: ${(err as Error).message}` };
    }
    return x;
  }

  /**
   * A follow-up about a case the platform already holds: cancel (撤单), update (补充), urge (催办).
   * Same transport, retries and audit as the first delivery; the delivery's state is not changed
   * by it (the lifecycle already set it).
   */
  private async followUp(p: Platform, job: WorkJob, d: DeliveryRecord): Promise<boolean> {
    const { redis, keys: k, prefix } = this.o;
    const kind = job.data.kind as 'cancel' | 'update' | 'urge' | 'redeliver';
    if (kind !== 'redeliver' && !d.remoteTicketId && !d.pendingToken) {
      // The platform has nothing to follow up yet: wait for the first delivery to land.
      if (d.state === 'queued' || d.state === 'sending') throw new RetryLaterError(2_000, 'waiting for the first delivery');
      // Cancelled mid-send: the attempt in flight may still bring a ticket id; wait a little for it.
      if (kind === 'cancel' && job.attemptsMade < 5) throw new RetryLaterError(2_000, 'waiting for the in-flight attempt');
      return false;
    }
    const rec = await getAlertRecord(redis, k, d.alertId);
    if (!rec) return false;
    const hook = kind === 'cancel' ? p.adapter.translateCancel : kind === 'update' ? p.adapter.translateUpdate : kind === 'urge' ? p.adapter.translateUrge : p.adapter.translate;
    const at = new Date();
    if (!hook) {
      await redis.rpush(k.history(d.id), JSON.stringify({ at: at.toISOString(), from: d.state, to: d.state, source: 'engine', note: `${kind} not sent: adapter ${p.adapter.id} has no ${kind} hook` }));
      return false;
    }
    // A redelivery is the original request again, so its output schema still applies.
    const ctx = { ...this.context(p, rec, d, at), followUp: kind !== 'redeliver' };
    const alert = minimise(rec.alert, p.cfg.fields);
    const x = await this.exchange(p, d, ctx, () =>
      kind === 'redeliver'
        ? p.adapter.translate(alert, ctx)
        : kind === 'cancel'
        ? p.adapter.translateCancel!(alert, ctx, job.data.reason ?? '')
        : kind === 'update'
          ? p.adapter.translateUpdate!(alert, ctx)
          : p.adapter.translateUrge!(alert, ctx, job.data.repeat ?? { alertId: rec.id, reportedAt: rec.alert.reportedAt, summary: rec.alert.summary }),
    );
    const n = job.attemptsMade + 1;
    const giveUp = x.decision.outcome === 'reject' || (x.decision.outcome === 'retry' && n >= maxAttempts(p.settings.retry));
    const delay = x.decision.outcome === 'retry' && !giveUp ? retryDelay(p.settings.retry, n, x.decision.retryAfterMs) : undefined;
    const attempt: AttemptRecord = {
      n,
      kind,
      at: at.toISOString(),
      durationMs: x.durationMs,
      outcome: x.decision.outcome,
      request: x.sent ? { method: x.sent.method, url: x.sent.url, headers: redactHeaders(x.sent.headers), bodySha256: x.payload !== undefined ? sha256(x.payload) : undefined } : undefined,
      status: x.status,
      response: x.responseText?.slice(0, RECORDED_RESPONSE_BYTES),
      errorClass: x.decision.errorClass,
      reason: x.decision.reason,
      nextAttemptAt: delay !== undefined ? new Date(Date.now() + delay).toISOString() : undefined,
    };
    const m = redis.multi();
    m.rpush(k.attempts(d.id), JSON.stringify(attempt));
    if (x.decision.outcome !== 'delivered') {
      const op = lastErrorOp(k, p.id, d.id, attempt);
      m.hset(op.key, ...op.args);
    }
    addAudit(m, prefix, { type: 'delivery.attempt', at: attempt.at, alertId: d.alertId, deliveryId: d.id, platformId: p.id, data: { ...attempt, body: x.payload } }, bucketOf(d.id));
    if (x.decision.outcome === 'delivered' || giveUp) {
      const note = x.decision.outcome === 'delivered' ? `${kind} delivered` : `${kind} failed: ${x.decision.reason}`;
      m.rpush(k.history(d.id), JSON.stringify({ at: new Date().toISOString(), from: d.state, to: d.state, source: 'engine', note }));
    }
    // The job ends, or waits for its retry (an attempt counted), in the same MULTI.
    addOps(m, delay !== undefined ? rescheduleOps(k, job, Date.now() + delay, true) : finishOps(k, job));
    await m.exec();
    void relayAudit(redis, prefix, bucketOf(d.id)).catch(() => 0);
    bus.emitEvent('delivery.attempt', { platformId: p.id, outcome: x.decision.outcome, errorClass: x.decision.errorClass, durationMs: x.durationMs });
    return true;
  }

  private context(p: Platform, rec: AlertRecord, d: DeliveryRecord, now: Date): TranslateContext {
    return {
      platform: { id: p.id, config: p.cfg.options },
      delivery: { id: d.id, alertId: d.alertId, remoteTicketId: d.remoteTicketId },
      alertId: rec.id,
      now: now.toISOString(),
      interveneBy: d.interveneBy ?? new Date(Date.parse(rec.receivedAt) + p.settings.interveneHours * 3_600_000).toISOString(),
      event: d.event ? (JSON.parse(d.event) as CaseEvent) : undefined,
    };
  }

  /**
   * Gives a delivery up without an attempt (its alert is gone, its job stalled too often): state
   * failed, reason kept, a dead letter that outlives queue cleanup, and a `delivery.state` event
   * (an attempt that gives up records all of this on its own event, in attempt()).
   */
  private async fail(p: Platform, d: DeliveryRecord, errorClass: string, reason: string): Promise<void> {
    const { redis, keys: k, prefix } = this.o;
    const t = await transition(
      redis,
      k,
      prefix,
      {
        deliveryId: d.id,
        to: 'failed',
        source: 'engine',
        set: { lastError: `${errorClass}: ${reason}`, failedAt: new Date().toISOString() },
        unset: ['nextAttemptAt'],
        audit: { alertId: d.alertId, platformId: p.id, reason, data: { errorClass } },
      },
      { ifApplied: [{ cmd: 'ZADD', key: k.deadLetters(bucketOf(d.id), p.id), args: [Date.now(), d.id] }], read: true },
    );
    if (t.ok) await this.o.lifecycle?.after(d.id, t.from, 'failed', 'engine', reason, new Date().toISOString(), parseDelivery(t.hash));
    if (t.ok) bus.emitEvent('delivery.failed', { platformId: p.id, errorClass });
    if (t.ok) this.o.log.warn({ delivery: d.id, platform: p.id, errorClass }, 'delivery failed: dead-lettered');
    else this.o.log.info({ delivery: d.id, platform: p.id, errorClass, state: t.current }, 'delivery gave up, but its state moved on meanwhile; not dead-lettered');
  }

  /** A job given up without an attempt deciding (its lease expired maxStalled times, or the backstop): still a dead letter. */
  private async onDead(p: Platform, job: WorkJob, why = `job stalled more than ${this.maxStalled} times`): Promise<void> {
    if (job.data.kind && job.data.kind !== 'deliver') {
      this.o.log.warn({ platform: p.id, job: job.id }, `delivery follow-up given up: ${why}`);
      return;
    }
    const d = parseDelivery(await this.o.redis.hgetall(this.o.keys.delivery(job.data.deliveryId)).catch(() => ({})));
    if (d && (d.state === 'queued' || d.state === 'sending')) await this.fail(p, d, 'engine', why).catch(() => undefined);
  }
}

/** The platform's last failed attempt, overwritten in the attempt's own script (no extra round trip): what the platforms page shows. */
function lastErrorOp(k: Keys, platformId: string, deliveryId: string, a: AttemptRecord): ScriptOp {
  return {
    cmd: 'HSET',
    key: k.platformLastError(bucketOf(deliveryId), platformId),
    args: ['at', a.at, 'errorClass', a.errorClass ?? (a.outcome === 'reject' ? 'rejected' : 'unknown'), 'status', a.status === undefined ? '' : String(a.status), 'message', a.reason ?? '', 'deliveryId', deliveryId, 'outcome', a.outcome],
  };
}

export function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

export type { Alert };
