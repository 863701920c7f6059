import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { AUDIT_FIELD } from '../audit/events.js';
import { sealedStream } from '../audit/stream-format.js';
import { bus } from '../events.js';
import { nextSla } from '../lifecycle/service.js';
import { duplicateConnection } from '../redis/connect.js';
import { relayAudit } from '../store/audit-relay.js';
import { INGEST_GROUP, alertOfDelivery, itemDeliveries, logEntryOf, parseEntry, type LogItem } from '../store/ingest-log.js';
import { bucketOf, isStandalone, type Keys } from '../store/keys.js';
import { deliveryHash, getAlertRecord, type AlertRecord } from '../store/records.js';
import { MATERIALISE_SCRIPT } from './script.js';
import { settledWithin } from '../bounded.js';

/** One entry of a bucket's ingest log; `fields` null for an entry deleted since it was read. */
export interface LogEntry {
  bucket: number;
  id: string;
  fields: string[] | null;
}

/** What parse gives for an entry it cannot read (the script then acknowledges and deletes it). */
const UNREADABLE: Map<string, LogItem> = new Map();

/** Alerts per materialise script call: a longer script would hold Redis (and every API request) longer. */
const MAX_ALERTS = 500;

const COMMAND = 'fenliuMaterialise';

type Scripted = Redis & Record<string, (...a: unknown[]) => Promise<unknown>>;

/**
 * Turns ingest log entries into everything else an accepted alert implies: delivery hashes,
 * history, SLA timers, audit events and each delivery's job in its platform's work set (one
 * MATERIALISE_SCRIPT per group of buckets, which also acknowledges and deletes the entries, so
 * a delivery and its job are written together or not at all). The script writes an entry once
 * (src/ingest/script.ts), so a repeated run adds nothing.
 *
 * Used by the dispatcher's loop (worker processes) and, on demand, by any write on an alert the
 * dispatcher has not reached yet (`alert`, `delivery`), in every process.
 */
export class Materialiser {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly prefix: string,
    private readonly log?: Logger,
  ) {}

  /**
   * Materialises an alert still in the ingest log, now (before a write on it or its deliveries).
   * Returns whether the alert exists: its deliveries are then written (by this call, by a
   * dispatcher that got there first, or long ago), so a caller that found one missing reads again.
   * Not "whether this call did it": a dispatcher racing the caller also deletes the log key.
   */
  async alert(alertId: string, rec?: AlertRecord): Promise<boolean> {
    const r = rec ?? (await getAlertRecord(this.redis, this.keys, alertId));
    if (!r) return false;
    const log = await logEntryOf(this.redis, this.keys, r);
    if (!log) return true;
    const b = bucketOf(alertId);
    const found = (await this.redis.xrange(this.keys.ingestLog(b), log, log)) as [string, string[]][];
    if (found.length) await this.run(found.map(([id, fields]) => ({ bucket: b, id, fields })));
    return true;
  }

  /** `alert` for the alert of a primary delivery id (`dlv_<alert>.<platform>`). */
  async delivery(deliveryId: string): Promise<boolean> {
    const alertId = alertOfDelivery(deliveryId);
    return alertId ? this.alert(alertId) : false;
  }

  /** Materialises entries (of any buckets); returns how many alerts this call materialised. */
  async run(entries: LogEntry[]): Promise<number> {
    const k = this.keys;
    const byBucket = new Map<number, LogEntry[]>();
    for (const e of entries) {
      const list = byBucket.get(e.bucket);
      if (list) list.push(e);
      else byBucket.set(e.bucket, [e]);
    }
    const done: { entry: LogEntry; items: Map<string, LogItem> }[] = [];
    for (const buckets of k.groups(byBucket.keys())) {
      let chunk: { entry: LogEntry; items: Map<string, LogItem> }[] = [];
      let alerts = 0;
      const flush = async () => {
        if (!chunk.length) return;
        const live = await this.script(chunk);
        chunk.forEach((c, i) => live[i] && done.push(c));
        chunk = [];
        alerts = 0;
      };
      for (const b of buckets) {
        for (const entry of byBucket.get(b)!) {
          const items = this.parse(entry);
          // Kept before the script deletes it: accepted alerts may be in it (fenliu ingest-log parked).
          if (items === UNREADABLE) await this.park(entry);
          if (alerts && alerts + items.size > MAX_ALERTS) await flush();
          chunk.push({ entry, items });
          alerts += items.size;
        }
      }
      await flush();
    }
    // Redis Cluster: the events went to the buckets' own streams (src/store/audit-relay.ts).
    if (!isStandalone(this.prefix)) await Promise.all([...new Set(done.map((d) => d.entry.bucket))].map((b) => relayAudit(this.redis, this.prefix, b).catch(() => 0)));
    const n = done.reduce((a, d) => a + d.items.size, 0);
    if (done.length) bus.emitEvent('ingest.materialised', { entries: done.length, alerts: n, alertIds: done.flatMap((d) => [...d.items.keys()]) });
    return n;
  }

  private parse(entry: LogEntry): Map<string, LogItem> {
    try {
      return parseEntry(entry.fields);
    } catch (err) {
      // Only fenliu's own script writes the log: an unreadable entry is said loudly and moved
      // aside (park), rather than left to block the log behind it.
      this.log?.error({ entry: entry.id, bucket: entry.bucket, err: { message: (err as Error).message } }, 'unreadable ingest log entry moved to the parked stream');
      return UNREADABLE;
    }
  }

  /** Copies an unreadable entry, as it is, to its bucket's parked stream (same slot) for an operator to look at. */
  private async park(entry: LogEntry): Promise<void> {
    if (entry.fields) await this.redis.xadd(this.keys.ingestParked(entry.bucket), '*', 'entry', entry.id, ...entry.fields);
  }

  /** One MATERIALISE_SCRIPT call for entries of one group of buckets; per entry, whether it was live. */
  private async script(chunk: { entry: LogEntry; items: Map<string, LogItem> }[]): Promise<boolean[]> {
    const k = this.keys;
    const client = this.redis as Scripted;
    if (!client[COMMAND]) client.defineCommand(COMMAND, { numberOfKeys: 1, lua: MATERIALISE_SCRIPT });
    const args: (string | number)[] = [INGEST_GROUP, AUDIT_FIELD, chunk.length];
    const sealed = sealedStream(this.redis, this.prefix);
    for (const { entry, items } of chunk) {
      const b = entry.bucket;
      args.push(k.ingestLog(b), entry.id, k.audit(b), k.slaDue(b), items.size);
      for (const item of items.values()) this.args(args, item, sealed);
    }
    const res = (await client[COMMAND](k.ingestLog(chunk[0].entry.bucket), ...args)) as number[];
    return res.map((x) => x === 1);
  }

  /** The script's arguments for one alert (layout documented in script.ts). */
  private args(out: (string | number)[], item: LogItem, sealed: boolean): void {
    out.push(this.keys.alert(item.r.id), this.keys.alertLog(item.r.id), item.x.n);
    materialiseArgs(out, this.keys, item, sealed);
  }
}

/**
 * What writing out one alert takes, as script arguments (per delivery its hash, history entry,
 * deadline and work set; then its audit events): the materialise script's and the write-through ingest
 * script's common part (layout documented in script.ts).
 */
export function materialiseArgs(out: (string | number)[], k: Keys, item: LogItem, sealed: boolean): void {
  const { r, x } = item;
  const ds = itemDeliveries(item);
  out.push(ds.length);
  for (const d of ds) {
    const h = deliveryHash(d);
    const fields = Object.keys(h);
    out.push(d.id, k.delivery(d.id), fields.length);
    for (const f of fields) out.push(f, h[f]);
    out.push(k.history(d.id), JSON.stringify({ at: d.createdAt, to: d.state, source: 'ingest' }), nextSla(d)?.dueAt ?? '', k.work(bucketOf(d.id), d.platformId, d.priority === 'urgent'));
  }
  const head = { at: r.receivedAt, alertId: r.id, sourceId: r.sourceId };
  // alert.received holds the alert: sealed here, its placeholder the alert's hash (data.alert
  // first: the script can put the alert itself in its place), the alert's text added by the
  // script from the record, as the body of a sealed entry or in the placeholder's place
  // (src/audit/stream-format.ts). A routed alert's route is on it too (one event, not a separate
  // alert.routed: docs/audit.md, "One event per received alert"); a repeat call's link stays an
  // alert.repeat of its own.
  const alert = { $body: r.bodyHash };
  const data = r.repeatOf
    ? { alert, bodyHash: r.bodyHash, idempotencyKey: r.idempotencyKey }
    : { alert, bodyHash: r.bodyHash, idempotencyKey: r.idempotencyKey, ruleId: r.route.ruleId, targets: r.route.targets, deliveryIds: r.deliveryIds };
  out.push(r.repeatOf ? 2 : 1, JSON.stringify({ data, type: 'alert.received', ...head, actor: x.a }), sealed ? 'sealed' : 'whole');
  if (r.repeatOf) {
    const repeat = { type: 'alert.repeat', ...head, data: { repeatOf: r.repeatOf, ruleId: r.route.ruleId, matchedBy: r.repeatMatch?.key, on: r.repeatMatch?.on, crossSource: r.repeatMatch?.crossSource } };
    out.push(JSON.stringify(repeat), '');
  }
}

export interface DispatcherOptions {
  /** Entries per log per read. */
  count?: number;
  /** How long one blocking read waits for an entry (a stop waits for it on Redis Cluster). */
  blockMs?: number;
  /** How long an entry read by a dispatcher may stay unmaterialised before another takes it over (its process died). */
  claimIdleMs?: number;
}

interface Reader {
  buckets: number[];
  logs: string[];
  conn: Redis;
  /** This consumer's own unacknowledged entries are read first (after a start or a failure). */
  backlog: boolean;
  /** The connection's client id, to end its blocking read on a stop (single Redis only). */
  clientId?: number;
  reading: boolean;
  loop?: Promise<void>;
}

/**
 * The dispatcher: runs in every process with the worker role (src/ingest/extension.ts). One
 * consumer of the `dispatch` group on every bucket's ingest log, reading with XREADGROUP BLOCK on
 * its own connection per group of buckets (one for all on a single Redis; one per bucket on Redis
 * Cluster, where a read cannot span slots), so an alert is materialised about a millisecond after
 * its 202. Entries a dead dispatcher read but did not materialise are taken over (XAUTOCLAIM)
 * once idle for `claimIdleMs`.
 */
export class Dispatcher {
  readonly consumer = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  private readonly readers: Reader[] = [];
  private stopping = false;
  private claimTimer?: NodeJS.Timeout;
  private claiming?: Promise<number>;
  private readonly count: number;
  private readonly blockMs: number;
  private readonly claimIdleMs: number;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly prefix: string,
    private readonly m: Materialiser,
    private readonly log: Logger,
    opts: DispatcherOptions = {},
  ) {
    this.count = opts.count ?? 64;
    this.blockMs = opts.blockMs ?? 1_000;
    this.claimIdleMs = opts.claimIdleMs ?? 30_000;
  }

  async start(): Promise<void> {
    await this.ensureGroups();
    for (const buckets of this.keys.groups(this.keys.bucketList)) {
      // A blocking read holds its connection: never the shared one.
      const conn = duplicateConnection(this.redis, { lazyConnect: false, enableOfflineQueue: true, maxRetriesPerRequest: null, commandTimeout: this.blockMs + 10_000 });
      conn.on('error', () => undefined);
      if (this.stopping) {
        conn.disconnect();
        return;
      }
      const r: Reader = { buckets, logs: buckets.map((b) => this.keys.ingestLog(b)), conn, backlog: true, reading: false };
      // Pushed first: a start that fails here (Redis away) leaves the connection to stop(), not open.
      this.readers.push(r);
      if (isStandalone(this.prefix)) r.clientId = Number(await conn.client('ID'));
    }
    for (const r of this.readers) r.loop = this.loop(r);
    // Takes over a dead dispatcher's entries; also this one's after a failed batch.
    this.claimTimer = setInterval(() => void this.claim().catch(() => 0), Math.max(100, Math.floor(this.claimIdleMs / 2)));
    this.claimTimer.unref();
  }

  /** Finishes the batch in hand, then stops reading. Entries not read stay in the log for another dispatcher. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.claimTimer) clearInterval(this.claimTimer);
    // A blocked read ends as if it timed out (nothing was handed to this consumer); on Redis
    // Cluster it ends by itself within blockMs.
    await Promise.all(this.readers.map((r) => (r.reading && r.clientId !== undefined ? this.redis.client('UNBLOCK', r.clientId, 'TIMEOUT').catch(() => 0) : 0)));
    // Bounded: with Redis gone (a Cluster whose nodes are down) a read queued for a reconnect
    // would never end, and a stop must not hang; closing the connections ends what is left.
    await settledWithin(Promise.all([...this.readers.map((r) => r.loop), this.claiming?.catch(() => 0)]), this.blockMs + 1_000);
    for (const r of this.readers) r.conn.disconnect();
    // A consumer holding no entry is forgotten, so restarts do not pile names up in the group;
    // one that still holds entries stays, for XAUTOCLAIM to take them over.
    // Bounded like the reads above: with Redis gone a stop must still end.
    const forget = Promise.all(
      this.keys.bucketList.map(async (b) => {
        const log = this.keys.ingestLog(b);
        const pending = (await this.redis.xpending(log, INGEST_GROUP, '-', '+', 1, this.consumer)) as unknown[];
        if (!pending.length) await this.redis.xgroup('DELCONSUMER', log, INGEST_GROUP, this.consumer);
      }),
    );
    await settledWithin(forget, 1_000);
  }

  /** Creates the consumer group on every log (from its start: entries written before any dispatcher ran are read too). */
  private async ensureGroups(): Promise<void> {
    await Promise.all(
      this.keys.bucketList.map((b) =>
        this.redis.xgroup('CREATE', this.keys.ingestLog(b), INGEST_GROUP, '0', 'MKSTREAM').catch((err: Error) => {
          if (!/BUSYGROUP/.test(err.message)) throw err;
        }),
      ),
    );
  }

  private async loop(r: Reader): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      try {
        const fresh = !r.backlog;
        r.reading = fresh;
        const entries = await this.read(r.conn, r.buckets, fresh ? '>' : '0', fresh ? this.blockMs : undefined);
        r.reading = false;
        if (!fresh && !entries.length) r.backlog = false;
        if (entries.length) await this.m.run(entries);
        failures = 0;
      } catch (err) {
        r.reading = false;
        if (this.stopping) break;
        // The group is gone (the data was flushed): made again, from the start of the log.
        if (/NOGROUP/.test((err as Error).message)) await this.ensureGroups().catch(() => undefined);
        r.backlog = true;
        if (failures++ === 0) this.log.warn({ err: { message: (err as Error).message } }, 'ingest dispatcher: a batch failed; retrying (its entries stay in the log)');
        await new Promise((res) => setTimeout(res, Math.min(50 * 2 ** failures, 2_000)));
      }
    }
  }

  /**
   * Takes over entries read by a dispatcher that has not acknowledged them for `claimIdleMs`
   * (it died, or its Redis calls failed) and materialises them. Returns how many alerts.
   */
  claim(): Promise<number> {
    if (this.claiming) return this.claiming;
    const run = async () => {
      let n = 0;
      for (const b of this.keys.bucketList) {
        let cursor = '0-0';
        do {
          if (this.stopping) return n;
          const [next, list] = (await this.redis.xautoclaim(this.keys.ingestLog(b), INGEST_GROUP, this.consumer, this.claimIdleMs, cursor, 'COUNT', this.count)) as [string, [string, string[] | null][], string[]?];
          cursor = next;
          if (list.length) n += await this.m.run(list.map(([id, fields]) => ({ bucket: b, id, fields })));
        } while (cursor !== '0-0');
      }
      return n;
    };
    this.claiming = run().finally(() => (this.claiming = undefined));
    return this.claiming;
  }

  /**
   * Materialises everything in the logs now, without blocking (tests, and `fenliu` tools that
   * need the derived data at once): this consumer's entries, then new ones, until none is left.
   */
  async drain(): Promise<number> {
    await this.ensureGroups();
    let n = 0;
    for (const id of ['0', '>'] as const) {
      for (const buckets of this.keys.groups(this.keys.bucketList)) {
        for (;;) {
          const entries = await this.read(this.redis, buckets, id);
          if (!entries.length) break;
          n += await this.m.run(entries);
        }
      }
    }
    return n;
  }

  /** XREADGROUP on the logs of `buckets` (one group of `k.groups`): '>' new entries, '0' this consumer's unacknowledged ones. */
  private async read(conn: Redis, buckets: number[], id: '>' | '0', blockMs?: number): Promise<LogEntry[]> {
    const logs = buckets.map((b) => this.keys.ingestLog(b));
    const args = ['GROUP', INGEST_GROUP, this.consumer, 'COUNT', this.count, ...(blockMs !== undefined ? ['BLOCK', blockMs] : []), 'STREAMS', ...logs, ...logs.map(() => id)];
    const res = await (conn as unknown as { xreadgroup(...a: (string | number)[]): Promise<[string, [string, string[] | null][]][] | null> }).xreadgroup(...args);
    const entries: LogEntry[] = [];
    for (const [log, list] of res ?? []) {
      const bucket = buckets[logs.indexOf(log)];
      for (const [eid, fields] of list) entries.push({ bucket, id: eid, fields });
    }
    return entries;
  }
}
