/**
 * Reading audit events back (for GET /v1/alerts/:id/timeline and GET /v1/audit).
 *
 * Sources: the segment files (archived, with seq) and the not-yet-archived tail of the Redis
 * Stream. The stream is read FIRST, then the files; records are merged by stream id, so an entry
 * archived (and trimmed) while we read is still seen exactly once.
 *
 * Archived records are found through the SQLite index (event-index.ts), which catches up with
 * the files first; only the matching lines are read from the segments.
 */
import type { Redis } from 'ioredis';
import { auditStreamKey, type AuditEvent } from './events.js';
import { relayAllAudit } from '../store/audit-relay.js';
import { findRecords } from './event-index.js';
import { compareStreamIds, decodeStreamEntry, openRecord } from './format.js';

export interface AuditItem {
  /** archive sequence number; absent while the event is only in the stream */
  seq?: number;
  streamId: string;
  archived: boolean;
  event: AuditEvent;
}

export interface AuditFilter {
  alertId?: string;
  deliveryId?: string;
  /** ISO time or Date; inclusive */
  from?: string | Date;
  /** ISO time or Date; exclusive */
  to?: string | Date;
  /** event.sourceId */
  source?: string;
  /** event.platformId */
  platform?: string;
  /** exact type, or a prefix ending in ".*" (e.g. "delivery.*") */
  type?: string;
}

function toMs(v: string | Date | undefined): number | undefined {
  if (v === undefined) return undefined;
  const ms = v instanceof Date ? v.getTime() : Date.parse(v);
  if (Number.isNaN(ms)) throw new RangeError(`not a valid time: ${String(v)}`);
  return ms;
}

function matcher(f: AuditFilter): (ev: AuditEvent) => boolean {
  const from = toMs(f.from);
  const to = toMs(f.to);
  const type = f.type;
  const typePrefix = type?.endsWith('.*') ? type.slice(0, -1) : undefined;
  return (ev) => {
    if (f.alertId !== undefined && ev.alertId !== f.alertId) return false;
    if (f.deliveryId !== undefined && ev.deliveryId !== f.deliveryId) return false;
    if (f.source !== undefined && ev.sourceId !== f.source) return false;
    if (f.platform !== undefined && ev.platformId !== f.platform) return false;
    if (type !== undefined && (typePrefix ? !ev.type.startsWith(typePrefix) : ev.type !== type)) return false;
    if (from !== undefined || to !== undefined) {
      const at = Date.parse(ev.at);
      if (from !== undefined && !(at >= from)) return false;
      if (to !== undefined && !(at < to)) return false;
    }
    return true;
  };
}

/** Stream entries (not yet archived, or archived but not yet trimmed), in order. */
async function readStream(redis: Redis, prefix: string, after: string | null): Promise<AuditItem[]> {
  const key = auditStreamKey(prefix);
  // Events still in bucket streams first (a writer that died before relaying them).
  await relayAllAudit(redis, prefix).catch(() => 0);
  const out: AuditItem[] = [];
  let start = after ? `(${after}` : '-';
  for (;;) {
    const page = (await redis.xrange(key, start, '+', 'COUNT', 1000)) as [string, string[]][];
    for (const [id, fields] of page) out.push({ streamId: id, archived: false, event: decodeStreamEntry(id, fields) });
    if (page.length < 1000) return out;
    start = `(${page[page.length - 1][0]}`;
  }
}

async function collect(
  opts: { redis: Redis; prefix: string; dir: string },
  filter: AuditFilter,
  after: string | null,
  limit: number,
): Promise<{ items: AuditItem[]; more: boolean }> {
  const match = matcher(filter);
  const stream = await readStream(opts.redis, opts.prefix, after); // first: see the note at the top
  // The index catches up with the files after the stream was read, so every entry trimmed from
  // the stream meanwhile is found in it, and `head` (the last archived id) splits the two.
  const { records, head } = await findRecords(
    opts.dir,
    { alertId: filter.alertId, deliveryId: filter.deliveryId, platform: filter.platform, source: filter.source, type: filter.type, fromMs: toMs(filter.from), toMs: toMs(filter.to), afterStreamId: after },
    limit + 1,
  );
  const items: AuditItem[] = [];
  for (const r of records) {
    const event = openRecord(r.record);
    if (!match(event)) continue;
    items.push({ seq: r.seq, streamId: r.streamId, archived: true, event });
    if (items.length > limit) return { items: items.slice(0, limit), more: true };
  }
  for (const it of stream) {
    if (head && compareStreamIds(it.streamId, head) <= 0) continue;
    if (!match(it.event)) continue;
    items.push(it);
    if (items.length > limit) return { items: items.slice(0, limit), more: true };
  }
  return { items, more: false };
}

/** All audit events of one alert, in order (archived ones with their seq, then the stream tail). */
export async function readAlertTimeline(opts: { redis: Redis; prefix: string; dir: string; alertId: string }): Promise<AuditItem[]> {
  const { items } = await collect(opts, { alertId: opts.alertId }, null, Number.MAX_SAFE_INTEGER);
  return items;
}

export interface AuditQuery extends AuditFilter {
  redis: Redis;
  prefix: string;
  dir: string;
  /** opaque, from a previous page's nextCursor */
  cursor?: string | null;
  /** default 100, at most 1000 */
  limit?: number;
}

export function encodeCursor(streamId: string): string {
  return Buffer.from(JSON.stringify({ after: streamId })).toString('base64url');
}

export function decodeCursor(cursor: string): string {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { after?: unknown };
    if (typeof v.after === 'string' && /^\d+-\d+$/.test(v.after)) return v.after;
  } catch {
    // fall through
  }
  throw new RangeError('invalid cursor');
}

/** Filtered, paginated audit events in archive order. */
export async function queryAudit(q: AuditQuery): Promise<{ items: AuditItem[]; nextCursor: string | null }> {
  const limit = Math.max(1, Math.min(q.limit ?? 100, 1000));
  const after = q.cursor ? decodeCursor(q.cursor) : null;
  const { items, more } = await collect(q, q, after, limit);
  return { items, nextCursor: more && items.length ? encodeCursor(items[items.length - 1].streamId) : null };
}
