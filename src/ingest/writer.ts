import { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { addAudit, type AuditEvent } from '../audit/events.js';
import { DEFAULT_JOB_OPTIONS, jobPriority, type DeliveryJobData, type QueueRegistry } from '../delivery/queues.js';
import type { Keys } from '../store/keys.js';
import { nextSla, slaJobId } from '../lifecycle/service.js';
import { deliveryHash, type AlertRecord, type DeliveryRecord } from '../store/records.js';

export interface PendingAlert {
  record: AlertRecord;
  deliveries: DeliveryRecord[];
  /** Redis key of the idempotency claim. */
  idemKey: string;
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

/** How long an idempotency claim lives before its alert is written; a crash in between frees it. */
const CLAIM_TTL_MS = 10_000;
/** How long a duplicate waits for the first copy, held by another request, to be written. */
const DUPLICATE_WAIT_MS = 2_000;

/**
 * Writes accepted alerts to Redis. Concurrent requests are coalesced: all submissions of one
 * event-loop turn share one pipelined idempotency claim and one MULTI/EXEC, in which each alert,
 * its deliveries, its audit events and its BullMQ jobs are written together: no alert without
 * its jobs, no job without its alert.
 */
export class IngestWriter {
  private batch: Waiter[] = [];
  private scheduled = false;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly prefix: string,
    private readonly queues: QueueRegistry,
  ) {}

  private lookups: { keys: string[]; resolve: (v: (string | null)[]) => void; reject: (e: unknown) => void }[] = [];

  /**
   * GETs of many requests coalesced into one MGET per event-loop turn (repeat-call candidates):
   * one round trip for the whole batch instead of one per request.
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
      const claim = this.redis.pipeline();
      for (const [w] of groups) claim.set(w.item.idemKey, `${w.item.record.id} ${w.item.record.bodyHash}`, 'PX', CLAIM_TTL_MS, 'NX');
      const claimed = (await claim.exec()) ?? [];
      const winners: Waiter[][] = [];
      const losers: Waiter[][] = [];
      groups.forEach((g, i) => {
        const [err, res] = claimed[i] ?? [new Error('no reply')];
        if (err) throw err;
        (res === 'OK' ? winners : losers).push(g);
      });
      if (winners.length) await this.writeWinners(winners);
      await Promise.all(losers.map((g) => this.answerDuplicate(g)));
    } catch (err) {
      for (const w of batch) w.reject(err);
    }
  }

  private async writeWinners(groups: Waiter[][]): Promise<void> {
    const tx = (await this.queues.get(groups[0][0].item.deliveries[0]?.platformId ?? [...this.queues.queues.keys()][0]).getBackend().client) as any;
    const multi = tx.multi();
    for (const [w] of groups) this.queueWrite(multi, w.item);
    let res: [Error | null, unknown][] | null;
    try {
      res = await multi.exec();
    } catch (err) {
      // Free the claims so the 110 system's retry is not held off for the claim's lifetime.
      await this.releaseClaims(groups).catch(() => undefined);
      throw err;
    }
    const failed = (res ?? []).find(([e]) => e);
    if (!res || failed) {
      await this.releaseClaims(groups).catch(() => undefined);
      throw failed?.[0] ?? new Error('MULTI aborted');
    }
    for (const g of groups) {
      const [leader, ...followers] = g;
      leader.resolve({ kind: 'created', record: leader.item.record, deliveries: leader.item.deliveries });
      for (const f of followers) f.resolve(compare(leader.item.record, f.item));
    }
  }

  private queueWrite(multi: any, item: PendingAlert): void {
    const { record, deliveries } = item;
    const k = this.keys;
    const score = Date.parse(record.receivedAt);
    multi.set(k.alert(record.id), JSON.stringify(record));
    multi.zadd(k.alerts, score, record.id);
    multi.zadd(k.alertsBySource(record.sourceId), score, record.id);
    // The claim becomes permanent in the same transaction as the alert it points to.
    multi.set(item.idemKey, `${record.id} ${record.bodyHash}`);
    for (const d of deliveries) {
      multi.hset(k.delivery(d.id), deliveryHash(d));
      multi.rpush(k.history(d.id), JSON.stringify({ at: d.createdAt, to: d.state, source: 'ingest' }));
    }
    for (const [key, value, px] of item.sets ?? []) multi.set(key, value, 'PX', px);
    for (const ev of item.audit) addAudit(multi, this.prefix, ev);
    for (const d of deliveries) {
      const queue = this.queues.get(d.platformId);
      const data: DeliveryJobData = { alertId: record.id, deliveryId: d.id, platformId: d.platformId, kind: 'deliver' };
      const opts = { ...DEFAULT_JOB_OPTIONS, ...queue.defaultJobOptions, priority: jobPriority(d.priority), jobId: d.id };
      new Job(queue, 'deliver', data, opts, d.id).addJob(multi).catch(() => undefined);
      // The first SLA timer is born with the delivery; each firing arms the next.
      const sla = nextSla(d);
      if (sla) {
        const id = slaJobId(d.id, sla.kind);
        new Job(this.queues.lifecycle, 'sla', { kind: 'sla', deliveryId: d.id }, { delay: Math.max(0, sla.dueAt - Date.now()), jobId: id, removeOnComplete: true, removeOnFail: { age: 86_400 } }, id)
          .addJob(multi)
          .catch(() => undefined);
      }
    }
  }

  private async releaseClaims(groups: Waiter[][]): Promise<void> {
    const p = this.redis.pipeline();
    for (const [w] of groups) {
      p.eval(
        "if redis.call('get', KEYS[1]) == ARGV[1] and redis.call('pttl', KEYS[1]) > 0 then return redis.call('del', KEYS[1]) end return 0",
        1,
        w.item.idemKey,
        `${w.item.record.id} ${w.item.record.bodyHash}`,
      );
    }
    await p.exec();
  }

  /** Someone else holds this key: answer with their alert once it is written. */
  private async answerDuplicate(group: Waiter[]): Promise<void> {
    const deadline = Date.now() + DUPLICATE_WAIT_MS;
    const idemKey = group[0].item.idemKey;
    for (;;) {
      const claim = await this.redis.get(idemKey);
      if (claim) {
        const [existingId] = claim.split(' ');
        const raw = await this.redis.get(this.keys.alert(existingId));
        if (raw) {
          const existing = JSON.parse(raw) as AlertRecord;
          for (const w of group) w.resolve(compare(existing, w.item));
          return;
        }
      } else {
        // The holder crashed or failed and its claim is gone: this copy may try again.
        for (const w of group) this.submit(w.item).then(w.resolve, w.reject);
        return;
      }
      if (Date.now() > deadline) {
        for (const w of group) w.resolve({ kind: 'in-progress' });
        return;
      }
      // The holder is another request mid-write, normally a few milliseconds away.
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

function compare(existing: AlertRecord, item: PendingAlert): WriteOutcome {
  return existing.bodyHash === item.record.bodyHash ? { kind: 'duplicate', record: existing } : { kind: 'conflict', existingId: existing.id };
}
