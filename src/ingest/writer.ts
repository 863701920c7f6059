import { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { AUDIT_FIELD, auditStreamKey, type AuditEvent } from '../audit/events.js';
import { DEFAULT_JOB_OPTIONS, jobPriority, type DeliveryJobData, type QueueRegistry } from '../delivery/queues.js';
import type { Keys } from '../store/keys.js';
import { nextSla } from '../lifecycle/service.js';
import { deliveryHash, type AlertRecord, type DeliveryRecord } from '../store/records.js';
import { INGEST_SCRIPT } from './script.js';
import { ProblemError } from '../errors.js';

export interface PendingAlert {
  record: AlertRecord;
  deliveries: DeliveryRecord[];
  /** Redis key of the idempotency claim. */
  idemKey: string;
  /** The alert as JSON, when the caller has it already (it is hashed in that form). */
  alertJson?: string;
  audit: AuditEvent[];
  /** Extra keys written with the alert: [key, value, time-to-live ms] (repeat-call matching). */
  sets?: [string, string, number][];
}

export type WriteOutcome =
  | { kind: 'created'; record: AlertRecord; deliveries: DeliveryRecord[] }
  | { kind: 'duplicate'; record: AlertRecord }
  | { kind: 'conflict'; existingId: string }
  | { kind: 'in-progress' };

interface Waiter {
  item: PendingAlert;
  resolve: (o: WriteOutcome) => void;
  reject: (e: unknown) => void;
}

/** The connection's command for the batch script (ioredis defineCommand: EVALSHA, reloaded after NOSCRIPT). */
const COMMAND = 'fenliuIngest';

/**
 * Writes accepted alerts to Redis. Concurrent requests are coalesced: the submissions of one
 * event-loop turn become ONE MULTI holding one script call, which claims each idempotency key and
 * writes each alert with its deliveries, history, SLA timers, repeat keys and audit events, plus
 * one BullMQ job per delivery. One round trip per batch instead of ~15 commands per alert, and no
 * alert without its jobs, no job without its alert.
 */
export class IngestWriter {
  private batch: Waiter[] = [];
  private scheduled = false;
  private lookups: { keys: string[]; resolve: (v: (string | null)[]) => void; reject: (e: unknown) => void }[] = [];

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly prefix: string,
    private readonly queues: QueueRegistry,
    /** `redis.waitReplicas`/`waitTimeoutMs`: no answer before that many replicas have the write. */
    private readonly replication: { replicas: number; timeoutMs: number } = { replicas: 0, timeoutMs: 1_000 },
  ) {}

  /**
   * GETs of many requests coalesced into one MGET per event-loop turn (idempotency keys and
   * repeat-call candidates): one round trip for the whole batch instead of one per request.
   */
  lookup(keys: string[]): Promise<(string | null)[]> {
    return new Promise((resolve, reject) => {
      if (this.lookups.push({ keys, resolve, reject }) === 1) setImmediate(() => void this.flushLookups());
    });
  }

  private async flushLookups(): Promise<void> {
    const batch = this.lookups;
    this.lookups = [];
    try {
      const all = await this.redis.mget(batch.flatMap((b) => b.keys));
      let i = 0;
      for (const b of batch) {
        b.resolve(all.slice(i, i + b.keys.length));
        i += b.keys.length;
      }
    } catch (err) {
      for (const b of batch) b.reject(err);
    }
  }

  submit(item: PendingAlert): Promise<WriteOutcome> {
    return new Promise((resolve, reject) => {
      this.batch.push({ item, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    const batch = this.batch;
    this.batch = [];
    this.scheduled = false;
    // Copies of one alert in the same batch follow the first: one claim, one answer.
    const leaders = new Map<string, Waiter[]>();
    for (const w of batch) {
      const group = leaders.get(w.item.idemKey);
      if (group) group.push(w);
      else leaders.set(w.item.idemKey, [w]);
    }
    const groups = [...leaders.values()];
    try {
      const held = await this.write(groups);
      await Promise.all(
        groups.map(async (g, i) => {
          const [leader, ...followers] = g;
          const claim = held[i];
          if (claim) return this.answerDuplicate(g, claim);
          leader.resolve({ kind: 'created', record: leader.item.record, deliveries: leader.item.deliveries });
          for (const f of followers) f.resolve(compare(leader.item.record, f.item));
        }),
      );
    } catch (err) {
      for (const w of batch) w.reject(err);
    }
  }

  /** One MULTI: the batch script, then the BullMQ jobs. Returns, per group, the claim it found ('' = written). */
  private async write(groups: Waiter[][]): Promise<string[]> {
    const client = (await this.queues.get(groups[0][0].item.deliveries[0]?.platformId ?? [...this.queues.queues.keys()][0]).getBackend().client) as unknown as Redis & Record<string, unknown>;
    if (!client[COMMAND]) client.defineCommand(COMMAND, { numberOfKeys: 0, lua: INGEST_SCRIPT });
    const multi = client.multi() as unknown as Record<string, (...a: unknown[]) => unknown> & { exec(): Promise<[Error | null, unknown][] | null> };
    const args: (string | number)[] = [auditStreamKey(this.prefix), this.keys.slaDue, this.keys.alerts, AUDIT_FIELD, groups.length];
    for (const [w] of groups) this.args(args, w.item);
    multi[COMMAND](...args);
    // A job whose alert lost the idempotency race (a copy stored between the lookup and this
    // write) finds no delivery record and is dropped by the engine; that race is rare and harmless.
    for (const [w] of groups) for (const d of w.item.deliveries) this.addJob(multi, w.item.record, d);
    const exec = multi.exec();
    // Sent behind the MULTI on the same connection (no extra round trip before it).
    const replicated = this.replicated(client);
    replicated.catch(() => undefined);
    const res = await exec;
    const failed = (res ?? []).find(([e]) => e);
    if (!res || failed) throw failed?.[0] ?? new Error('MULTI aborted');
    await replicated;
    return res[0][1] as string[];
  }

  /**
   * With `redis.waitReplicas: N`: WAIT N, after a write of our own (the fence), so the wait
   * covers everything the master holds up to now, a copy stored by another process included
   * (replication is one ordered stream). Fewer than N replicas in time: 503 (the alert may be
   * stored; the 110 system's retry finds it by its idempotency key and waits again).
   */
  private async replicated(client: Redis): Promise<void> {
    const { replicas, timeoutMs } = this.replication;
    if (!replicas) return;
    const fence = client.set(`${this.prefix}:replication-fence`, String(Date.now()));
    fence.catch(() => undefined);
    const acked = await client.wait(replicas, timeoutMs);
    await fence;
    if (acked < replicas) {
      throw new ProblemError('FENLIU_ERR_NOT_REPLICATED', `The write reached ${acked} of ${replicas} Redis replicas within ${timeoutMs} ms; retry with the same idempotency key`, { headers: { 'retry-after': '1' } });
    }
  }

  /** The script's arguments for one alert (layout documented in script.ts). */
  private args(out: (string | number)[], item: PendingAlert): void {
    const { record, deliveries } = item;
    const k = this.keys;
    const { alert, ...rest } = record;
    out.push(item.idemKey, `${record.id} ${record.bodyHash}`, record.id, k.alert(record.id), item.alertJson ?? JSON.stringify(alert), JSON.stringify(rest), Date.parse(record.receivedAt), k.alertsBySource(record.sourceId), deliveries.length);
    for (const d of deliveries) {
      const h = deliveryHash(d);
      const fields = Object.keys(h);
      out.push(d.id, k.delivery(d.id), fields.length);
      for (const f of fields) out.push(f, h[f]);
      out.push(k.history(d.id), JSON.stringify({ at: d.createdAt, to: d.state, source: 'ingest' }), nextSla(d)?.dueAt ?? '');
    }
    const sets = item.sets ?? [];
    out.push(sets.length);
    for (const [key, value, px] of sets) out.push(key, value, px);
    out.push(item.audit.length);
    for (const ev of item.audit) {
      if (ev.data?.alert !== alert) out.push(JSON.stringify(ev), '');
      else {
        const { alert: _, ...data } = ev.data;
        out.push(JSON.stringify({ ...ev, data: undefined }), JSON.stringify(data));
      }
    }
  }

  private addJob(multi: unknown, record: AlertRecord, d: DeliveryRecord): void {
    const queue = this.queues.get(d.platformId);
    const data: DeliveryJobData = { alertId: record.id, deliveryId: d.id, platformId: d.platformId, kind: 'deliver' };
    const opts = { ...DEFAULT_JOB_OPTIONS, ...queue.defaultJobOptions, priority: jobPriority(d.priority), jobId: d.id };
    new Job(queue, 'deliver', data, opts, d.id).addJob(multi as never).catch(() => undefined);
  }

  /** Someone else stored this key first: answer with their alert. */
  private async answerDuplicate(group: Waiter[], claim: string): Promise<void> {
    const [existingId] = claim.split(' ');
    const raw = await this.redis.get(this.keys.alert(existingId));
    // A copy answered for an alert that may not be on the replicas yet (its first answer was a 503).
    if (raw) await this.replicated(this.redis);
    // The claim and its alert are written in one script, so a claim without its alert is one
    // being removed by retention: the caller may retry and will then be stored afresh.
    if (!raw) {
      for (const w of group) w.resolve({ kind: 'in-progress' });
      return;
    }
    const existing = JSON.parse(raw) as AlertRecord;
    for (const w of group) w.resolve(compare(existing, w.item));
  }

  /** An idempotency key already held (seen by the caller's lookup): the alert it points to. */
  async existing(claim: string, item: PendingAlert): Promise<WriteOutcome> {
    return new Promise((resolve, reject) => void this.answerDuplicate([{ item, resolve, reject }], claim).catch(reject));
  }
}

function compare(existing: AlertRecord, item: PendingAlert): WriteOutcome {
  return existing.bodyHash === item.record.bodyHash ? { kind: 'duplicate', record: existing } : { kind: 'conflict', existingId: existing.id };
}
