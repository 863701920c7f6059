import { createHmac } from 'node:crypto';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { CaseEvent, StatusEvent } from '../../adapters/sdk.js';
import { addAudit, AUDIT_FIELD, type AuditEvent } from '../audit/events.js';
import { feedbackPlatformId } from '../config/load.js';
import type { Config, PlatformConfig, SlaConfig } from '../config/types.js';
import { jobPriority, type DeliveryJobData, type QueueRegistry } from '../delivery/queues.js';
import { bus } from '../events.js';
import { bucketOf, type Keys } from '../store/keys.js';
import { each, hgetAny } from '../store/fanout.js';
import { relayAudit } from '../store/audit-relay.js';
import { getAlertRecord, parseDelivery, deliveryHash, type AlertRecord, type DeliveryRecord } from '../store/records.js';
import { alertOfDelivery } from '../store/ingest-log.js';
import { FINAL_STATES, PROGRESS, isDeliveryState, type DeliveryState } from './states.js';
import { transition, type ScriptOp, type TransitionRequest, type TransitionResult } from './transition.js';
import type { SlaDeadline } from '../delivery/record.js';

/** What the lifecycle queue carries: SLA timers and poll rounds. */
/** `sla` is the per-delivery timer job of fenliu before 0.2; it is still honoured when found. */
export type LifecycleJobData = { kind: 'sla'; deliveryId: string } | { kind: 'sla-sweep' } | { kind: 'poll'; platformId: string } | { kind: 'retention' };

export const LIFECYCLE_QUEUE = 'lifecycle';

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(s: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)$/.exec(s);
  if (!m) throw new Error(`not a duration: ${s}`);
  return Math.round(Number(m[1]) * UNITS[m[2]]);
}

export type SlaKind = 'ack' | 'intervene' | 'resolve';
export const SLA_KINDS: SlaKind[] = ['ack', 'intervene', 'resolve'];
const SLA_FIELD: Record<SlaKind, 'ackBy' | 'interveneBy' | 'resolveBy'> = { ack: 'ackBy', intervene: 'interveneBy', resolve: 'resolveBy' };
/** Rank on the happy path at which each deadline is met. */
const SLA_MET_AT: Record<SlaKind, number> = { ack: PROGRESS.delivered!, intervene: PROGRESS.accepted!, resolve: PROGRESS.resolved! };

/** Deadlines of one delivery: platform settings override the route's, which override the defaults. */
export function slaFor(cfg: Config, routeId: string, platformId: string): SlaConfig {
  const route = cfg.routes.find((r) => r.id === routeId);
  const platform = cfg.platforms.find((p) => p.id === platformId);
  return { ...cfg.sla, ...(route?.sla ?? {}), ...(platform?.sla ?? {}) };
}

/** Absolute deadlines (ISO) for a delivery created at `createdAt`. */
export function deadlines(sla: SlaConfig, createdAt: string): Partial<Record<'ackBy' | 'interveneBy' | 'resolveBy', string>> {
  const t = Date.parse(createdAt);
  const out: Partial<Record<'ackBy' | 'interveneBy' | 'resolveBy', string>> = {};
  for (const k of SLA_KINDS) {
    const d = sla[SLA_FIELD[k]];
    if (d) out[SLA_FIELD[k]] = new Date(t + parseDuration(d)).toISOString();
  }
  return out;
}

function rank(s: DeliveryState): number | undefined {
  return s === 'reopened' ? PROGRESS.in_progress : PROGRESS[s];
}

/** Is this deadline met (or moot, because the delivery is over)? */
export function slaSettled(d: DeliveryRecord, kind: SlaKind): boolean {
  if (FINAL_STATES.has(d.state) && d.state !== 'closed') return true;
  if (kind === 'intervene' && (d as DeliveryRecord & { acceptedAt?: string }).acceptedAt) return true;
  if (kind === 'resolve' && (d as DeliveryRecord & { resolvedAt?: string }).resolvedAt) return true;
  return (rank(d.state) ?? -1) >= SLA_MET_AT[kind];
}

/** The SLA job that fires next for a delivery: the earliest unflagged, unsettled deadline. */
export function nextSla(d: DeliveryRecord): { kind: SlaKind; dueAt: number } | undefined {
  const flagged = new Set(d.overdue ?? []);
  let best: { kind: SlaKind; dueAt: number } | undefined;
  for (const k of SLA_KINDS) {
    const due = (d as unknown as Record<string, string | undefined>)[SLA_FIELD[k]];
    if (!due || flagged.has(k) || slaSettled(d, k)) continue;
    const t = Date.parse(due);
    if (!best || t < best.dueAt) best = { kind: k, dueAt: t };
  }
  return best;
}

/** States that 110 hears about, by default (source feedback.states). */
const FEEDBACK_STATES = new Set(['accepted', 'returned', 'rejected', 'resolved', 'closed', 'failed', 'overdue']);

export interface ApplyResult {
  applied: boolean;
  /**
   * duplicate: seen event id; stale: older than what is known; illegal: refused by the table;
   * early: the delivery is still queued or sending (retry later).
   */
  reason?: 'duplicate' | 'stale' | 'illegal' | 'unknown-delivery' | 'early';
  deliveryId?: string;
  from?: DeliveryState;
  to?: DeliveryState;
  current?: DeliveryState;
}

/**
 * Follows each case after delivery: applies platform status events through the transitions
 * table, and carries out what a state change implies — SLA timers, feedback to 110, re-routing
 * of returned cases, the poll index.
 */
export class Lifecycle {
  readonly prefix: string;
  private sweeping = false;

  constructor(
    readonly redis: Redis,
    readonly keys: Keys,
    readonly cfg: Config,
    readonly queues: QueueRegistry,
    readonly lifecycleQueue: Queue<LifecycleJobData>,
    readonly log: Logger,
  ) {
    this.prefix = cfg.redis.prefix;
  }

  /**
   * Whether a platform's adapter polls (has a `poll` hook), set by the engine extension, which
   * loads the adapters. Only such a platform's deliveries go to its poll index (`open`), the one
   * thing that reads it: a webhook platform's delivered deliveries would sit there until retention,
   * one sorted-set insert and ~100 bytes of Redis each, read by nobody. Unset (bare tests): every
   * platform's are indexed.
   */
  polls?: (platformId: string) => boolean;

  /** The poll index write a state change implies: out when final, in (or moved to the back) once delivered, if the platform polls. */
  private openOp(d: DeliveryRecord, to: DeliveryState, at: string): ScriptOp | undefined {
    const open = this.keys.open(bucketOf(d.id), d.platformId);
    if (FINAL_STATES.has(to)) return { cmd: 'ZREM', key: open, args: [d.id] };
    if ((rank(to) ?? 0) >= PROGRESS.delivered! && (this.polls?.(d.platformId) ?? true)) return { cmd: 'ZADD', key: open, args: [Date.parse(at), d.id] };
    return undefined;
  }

  /** {size, root} of the latest signed audit checkpoint, carried by feedback to 110 (set by the audit extension; a cached value). */
  auditCheckpoint?: () => { size: number; root: string } | undefined;

  /**
   * Materialises an alert the ingest dispatcher has not reached yet (src/ingest/dispatcher.ts);
   * true when this call did. Set by the runtime; a write on such an alert calls it first.
   */
  materialise?: (alertId: string, rec?: AlertRecord) => Promise<boolean>;

  /** `materialise` for a delivery id, when there is one to do. */
  private async materialiseDelivery(deliveryId: string): Promise<boolean> {
    const alertId = alertOfDelivery(deliveryId);
    return alertId && this.materialise ? this.materialise(alertId) : false;
  }

  private platform(id: string): PlatformConfig | undefined {
    return this.cfg.platforms.find((p) => p.id === id);
  }

  /** Transition plus every side effect. The only way states change after ingest. */
  async apply(r: TransitionRequest): Promise<TransitionResult> {
    const at = r.at ?? new Date().toISOString();
    const set = { ...(r.set ?? {}) };
    const setIfAbsent = { ...(r.setIfAbsent ?? {}) };
    // Intervention (签收) happened at the first of accepted, in_progress, resolved, closed; a
    // reopened case signed for again keeps its first sign-for time (12-hour compliance).
    if (r.to === 'accepted' || r.to === 'in_progress' || r.to === 'resolved' || r.to === 'closed') setIfAbsent.acceptedAt ??= at;
    if (r.to === 'resolved') set.resolvedAt ??= at;
    if (r.to === 'closed') {
      set.closedAt ??= at;
      setIfAbsent.resolvedAt ??= at;
    }
    let t = await transition(this.redis, this.keys, this.prefix, { ...r, at, set, setIfAbsent });
    // A delivery of an alert still in the ingest log (a cancel right after the 202): written out now, then changed.
    if (!t.ok && t.reason === 'missing' && (await this.materialiseDelivery(r.deliveryId))) t = await transition(this.redis, this.keys, this.prefix, { ...r, at, set, setIfAbsent });
    if (t.ok) await this.after(r.deliveryId, t.from, r.to, r.source, r.note, at);
    return t;
  }

  /**
   * Side effects of a transition that happened (also called by the engine for its own changes).
   * `known`: the delivery as the transition left it, when the caller has it (saves a read).
   */
  async after(deliveryId: string, from: DeliveryState, to: DeliveryState, source: string, note: string | undefined, at: string, known?: DeliveryRecord): Promise<void> {
    const d = known ?? parseDelivery(await this.redis.hgetall(this.keys.delivery(deliveryId)));
    if (!d) return;
    bus.emitEvent('delivery.state', { platformId: d.platformId, deliveryId, from, to, source });
    const kind = (d as DeliveryRecord & { kind?: string }).kind ?? 'primary';
    if (kind !== 'primary') return;
    const open = this.openOp(d, to, at);
    // Sent together (one round trip), not one after another.
    await Promise.all([
      open && this.redis.call(open.cmd, open.key, ...open.args),
      // The deadline this state met is dropped: the timer moves to the next open one, or goes.
      this.armSla(this.redis, d),
      // Only a flagged delivery is on the SLA board; it leaves once every flag is settled.
      d.overdue?.length && (FINAL_STATES.has(to) || d.overdue.every((s) => slaSettled(d, s as SlaKind))) ? this.redis.zrem(this.keys.overdue(bucketOf(deliveryId)), deliveryId) : undefined,
    ]);
    let feedbackNote = note;
    if (to === 'returned') {
      // One notice to 110 says both that the case came back and where it went next.
      const next = await this.reroute(d);
      feedbackNote = `returned by ${d.platformId}${note ? `: ${note}` : ''}; ${next ? `re-routed to ${next.slice(next.lastIndexOf('.') + 1)}` : 'no other platform is left'}`;
    }
    if (FEEDBACK_STATES.has(to) || to === 'reopened' || to === 'in_progress' || to === 'cancelled') {
      await this.feedback(d, { type: 'state', deliveryId, platformId: d.platformId, platformName: this.platform(d.platformId)?.name, state: to as CaseEvent['state'], at, note: feedbackNote, remoteTicketId: d.remoteTicketId });
    }
  }

  /**
   * What after() does for a change the engine records itself, as parts of the engine's record
   * script (src/delivery/record.ts), so that it costs no round trip of its own: the poll index
   * entry, and the delivery's SLA deadlines as the new state leaves them (the script arms the
   * timer at the earliest one not flagged yet and takes a settled delivery off the board).
   * Undefined when after() has more to do for `to` (feedback to 110, a re-route): call after().
   * The caller announces the change (`delivery.state` on the bus) once it is made.
   */
  foldAfter(d: DeliveryRecord, to: DeliveryState, at: string): { ops: ScriptOp[]; sla?: SlaDeadline[] } | undefined {
    if (to === 'returned' || FEEDBACK_STATES.has(to) || to === 'reopened' || to === 'in_progress' || to === 'cancelled') return undefined;
    if ((d.kind ?? 'primary') !== 'primary') return { ops: [] };
    const open = this.openOp(d, to, at);
    const ops: ScriptOp[] = open ? [open] : [];
    const next: DeliveryRecord = { ...d, state: to };
    const sla: SlaDeadline[] = [];
    for (const k of SLA_KINDS) {
      const due = (next as unknown as Record<string, string | undefined>)[SLA_FIELD[k]];
      if (due) sla.push({ kind: k, dueAt: Date.parse(due), settled: slaSettled(next, k) });
    }
    return { ops, sla };
  }

  /** Applies one status event reported by a platform (callback or poll). */
  async handleEvent(platformId: string, ev: StatusEvent, source: 'callback' | 'poll'): Promise<ApplyResult> {
    const k = this.keys;
    let deliveryId = ev.deliveryId;
    if (deliveryId) {
      let owner = await this.redis.hget(k.delivery(deliveryId), 'platformId');
      if (owner === null && (await this.materialiseDelivery(deliveryId))) owner = await this.redis.hget(k.delivery(deliveryId), 'platformId');
      if (owner !== platformId) deliveryId = undefined;
    }
    // The ticket index is per bucket, and a remote ticket id says nothing of its bucket: ask all.
    if (!deliveryId && ev.remoteTicketId) deliveryId = (await hgetAny(this.redis, each(k.bucketList, (b) => k.ticket(b, platformId)), ev.remoteTicketId)) ?? undefined;
    if (!deliveryId) return { applied: false, reason: 'unknown-delivery' };
    // Duplicate events are idempotent: one application per platform event id.
    const fresh = await this.redis.set(k.seenEvent(platformId, ev.eventId), deliveryId, 'EX', 30 * 86_400, 'NX');
    if (fresh !== 'OK') return { applied: false, reason: 'duplicate', deliveryId };
    const d = parseDelivery(await this.redis.hgetall(k.delivery(deliveryId)));
    if (!d) return { applied: false, reason: 'unknown-delivery' };
    if (!isDeliveryState(ev.state)) return { applied: false, reason: 'illegal', deliveryId, current: d.state };
    const to = ev.state as DeliveryState;
    if ((d.state === 'queued' || d.state === 'sending') && to !== 'cancelled') {
      // The platform answered faster than the engine recorded its answer: not seen yet, so the
      // platform's retry (or the next poll) applies it once the delivery is delivered.
      await this.redis.del(k.seenEvent(platformId, ev.eventId));
      return { applied: false, reason: 'early', deliveryId, current: d.state };
    }
    if (ev.remoteTicketId && !d.remoteTicketId) {
      // A batch platform's token resolved into a ticket id.
      await this.redis.hset(k.delivery(d.id), 'remoteTicketId', ev.remoteTicketId);
      await this.redis.hset(k.ticket(bucketOf(d.id), platformId), ev.remoteTicketId, d.id);
    }
    if (to === d.state) return { applied: false, reason: 'duplicate', deliveryId, current: d.state };
    // Out of order: an event behind what is already known (accepted after resolved) is recorded, not applied.
    const cur = rank(d.state);
    const next = rank(to);
    if (cur !== undefined && next !== undefined && next < cur && to !== 'reopened' && d.state !== 'reopened') {
      await this.note(d, `stale ${to} event ignored (already ${d.state})`, source, ev.eventId);
      return { applied: false, reason: 'stale', deliveryId, current: d.state };
    }
    const tolerance = (this.platform(platformId) as { callback?: { toleranceSeconds?: number } } | undefined)?.callback?.toleranceSeconds ?? 300;
    const time = platformTime(ev.at, d.createdAt, new Date(), tolerance);
    const t = await this.apply({
      deliveryId: d.id,
      to,
      source,
      note: ev.note,
      eventId: ev.eventId,
      at: time.at,
      set: { handler: ev.handler, satisfaction: ev.satisfaction, result: to === 'resolved' || to === 'closed' ? ev.note : undefined },
      audit: { alertId: d.alertId, platformId, actor: { kind: 'platform', id: platformId }, ...(time.discrepancy ? { data: { timeDiscrepancy: time.discrepancy } } : {}) },
    });
    if (t.ok) return { applied: true, deliveryId, from: t.from, to };
    await this.refused(d, to, source, ev.eventId, t.current);
    return { applied: false, reason: t.reason === 'missing' ? 'unknown-delivery' : 'illegal', deliveryId, current: t.current };
  }

  /** An illegal transition is refused and recorded (history and audit), never applied. */
  async refused(d: DeliveryRecord, to: string, source: string, eventId: string | undefined, current?: string): Promise<void> {
    const at = new Date().toISOString();
    const m = this.redis.multi();
    m.rpush(this.keys.history(d.id), JSON.stringify({ at, from: current ?? d.state, to: current ?? d.state, source, note: `refused transition to ${to}`, eventId, refused: to }));
    addAudit(m, this.prefix, { type: 'delivery.transition-refused', at, alertId: d.alertId, deliveryId: d.id, platformId: d.platformId, data: { from: current ?? d.state, to, source, eventId } }, bucketOf(d.id));
    await m.exec();
    void relayAudit(this.redis, this.prefix, bucketOf(d.id)).catch(() => 0);
  }

  private async note(d: DeliveryRecord, note: string, source: string, eventId?: string): Promise<void> {
    await this.redis.rpush(this.keys.history(d.id), JSON.stringify({ at: new Date().toISOString(), from: d.state, to: d.state, source, note, eventId }));
  }

  /**
   * 退回: the next candidate of the route's fallback list, then the default route's targets, never a
   * platform that already had this alert; when none is left, 110 is told.
   */
  async reroute(d: DeliveryRecord): Promise<string | undefined> {
    const rec = await getAlertRecord(this.redis, this.keys, d.alertId);
    if (!rec) return undefined;
    const had = new Set(await this.redis.smembers(this.keys.alertPlatforms(rec.id)));
    for (const id of rec.deliveryIds) had.add(id.slice(id.indexOf('.') + 1));
    const candidates = [...rec.route.fallback, ...(this.cfg.routes.find((r) => r.default)?.targets ?? [])];
    const next = candidates.find((p) => !had.has(p) && this.platform(p) && !this.platform(p)!.feedbackFor);
    if (!next) return undefined;
    const created = await this.createDelivery(rec, next, 'primary', undefined, `re-routed after ${d.platformId} returned the case`);
    this.log.info({ alert: rec.id, from: d.platformId, to: next }, 'returned case re-routed');
    return created;
  }

  /**
   * Creates a delivery after ingest (re-route, feedback, escalation) with its job, atomically.
   * Ids are derived from the alert and platform, so one alert reaches one platform once per kind.
   */
  async createDelivery(rec: AlertRecord, platformId: string, kind: 'primary' | 'feedback' | 'escalation', event: CaseEvent | undefined, note: string): Promise<string> {
    const now = new Date().toISOString();
    const suffix = rec.id.slice(4);
    let id: string;
    if (kind === 'primary') id = `dlv_${suffix}.${platformId}`;
    else id = `${kind === 'feedback' ? 'fb' : 'esc'}_${suffix}.${await this.redis.hincrby(this.keys.alertAux(rec.id), 'n', 1)}`;
    const d: DeliveryRecord & Record<string, unknown> = {
      id,
      alertId: rec.id,
      platformId,
      state: 'queued',
      priority: rec.alert.priority ?? 'normal',
      createdAt: now,
      updatedAt: now,
      attempts: 0,
      kind,
      event: event ? JSON.stringify(event) : undefined,
    };
    if (kind === 'primary') Object.assign(d, deadlines(slaFor(this.cfg, rec.route.ruleId, platformId), now));
    const b = bucketOf(id);
    // Written only if the delivery does not exist yet: two returns of one alert at once may both
    // re-route to the same platform, and the second must not reset the first to queued. Its job
    // add is then a no-op (same job id) or finds the delivery past queued (engine: nothing to do).
    const ev: AuditEvent = { type: kind === 'primary' ? 'alert.rerouted' : `delivery.${kind}`, at: now, alertId: rec.id, deliveryId: id, platformId, data: { note, event } };
    const hash = deliveryHash(d as DeliveryRecord);
    // The delivery and its job (a plain first delivery in its platform's work set), in one script in the alert's slot.
    const keys = [this.keys.delivery(id), this.keys.history(id), this.keys.alertPlatforms(rec.id), this.keys.alertDeliveries(rec.id), this.keys.audit(b), this.keys.slaDue(b), this.keys.work(b, platformId, d.priority === 'urgent')];
    const sla = kind === 'primary' ? nextSla(d as DeliveryRecord)?.dueAt : undefined;
    await this.redis.eval(CREATE_DELIVERY, keys.length, ...keys, platformId, id, JSON.stringify({ at: now, to: 'queued', source: kind === 'primary' ? 'reroute' : kind, note }), AUDIT_FIELD, JSON.stringify(ev), sla ?? '', ...Object.entries(hash).flat());
    bus.emitEvent('work.enqueued', { platformId });
    void relayAudit(this.redis, this.prefix, b).catch(() => 0);
    return id;
  }

  /** A repeat call about an open case: each platform still handling it gets an urge (催办). */
  async urge(repeat: AlertRecord, caseId: string): Promise<number> {
    const rec = await getAlertRecord(this.redis, this.keys, caseId);
    if (!rec) return 0;
    // A case opened a moment ago may still be in the ingest log: its deliveries are written first.
    await this.materialise?.(caseId, rec);
    const ids = [...rec.deliveryIds, ...(await this.redis.lrange(this.keys.alertDeliveries(caseId), 0, -1))];
    const ds = (await Promise.all(ids.map(async (id) => parseDelivery(await this.redis.hgetall(this.keys.delivery(id)))))).filter((d): d is DeliveryRecord => !!d && (d.kind ?? 'primary') === 'primary' && !FINAL_STATES.has(d.state) && d.state !== 'resolved');
    const at = new Date().toISOString();
    const m = this.redis.multi();
    m.hincrby(this.keys.stats(bucketOf(caseId)), 'repeats', 1);
    m.rpush(`${this.keys.alert(caseId)}:repeats`, repeat.id);
    for (const d of ds) m.rpush(this.keys.history(d.id), JSON.stringify({ at, from: d.state, to: d.state, source: 'repeat', note: `repeat call ${repeat.alert.source.alertId} linked; urge queued` }));
    await m.exec();
    for (const d of ds) {
      const data: DeliveryJobData = { alertId: caseId, deliveryId: d.id, platformId: d.platformId, kind: 'urge', repeat: { alertId: repeat.alert.source.alertId, reportedAt: repeat.alert.reportedAt, summary: repeat.alert.summary } };
      await this.queues.add(data, { priority: jobPriority('urgent'), jobId: `${d.id}.urge.${repeat.id}` });
    }
    if (ds[0]) await this.feedback(ds[0], { type: 'repeat', deliveryId: ds[0].id, platformId: ds[0].platformId, at, note: `repeat call ${repeat.alert.source.alertId} linked to case ${caseId}` });
    return ds.length;
  }

  /** Queues feedback to the alert's 110 source, if it has a feedback endpoint that wants this kind of fact. */
  async feedback(d: DeliveryRecord, event: CaseEvent): Promise<void> {
    const rec = await getAlertRecord(this.redis, this.keys, d.alertId);
    if (!rec) return;
    const source = this.cfg.sources.find((s) => s.id === rec.sourceId);
    if (!source?.feedback) return;
    const what = event.type === 'state' ? event.state! : event.type;
    if (!source.feedback.states.includes(what)) return;
    const cp = this.auditCheckpoint?.();
    if (cp) event = { ...event, auditCheckpoint: cp };
    await this.createDelivery(rec, feedbackPlatformId(source.id), 'feedback', event, `feedback: ${what} at ${event.platformId}`);
  }

  /**
   * Arms (or disarms) a delivery's SLA timer, in the caller's MULTI or directly: one sorted-set entry per
   * delivery, scored with its earliest open deadline. A timer is one ZADD instead of one BullMQ
   * delayed job, which was a quarter of ingest's Redis work (docs/performance.md).
   */
  armSla(m: { zadd(k: string, s: number, m: string): unknown; zrem(k: string, m: string): unknown }, d: DeliveryRecord): unknown {
    const next = nextSla(d);
    return next ? m.zadd(this.keys.slaDue(bucketOf(d.id)), next.dueAt, d.id) : m.zrem(this.keys.slaDue(bucketOf(d.id)), d.id);
  }

  /**
   * Fires the timers that are due: each due entry is leased (its score pushed SLA_LEASE_MS ahead)
   * in one script, so a worker that dies mid-check leaves the timer to fire again, not lost;
   * checkSla then re-arms it at the next deadline or removes it.
   */
  async sweepSla(limit = 500): Promise<number> {
    // One sweep at a time per process: a long sweep (a backlog after downtime) is not joined by
    // the next scheduled one. Sweeps of other processes may overlap; leases and the atomic
    // flagging in checkSla keep each deadline firing once.
    if (this.sweeping) return 0;
    this.sweeping = true;
    let fired = 0;
    try {
      for (const b of this.keys.bucketList) for (;;) {
        // The lease is taken from the time of each batch, not of the sweep's start.
        const now = Date.now();
        const due = (await this.redis.eval(SLA_CLAIM, 1, this.keys.slaDue(b), String(now), String(limit), String(now + SLA_LEASE_MS))) as string[];
        for (let i = 0; i < due.length; i += 2) {
          try {
            await this.checkSla(due[i], Math.max(now, Number(due[i + 1])));
            fired++;
          } catch (err) {
            this.log.warn({ delivery: due[i], err: { message: (err as Error).message } }, 'SLA check failed; the timer fires again after its lease');
          }
        }
        if (due.length < limit * 2) break;
      }
      return fired;
    } finally {
      this.sweeping = false;
    }
  }

  /**
   * An SLA timer fired: flag what is overdue, escalate, tell 110, and arm the next deadline.
   * Flagging is one script that flags only what is not flagged yet, so two checks of the same
   * delivery at once (overlapping sweeps, an old per-delivery job) escalate and notify once.
   */
  async checkSla(deliveryId: string, now = Date.now()): Promise<SlaKind[]> {
    const d = parseDelivery(await this.redis.hgetall(this.keys.delivery(deliveryId)));
    if (!d) {
      await this.redis.zrem(this.keys.slaDue(bucketOf(deliveryId)), deliveryId);
      return [];
    }
    const field = (k: SlaKind) => (d as unknown as Record<string, string | undefined>)[SLA_FIELD[k]];
    const candidates = SLA_KINDS.filter((k) => {
      const due = field(k);
      return due && !(d.overdue ?? []).includes(k) && !slaSettled(d, k) && Date.parse(due) <= now;
    });
    let flagged: SlaKind[] = [];
    if (candidates.length) {
      const at = new Date(now).toISOString();
      const args: string[] = [d.id, String(Date.parse(field(candidates[0])!)), AUDIT_FIELD];
      for (const k of candidates) {
        const dueAt = field(k)!;
        const ev: AuditEvent = { type: 'sla.expired', at, alertId: d.alertId, deliveryId: d.id, platformId: d.platformId, data: { sla: k, dueAt, state: d.state } };
        args.push(k, JSON.stringify({ at, from: d.state, to: d.state, source: 'timer', note: `overdue: ${k} deadline ${dueAt} passed` }), JSON.stringify(ev));
      }
      const b = bucketOf(d.id);
      const keys = [this.keys.delivery(d.id), this.keys.overdue(b), this.keys.stats(b), this.keys.audit(b), this.keys.history(d.id)];
      flagged = (await this.redis.eval(SLA_FLAG, keys.length, ...keys, ...args)) as SlaKind[];
      if (flagged.length) void relayAudit(this.redis, this.prefix, b).catch(() => 0);
      for (const k of flagged) {
        bus.emitEvent('sla.expired', { platformId: d.platformId, kind: k, deliveryId: d.id });
        const event: CaseEvent = { type: 'overdue', deliveryId: d.id, platformId: d.platformId, platformName: this.platform(d.platformId)?.name, sla: k, dueAt: field(k)!, at, state: d.state as CaseEvent['state'], remoteTicketId: d.remoteTicketId };
        await this.escalate(d, event);
        await this.feedback(d, event);
      }
    }
    const fresh = parseDelivery(await this.redis.hgetall(this.keys.delivery(deliveryId))) ?? d;
    await this.armSla(this.redis, fresh);
    return flagged;
  }

  private async escalate(d: DeliveryRecord, event: CaseEvent): Promise<void> {
    const rec = await getAlertRecord(this.redis, this.keys, d.alertId);
    if (!rec) return;
    const to = slaFor(this.cfg, rec.route.ruleId, d.platformId).escalateTo;
    if (!to) return;
    const at = new Date().toISOString();
    await this.createDelivery(rec, to, 'escalation', event, `escalation: ${event.sla} deadline missed at ${d.platformId}`);
    await addAuditNow(this.redis, this.prefix, { type: 'sla.escalated', at, alertId: d.alertId, deliveryId: d.id, platformId: d.platformId, data: { to, sla: event.sla } });
  }
}

/** How long a swept timer is held by the worker checking it before another may fire it. */
const SLA_LEASE_MS = 60_000;

/** Due timers (member, score pairs), each leased to the caller in the same atomic step. */
/**
 * Flags SLA kinds that are not flagged yet, with their history note, counter and audit event;
 * returns the kinds it flagged. KEYS: delivery, overdue board, stats, audit stream, history.
 * ARGV: delivery id, board score, audit field, then per candidate kind: kind, history entry, event.
 */
const SLA_FLAG = `
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local cur = redis.call('HGET', KEYS[1], 'overdue')
local flags = cur and cjson.decode(cur) or {}
local has = {}
for _, f in ipairs(flags) do has[f] = true end
local out = {}
for i = 4, #ARGV, 3 do
  local kind = ARGV[i]
  if not has[kind] then
    has[kind] = true
    flags[#flags + 1] = kind
    out[#out + 1] = kind
    redis.call('RPUSH', KEYS[5], ARGV[i + 1])
    redis.call('HINCRBY', KEYS[3], 'overdue:' .. kind, 1)
    redis.call('XADD', KEYS[4], '*', ARGV[3], ARGV[i + 2])
  end
end
if #out > 0 then
  redis.call('HSET', KEYS[1], 'overdue', cjson.encode(flags))
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
end
return out`;

/**
 * A delivery created after ingest, unless it exists. KEYS: delivery, history, alert platforms,
 * alert deliveries, audit stream, SLA timers. ARGV: platform, delivery id, history entry, audit
 * field, audit event, SLA due ('' for none), then the hash's field/value pairs.
 */
const CREATE_DELIVERY = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('RPUSH', KEYS[4], ARGV[2])
redis.call('XADD', KEYS[5], '*', ARGV[4], ARGV[5])
if ARGV[6] ~= '' then redis.call('ZADD', KEYS[6], ARGV[6], ARGV[2]) end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[7], 'NX', t[1] * 1000 + math.floor(t[2] / 1000), ARGV[2])
return 1`;

const SLA_CLAIM = `
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]), 'WITHSCORES')
for i = 1, #due, 2 do redis.call('ZADD', KEYS[1], ARGV[3], due[i]) end
return due`;

async function addAuditNow(redis: Redis, prefix: string, ev: Parameters<typeof addAudit>[2]): Promise<void> {
  const p = redis.pipeline();
  addAudit(p, prefix, ev);
  await p.exec();
}

/** Phone numbers are compared as keyed hashes and never stored in clear for matching. */
/** Why a platform-reported time was not used, recorded on the state change's audit event. */
export interface TimeDiscrepancy {
  /** What the platform said. */
  reportedAt: string;
  /** fenliu's own receipt time, used instead. */
  usedAt: string;
  reason: 'before-delivery' | 'in-future' | 'unreadable';
}

/**
 * The instant a platform-reported event counts as. A time before the delivery existed (a 2010
 * date on a 2026 case), more than the callback tolerance ahead of fenliu's clock, or unreadable is
 * not used for deadlines or statistics: fenliu's receipt time is, and the discrepancy is returned
 * for the audit trail. Absent: receipt time, no discrepancy (the platform said nothing).
 */
export function platformTime(reported: string | undefined, createdAt: string, now: Date, toleranceSeconds: number): { at: string; discrepancy?: TimeDiscrepancy } {
  const usedAt = now.toISOString();
  if (!reported) return { at: usedAt };
  const ms = Date.parse(reported);
  if (Number.isNaN(ms)) return { at: usedAt, discrepancy: { reportedAt: reported, usedAt, reason: 'unreadable' } };
  const created = Date.parse(createdAt);
  if (!Number.isNaN(created) && ms < created) return { at: usedAt, discrepancy: { reportedAt: reported, usedAt, reason: 'before-delivery' } };
  if (ms > now.getTime() + toleranceSeconds * 1000) return { at: usedAt, discrepancy: { reportedAt: reported, usedAt, reason: 'in-future' } };
  return { at: new Date(ms).toISOString() };
}

export function phoneKey(secret: string, phone: string): string {
  const digits = phone.replace(/\D/g, '').replace(/^86(?=1\d{10}$)/, '');
  return createHmac('sha256', secret).update(digits).digest('hex').slice(0, 32);
}
