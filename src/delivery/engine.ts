import { createHash, randomUUID } from 'node:crypto';
import { DelayedError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Alert, CaseEvent, OutboundRequest, TranslateContext } from '../../adapters/sdk.js';
import type { Lifecycle } from '../lifecycle/service.js';
import type { DeliveryState } from '../lifecycle/states.js';
import { addAudit } from '../audit/events.js';
import { bus } from '../events.js';
import { transition, type ScriptOp } from '../lifecycle/transition.js';
import { workerConnection, type RedisTarget } from '../redis/connect.js';
import { bucketOf, deliveryQueueName, isStandalone, type Keys } from '../store/keys.js';
import { relayAudit } from '../store/audit-relay.js';
import { getAlertRecord, parseDelivery, type AlertRecord, type DeliveryRecord } from '../store/records.js';
import { Circuit } from './circuit.js';
import { claim } from './claim.js';
import { recordAttempt } from './record.js';
import { prepare, RECORDED_RESPONSE_BYTES, redactBody, redactHeaders, type PreparedRequest } from './http.js';
import { minimise } from './minimise.js';
import type { Platform } from './platforms.js';
import { classifyResponse, classifyTransportError, maxAttempts, retryDelay, type Decision } from './policy.js';
import type { DeliveryJobData } from './queues.js';

/** Thrown to hand a retry to BullMQ with the delay the policy chose. */
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
  /** BullMQ lock duration: how long before a silent worker's job is taken over. Default 30 s. */
  lockDurationMs?: number;
  /** How often stalled jobs are looked for. Default 15 s. */
  stalledIntervalMs?: number;
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

/** Attempt counts are kept by fenliu; BullMQ's own limit is only a backstop. */
export const BULLMQ_ATTEMPTS_BACKSTOP = 1_000;

/**
 * The delivery engine: one BullMQ worker per platform, so a slow or dead platform never holds up
 * another. Each job is one attempt: minimise, translate, validate, sign, send, classify, record.
 */
export class DeliveryEngine {
  readonly workers = new Map<string, Worker<DeliveryJobData>>();
  readonly circuits = new Map<string, Circuit>();
  private connection?: Redis;

  constructor(private readonly o: EngineOptions) {
    for (const p of o.platforms.values()) this.circuits.set(p.id, new Circuit(o.redis, o.prefix, p.id, p.settings.circuitBreaker));
  }

  async start(): Promise<void> {
    this.connection = workerConnection(this.o.redisTarget);
    this.connection.on('error', () => undefined);
    for (const p of this.o.platforms.values()) {
      const worker = new Worker<DeliveryJobData>(deliveryQueueName(p.id), (job, token) => this.process(p, job, token), {
        connection: this.connection,
        prefix: this.o.keys.queuePrefixOf(p.id),
        concurrency: p.settings.concurrency,
        limiter: p.settings.rateLimit ? { max: p.settings.rateLimit.max, duration: p.settings.rateLimit.durationMs } : undefined,
        lockDuration: this.o.lockDurationMs ?? 30_000,
        stalledInterval: this.o.stalledIntervalMs ?? 15_000,
        // A job is taken over this many times after worker crashes before it is given up.
        maxStalledCount: 10,
        settings: {
          backoffStrategy: (_attemptsMade: number, _type?: string, err?: Error) => (err instanceof RetryLaterError ? err.delayMs : 5_000),
        },
      });
      worker.on('failed', (job, err) => void this.onFailed(p, job, err));
      worker.on('error', (err) => this.o.log.warn({ platform: p.id, err: { message: err.message } }, 'worker error'));
      this.workers.set(p.id, worker);
    }
    await Promise.all([...this.workers.values()].map((w) => w.waitUntilReady()));
  }

  /** Finishes in-flight attempts (or leaves them to be taken over), then closes. */
  async close(): Promise<void> {
    await Promise.all([...this.workers.values()].map((w) => w.close()));
    this.connection?.disconnect();
  }

  private async process(p: Platform, job: Job<DeliveryJobData>, token?: string): Promise<void> {
    const { redis, keys: k, prefix } = this.o;
    const circuit = this.circuits.get(p.id)!;
    const deliver = !job.data.kind || job.data.kind === 'deliver';
    let alertId = job.data.alertId;
    let c = await claim(redis, k, prefix, { deliveryId: job.data.deliveryId, deliver, alertId, circuitKey: circuit.key });
    const probeToken = randomUUID();
    let admitted: { ok: true; probe: boolean } | { ok: false; waitMs: number } = { ok: true, probe: false };
    for (let tries = 0; ; tries++) {
      // A hash without an id is a remnant (a write that raced retention), not a delivery.
      const d = c.status === 'missing' ? undefined : parseDelivery(c.hash);
      if (!d) {
        this.o.log.warn({ delivery: job.data.deliveryId }, 'job without a delivery record; dropped');
        return;
      }
      if (!deliver) return this.followUp(p, job, d);
      // A re-run after a crash may find the work already done, or the case withdrawn.
      if (c.status === 'skip') break;
      // Each slow-path step settles one question, so a fourth round means the delivery keeps changing under us.
      if (tries > 2) {
        if (admitted.probe) await circuit.releaseProbe(probeToken);
        throw new RetryLaterError(1_000, 'delivery changed while being claimed');
      }
      if (c.status === 'ok') return this.attempt(p, circuit, c.rec, { ...d, state: 'sending', updatedAt: c.at }, admitted.probe ? probeToken : undefined, c.circuitDirty);
      if (c.status === 'circuit') {
        // Not closed: the slow path asks the circuit (cool-down, half-open probe), then claims without it.
        admitted = await circuit.admit(probeToken);
        if (!admitted.ok) {
          await job.moveToDelayed(Date.now() + admitted.waitMs, token);
          await redis.hset(k.delivery(d.id), 'nextAttemptAt', new Date(Date.now() + admitted.waitMs).toISOString(), 'lastError', 'circuit open: platform is failing, waiting for the cool-down');
          throw new DelayedError();
        }
      } else if (c.status === 'other-alert') alertId = d.alertId;
      else if (c.status === 'no-alert') {
        if (admitted.probe) await circuit.releaseProbe(probeToken);
        await this.fail(p, d, 'translate', `alert ${d.alertId} is missing`);
        return;
      }
      c = await claim(redis, k, prefix, { deliveryId: job.data.deliveryId, deliver, alertId, circuitKey: admitted.probe || c.status === 'circuit' ? undefined : circuit.key });
    }
    // Nothing to send; a held probe slot must not wait for its expiry.
    if (admitted.probe) await circuit.releaseProbe(probeToken);
  }

  /**
   * One send of a claimed delivery (state sending), and everything it changes, in one script
   * (record.ts) with one audit event: `delivery.attempt`, which carries the request body on the
   * first attempt and the state change the attempt led to (docs/audit.md).
   */
  private async attempt(p: Platform, circuit: Circuit, rec: AlertRecord, d: DeliveryRecord, probeToken: string | undefined, circuitDirty: boolean): Promise<void> {
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
    // Closing a circuit that holds nothing (no failure counted) is skipped; on a standalone Redis
    // the platform's circuit may share the script, on Cluster it is another slot.
    const after: ScriptOp[] = [];
    if (closeCircuit && (circuitDirty || probeToken)) {
      if (isStandalone(prefix)) after.push(...circuit.successOps());
      else await circuit.success();
    }

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
    if (to === 'queued') throw new RetryLaterError(delay!, decision.reason ?? 'retry');
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
  private async followUp(p: Platform, job: Job<DeliveryJobData>, d: DeliveryRecord): Promise<void> {
    const { redis, keys: k, prefix } = this.o;
    const kind = job.data.kind as 'cancel' | 'update' | 'urge' | 'redeliver';
    if (kind !== 'redeliver' && !d.remoteTicketId && !d.pendingToken) {
      // The platform has nothing to follow up yet: wait for the first delivery to land.
      if (d.state === 'queued' || d.state === 'sending') throw new RetryLaterError(2_000, 'waiting for the first delivery');
      // Cancelled mid-send: the attempt in flight may still bring a ticket id; wait a little for it.
      if (kind === 'cancel' && job.attemptsMade < 5) throw new RetryLaterError(2_000, 'waiting for the in-flight attempt');
      return;
    }
    const rec = await getAlertRecord(redis, k, d.alertId);
    if (!rec) return;
    const hook = kind === 'cancel' ? p.adapter.translateCancel : kind === 'update' ? p.adapter.translateUpdate : kind === 'urge' ? p.adapter.translateUrge : p.adapter.translate;
    const at = new Date();
    if (!hook) {
      await redis.rpush(k.history(d.id), JSON.stringify({ at: at.toISOString(), from: d.state, to: d.state, source: 'engine', note: `${kind} not sent: adapter ${p.adapter.id} has no ${kind} hook` }));
      return;
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
    await m.exec();
    void relayAudit(redis, prefix, bucketOf(d.id)).catch(() => 0);
    bus.emitEvent('delivery.attempt', { platformId: p.id, outcome: x.decision.outcome, errorClass: x.decision.errorClass, durationMs: x.durationMs });
    if (delay !== undefined) throw new RetryLaterError(delay, x.decision.reason ?? 'retry');
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
   * Gives a delivery up without an attempt (its alert is gone, BullMQ gave the job up): state
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

  /** BullMQ gave a job up without fenliu deciding (stalled too often, unexpected errors): still a dead letter. */
  private async onFailed(p: Platform, job: Job<DeliveryJobData> | undefined, err: Error): Promise<void> {
    if (!job || err instanceof RetryLaterError || err instanceof DelayedError) return;
    const exhausted = job.attemptsMade >= (job.opts.attempts ?? 1) || err.name === 'UnrecoverableError' || /stalled more than/i.test(err.message);
    if (!exhausted) return;
    const d = parseDelivery(await this.o.redis.hgetall(this.o.keys.delivery(job.data.deliveryId)).catch(() => ({})));
    if (d && (d.state === 'queued' || d.state === 'sending')) await this.fail(p, d, 'engine', err.message).catch(() => undefined);
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
