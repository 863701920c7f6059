import { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { AUDIT_FIELD, type AuditEvent } from '../audit/events.js';
import { DEFAULT_JOB_OPTIONS, jobPriority, type DeliveryJobData, type QueueRegistry } from '../delivery/queues.js';
import { bucketOf, bucketOfKey, type Keys } from '../store/keys.js';
import { relayAudit } from '../store/audit-relay.js';
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
 * event-loop turn become one script call per key-layout bucket (one slot each, src/store/keys.ts),
 * which claims each idempotency key and writes each alert with its deliveries, history, SLA
 * timers, audit events and an outbox entry per delivery; then the BullMQ jobs (one MULTI per
 * platform queue, another slot) and the repeat-call keys. A delivery whose job was not added (a
 * crash, a queue shard away) stays in its bucket's outbox until `relayOutbox` adds it: no alert
 * without its jobs, eventually; a job without its alert is dropped by the engine.
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
      // One MGET per bucket: an MGET may not span slots on Redis Cluster.
      const wanted = batch.flatMap((b) => b.keys);
      const bySlot = new Map<number | string, number[]>();
      wanted.forEach((key, i) => {
        const slot = bucketOfKey(key) ?? key;
        const list = bySlot.get(slot);
        if (list) list.push(i);
        else bySlot.set(slot, [i]);
      });
      const all: (string | null)[] = new Array(wanted.length).fill(null);
      await Promise.all(
        [...bySlot.values()].map(async (ix) => {
          const got = await this.redis.mget(ix.map((i) => wanted[i]));
          ix.forEach((i, j) => (all[i] = got[j]));
        }),
      );
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

  /**
   * The batch script once per bucket, then the jobs, repeat keys and audit relay of what was
   * written. Returns, per group, the claim it found ('' = written).
   */
  private async write(groups: Waiter[][]): Promise<string[]> {
    const client = this.redis as Redis & Record<string, (...a: unknown[]) => Promise<unknown>>;
    if (!client[COMMAND]) client.defineCommand(COMMAND, { numberOfKeys: 1, lua: INGEST_SCRIPT });
    const byBucket = new Map<number, number[]>();
    groups.forEach(([w], i) => {
      const b = bucketOf(w.item.record.id);
      const list = byBucket.get(b);
      if (list) list.push(i);
      else byBucket.set(b, [i]);
    });
    const held: string[] = new Array(groups.length).fill('');
    const k = this.keys;
    await Promise.all(
      [...byBucket].map(async ([b, ix]) => {
        const args: (string | number)[] = [k.audit(b), k.slaDue(b), k.alerts(b), AUDIT_FIELD, ix.length];
        for (const i of ix) this.args(args, groups[i][0].item);
        const res = (await client[COMMAND](k.outbox(b), ...args)) as string[];
        ix.forEach((i, j) => (held[i] = res[j]));
      }),
    );
    // With redis.waitReplicas: no answer before the replicas of every master written to have it.
    await this.replicated(this.redis);
    const written = groups.filter((_, i) => !held[i]).map(([w]) => w.item);
    // Failures here are not the caller's: the alerts are stored, the outbox and the relay timer
    // finish the rest.
    await Promise.all([
      this.addJobs(written).catch(() => undefined),
      ...written.flatMap((item) => (item.sets ?? []).map(([key, value, px]) => this.redis.set(key, value, 'PX', px).catch(() => undefined))),
      ...[...byBucket.keys()].map((b) => relayAudit(this.redis, this.prefix, b).catch(() => 0)),
    ]);
    return held;
  }

  /**
   * One MULTI per platform queue with the jobs of the alerts written, then their outbox entries
   * go. A job whose alert lost the idempotency race (a copy stored between the lookup and this
   * write) finds no delivery record and is dropped by the engine; that race is rare and harmless.
   */
  private async addJobs(items: PendingAlert[]): Promise<void> {
    const byPlatform = new Map<string, [AlertRecord, DeliveryRecord][]>();
    for (const item of items) for (const d of item.deliveries) {
      const list = byPlatform.get(d.platformId);
      if (list) list.push([item.record, d]);
      else byPlatform.set(d.platformId, [[item.record, d]]);
    }
    await Promise.all(
      [...byPlatform].map(async ([platformId, list]) => {
        const client = (await this.queues.get(platformId).getBackend().client) as unknown as Redis;
        const multi = client.multi();
        for (const [rec, d] of list) this.addJob(multi, rec, d);
        const res = await multi.exec();
        const failed = (res ?? []).find(([e]) => e);
        if (!res || failed) throw failed?.[0] ?? new Error('MULTI aborted');
      }),
    );
    const done = new Map<number, string[]>();
    for (const item of items) for (const d of item.deliveries) {
      const b = bucketOf(d.id);
      const list = done.get(b);
      if (list) list.push(d.id);
      else done.set(b, [d.id]);
    }
    await Promise.all([...done].map(([b, ids]) => this.redis.zrem(this.keys.outbox(b), ...ids)));
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
    const masters = (client as unknown as { nodes?: (role: string) => Redis[] }).nodes?.('master');
    let acked: number;
    if (masters) {
      // Redis Cluster: WAIT is per connection, and the cluster client has one per master. A
      // master this process never wrote to answers at once.
      acked = Math.min(...(await Promise.all(masters.map((n) => n.wait(replicas, timeoutMs)))));
    } else {
      const fence = client.set(`${this.prefix}:replication-fence`, String(Date.now()));
      fence.catch(() => undefined);
      acked = await client.wait(replicas, timeoutMs);
      await fence;
    }
    if (acked < replicas) {
      throw new ProblemError('FENLIU_ERR_NOT_REPLICATED', `The write reached ${acked} of ${replicas} Redis replicas within ${timeoutMs} ms; retry with the same idempotency key`, { headers: { 'retry-after': '1' } });
    }
  }

  /** The script's arguments for one alert (layout documented in script.ts). */
  private args(out: (string | number)[], item: PendingAlert): void {
    const { record, deliveries } = item;
    const k = this.keys;
    const { alert, ...rest } = record;
    out.push(item.idemKey, `${record.id} ${record.bodyHash}`, record.id, k.alert(record.id), item.alertJson ?? JSON.stringify(alert), JSON.stringify(rest), Date.parse(record.receivedAt), k.alertsBySource(bucketOf(record.id), record.sourceId), deliveries.length);
    for (const d of deliveries) {
      const h = deliveryHash(d);
      const fields = Object.keys(h);
      out.push(d.id, k.delivery(d.id), fields.length);
      for (const f of fields) out.push(f, h[f]);
      out.push(k.history(d.id), JSON.stringify({ at: d.createdAt, to: d.state, source: 'ingest' }), nextSla(d)?.dueAt ?? '');
    }
    // Repeat-call keys are in the buckets of their hashes, not the alert's: written after the script.
    out.push(0);
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

/**
 * Adds the jobs of deliveries left in an outbox for longer than `olderThanMs` (the writer died
 * between its script and its job MULTI, or a queue shard was away), then clears them. Adding is
 * idempotent (`jobId` = delivery id; a delivery no longer `queued` needs no job), so two relays
 * at once, or a relay racing the writer, add nothing twice. Returns how many it handled.
 */
export async function relayOutbox(redis: Redis, k: Keys, queues: QueueRegistry, olderThanMs = 10_000, now = Date.now()): Promise<number> {
  let handled = 0;
  for (const b of k.bucketList) {
    const ids = await redis.zrangebyscore(k.outbox(b), '-inf', now - olderThanMs, 'LIMIT', 0, 500);
    for (const id of ids) {
      const [platformId, alertId, priority, state] = await redis.hmget(k.delivery(id), 'platformId', 'alertId', 'priority', 'state');
      if (platformId && alertId && state === 'queued' && queues.queues.has(platformId)) {
        const queue = queues.get(platformId);
        const data: DeliveryJobData = { alertId, deliveryId: id, platformId, kind: 'deliver' };
        await queue.add('deliver', data, { ...DEFAULT_JOB_OPTIONS, ...queue.defaultJobOptions, priority: jobPriority(priority === 'urgent' ? 'urgent' : 'normal'), jobId: id });
      }
      await redis.zrem(k.outbox(b), id);
      handled++;
    }
  }
  return handled;
}
