import type { Redis } from 'ioredis';
import type { AuditActor } from '../audit/events.js';
import { deliveryId } from './ids.js';
import { bucketOf, type Keys } from './keys.js';
import type { AlertRecord, DeliveryRecord } from './record-types.js';

/**
 * The ingest log (docs/reliability.md, "What a 202 means"). The API's ingest script stores an
 * alert's claim, record and indexes, and appends to its bucket's log `k.ingestLog(b)` one stream
 * entry per call: one field per alert, alert id → `{"r":<record without the alert>,"x":<LogExtra>}`.
 * The record also names its entry (`log`). Everything else an alert implies (delivery hashes,
 * history, SLA timers, audit events, outbox, BullMQ jobs) is derived from that by the dispatcher
 * (src/ingest/dispatcher.ts), which deletes the entry in the script that writes it all: an entry
 * still in the log is an alert not materialised yet, and the other way round.
 */

/** The dispatchers' consumer group on every ingest log. */
export const INGEST_GROUP = 'dispatch';

export type Deadlines = Partial<Record<'ackBy' | 'interveneBy' | 'resolveBy', string>>;

/** What materialising an alert needs that its record does not say. Keep its members short: it is written per alert. */
export interface LogExtra {
  /** Bytes of the alert's JSON at the head of the record (spliced into `alert.received` by the script, never sent back). */
  n: number;
  /** The alert's priority (inside the alert, which the dispatcher does not read). */
  p: 'normal' | 'urgent';
  /** Who submitted it (the `alert.received` actor). */
  a: AuditActor;
  /** Each delivery's deadlines, in `deliveryIds` order, as ingest computed them from its config. */
  d: Deadlines[];
}

export type RecordRest = Omit<AlertRecord, 'alert'>;

export interface LogItem {
  r: RecordRest;
  x: LogExtra;
}

/** A delivery as ingest creates it: the API's answer, the dispatcher's hash and a read's stand-in are this one object. */
export function newDelivery(alertId: string, platformId: string, priority: 'normal' | 'urgent', at: string, deadlines: Deadlines): DeliveryRecord {
  return { id: deliveryId(alertId, platformId), alertId, platformId, state: 'queued', priority, createdAt: at, updatedAt: at, attempts: 0, kind: 'primary', ...deadlines };
}

/** The deliveries an ingest log item stands for. */
export function itemDeliveries(item: LogItem): DeliveryRecord[] {
  const { r, x } = item;
  return r.deliveryIds.map((id, i) => newDelivery(r.id, id.slice(id.indexOf('.') + 1), x.p, r.receivedAt, x.d[i] ?? {}));
}

/** Stream entry fields (alert id, item JSON, ...) as items by alert id; a deleted entry (no fields) has none. */
export function parseEntry(fields: string[] | null | undefined): Map<string, LogItem> {
  const out = new Map<string, LogItem>();
  if (!fields) return out;
  for (let i = 0; i + 1 < fields.length; i += 2) out.set(fields[i], JSON.parse(fields[i + 1]) as LogItem);
  return out;
}

/** The alert id a primary delivery id names (`dlv_<alert>.<platform>`); undefined for other ids. */
export function alertOfDelivery(id: string): string | undefined {
  const dot = id.indexOf('.');
  return id.startsWith('dlv_') && dot > 0 ? `alt_${id.slice(4, dot)}` : undefined;
}

/**
 * The ingest log entry that still holds an alert's deliveries, if any: its log key (written with
 * the record, deleted when the entry is materialised), or, in a record of an earlier version, the
 * record's own `log` field.
 */
export async function logEntryOf(redis: Redis, k: Keys, rec: AlertRecord): Promise<string | null> {
  return rec.log ?? (await redis.get(k.alertLog(rec.id)));
}

/**
 * Stand-ins for deliveries whose hash does not exist yet because their alert is still in the
 * ingest log: `queued`, as the dispatcher will write them. Ids of materialised (or unknown)
 * deliveries are left out; the caller reads those again (the entry may have gone meanwhile).
 * `records` may hold records the caller has read already.
 */
export async function pendingDeliveries(redis: Redis, k: Keys, ids: string[], records: AlertRecord[] = []): Promise<Map<string, DeliveryRecord>> {
  const out = new Map<string, DeliveryRecord>();
  const byAlert = new Map<string, string[]>();
  for (const id of ids) {
    const a = alertOfDelivery(id);
    if (!a) continue;
    const list = byAlert.get(a);
    if (list) list.push(id);
    else byAlert.set(a, [id]);
  }
  if (!byAlert.size) return out;
  const known = new Map(records.map((r) => [r.id, r]));
  await Promise.all(
    [...byAlert].map(async ([alertId, want]) => {
      let rec = known.get(alertId);
      if (!rec) {
        const raw = await redis.get(k.alert(alertId));
        rec = raw ? (JSON.parse(raw) as AlertRecord) : undefined;
      }
      const log = rec && (await logEntryOf(redis, k, rec));
      if (!log) return;
      const entry = (await redis.xrange(k.ingestLog(bucketOf(alertId)), log, log)) as [string, string[]][];
      const item = parseEntry(entry[0]?.[1]).get(alertId);
      if (!item) return;
      for (const d of itemDeliveries(item)) if (want.includes(d.id)) out.set(d.id, d);
    }),
  );
  return out;
}
