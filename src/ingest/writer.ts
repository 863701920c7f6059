import type { Redis } from 'ioredis';
import type { AuditActor } from '../audit/events.js';
import { bucketOf, bucketOfKey, isStandalone, type Keys } from '../store/keys.js';
import type { LogExtra } from '../store/ingest-log.js';
import type { AlertRecord, DeliveryRecord } from '../store/records.js';
import { INGEST_SCRIPT } from './script.js';
import { ProblemError } from '../errors.js';
import { AUDIT_FIELD } from '../audit/events.js';
import { sealedStream } from '../audit/stream-format.js';
import { workChannel } from '../delivery/wake.js';
import { materialiseArgs } from './dispatcher.js';
import { relayAudit } from '../store/audit-relay.js';

export interface PendingAlert {
  record: AlertRecord;
  /** Its deliveries as ingest created them (`newDelivery`): the answer shows them, the log carries their deadlines. */
  deliveries: DeliveryRecord[];
  /** Redis key of the idempotency claim. */
  idemKey: string;
  /** The alert as JSON, when the caller has it already (it is hashed in that form). */
  alertJson?: string;
  /** Who submitted it: the actor of its `alert.received` event. */
  actor: AuditActor;
  /**
   * Its repeat-call keys, claimed by the batch script with the record when both are free (a new
   * case: RepeatMatcher.fastKeys); when one is held, nothing is written and the answer is 'repeat-held'.
   */
  repeat?: { place: string; phone?: string; windowMs: number };
}

export type WriteOutcome =
  | { kind: 'created'; record: AlertRecord; deliveries: DeliveryRecord[] }
  | { kind: 'duplicate'; record: AlertRecord }
  | { kind: 'conflict'; existingId: string }
  | { kind: 'in-progress' }
  /** A repeat-call key of the alert is held: nothing written; the repeat matcher decides. */
  | { kind: 'repeat-held' };

interface Waiter {
  item: PendingAlert;
  resolve: (o: WriteOutcome) => void;
  reject: (e: unknown) => void;
}

/** The connection's command for the batch script (ioredis defineCommand: EVALSHA, reloaded after NOSCRIPT). */
const COMMAND = 'fenliuIngest';
/** The batch script's answer for an alert whose repeat-call key is held (script.ts). */
const REPEAT_HELD = '!';

/**
 * Writes accepted alerts to Redis, log first (docs/reliability.md). Concurrent requests are
 * coalesced: the submissions of one event-loop turn become one script call per group of
 * key-layout buckets (`k.groups`: one call on a single Redis, one per bucket on Redis Cluster),
 * which claims each idempotency key, stores each record with its index entries, and appends the
 * alerts to their buckets' ingest logs. Deliveries, timers, audit events and jobs are the
 * dispatcher's (src/ingest/dispatcher.ts), in the worker processes, not the request's; or, with
 * `engine.ingestWriteThrough`, written by the same script call, with no log entry (script.ts).
 */
export class IngestWriter {
  private batch: Waiter[] = [];
  private scheduled = false;
  private lookups: { keys: string[]; resolve: (v: (string | null)[]) => void; reject: (e: unknown) => void }[] = [];

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly prefix: string,
    /** `redis.waitReplicas`/`waitTimeoutMs`: no answer before that many replicas have the write. */
    private readonly replication: { replicas: number; timeoutMs: number } = { replicas: 0, timeoutMs: 1_000 },
    /**
     * Write-through (`engine.ingestWriteThrough`): deliveries, timers, audit events and jobs in the
     * ingest script itself, not through the ingest log. Default false: log-first.
     */
    private readonly writeThrough = false,
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
      // One MGET on a single Redis; one per bucket on Redis Cluster (an MGET may not span slots).
      const wanted = batch.flatMap((b) => b.keys);
      const bySlot = new Map<number | string, number[]>();
      const one = isStandalone(this.prefix);
      wanted.forEach((key, i) => {
        const slot = one ? 0 : (bucketOfKey(key) ?? key);
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
          if (claim === REPEAT_HELD) {
            for (const w of g) w.resolve({ kind: 'repeat-held' });
            return;
          }
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
   * The batch script once per group of buckets (repeat-call keys are claimed before, src/lifecycle/repeat.ts).
   * Returns, per group of copies, the claim it found ('' = written).
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
    let windowMs = 0;
    for (const [w] of groups) if (w.item.repeat && w.item.repeat.windowMs > windowMs) windowMs = w.item.repeat.windowMs;
    await Promise.all(
      k.groups(byBucket.keys()).map(async (buckets) => {
        // ARGV[5], the wake-up's platforms, is filled in once the alerts' arguments are written
        const args: (string | number)[] = [buckets.length, windowMs, this.writeThrough ? AUDIT_FIELD : '', workChannel(this.prefix), ''];
        const platforms = new Set<string>();
        const order: number[] = [];
        const sealed = this.writeThrough && sealedStream(this.redis, this.prefix);
        for (const b of buckets) {
          const ix = byBucket.get(b)!;
          args.push(k.alerts(b), k.ingestLog(b), ix.length, k.audit(b), k.slaDue(b));
          for (const i of ix) {
            const { item } = groups[i][0];
            this.args(args, item, sealed);
            if (this.writeThrough) for (const d of item.deliveries) platforms.add(d.platformId);
            order.push(i);
          }
        }
        args[4] = [...platforms].join(' ');
        const res = (await client[COMMAND](k.ingestLog(buckets[0]), ...args)) as string[];
        order.forEach((i, j) => (held[i] = res[j]));
        // Redis Cluster: write-through's events went to the bucket's own stream (src/store/audit-relay.ts;
        // a no-op on one Redis). Not awaited, like every writer's: the archiver relays what this misses.
        if (this.writeThrough && res.includes('')) for (const b of buckets) void relayAudit(this.redis, this.prefix, b).catch(() => 0);
      }),
    );
    // With redis.waitReplicas: no answer before the replicas of every master written to have it.
    await this.replicated(this.redis);
    return held;
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
  private args(out: (string | number)[], item: PendingAlert, sealed: boolean): void {
    const { record, deliveries } = item;
    const k = this.keys;
    const { alert, ...rest } = record;
    const alertJson = item.alertJson ?? JSON.stringify(alert);
    const extra: LogExtra = {
      n: Buffer.byteLength(alertJson),
      p: alert.priority ?? 'normal',
      a: item.actor,
      d: deliveries.map((d) => ({ ackBy: d.ackBy, interveneBy: d.interveneBy, resolveBy: d.resolveBy })),
    };
    out.push(item.idemKey, `${record.id} ${record.bodyHash}`, record.id, k.alert(record.id), alertJson, JSON.stringify(rest), Date.parse(record.receivedAt), k.alertsBySource(bucketOf(record.id), record.sourceId), this.writeThrough ? '' : JSON.stringify(extra), item.repeat?.place ?? '', item.repeat?.phone ?? '', this.writeThrough ? '' : k.alertLog(record.id));
    if (this.writeThrough) materialiseArgs(out, k, { r: rest, x: extra }, sealed);
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
