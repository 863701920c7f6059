/**
 * Test helper for log-first ingest: what the ingest logs and the audit stream hold, and the
 * check that every alert was materialised exactly once.
 */
import type { Test } from 'tap';
import type { Redis } from 'ioredis';
import { auditStreamKey } from '../../src/audit/events.js';
import { bucketOf } from '../../src/store/keys.js';
import type { EngineEnv } from './engine.js';
import { decodeStreamEntry } from '../../src/audit/format.js';

export async function auditEvents(r: Redis, prefix: string): Promise<any[]> {
  return (await r.xrange(auditStreamKey(prefix), '-', '+')).map(([id, f]) => decodeStreamEntry(id, f));
}

/** Entries ever added to the ingest logs (XINFO entries-added): a dispatcher deletes what it materialises, a log never written does not exist. */
export async function logEntriesAdded(r: Redis, k: { bucketList: number[]; ingestLog(b: number): string }): Promise<number> {
  const added = await Promise.all(
    k.bucketList.map(async (b) => {
      const info = (await r.xinfo('STREAM', k.ingestLog(b)).catch(() => null)) as unknown[] | null;
      return info ? Number(info[info.indexOf('entries-added') + 1]) : 0;
    }),
  );
  return added.reduce((a, x) => a + x, 0);
}

export async function logLength(e: { r: Redis; k: { bucketList: number[]; ingestLog(b: number): string } }): Promise<number> {
  return (await Promise.all(e.k.bucketList.map((b) => e.r.xlen(e.k.ingestLog(b))))).reduce((a, x) => a + x, 0);
}

/** Every alert materialised exactly once: one audit event (alert.received, with its route), one ingest history entry per delivery, one SLA timer or none. */
export async function checkOnce(t: Test, e: EngineEnv, n: number): Promise<void> {
  const events = await auditEvents(e.r, e.f.cfg.redis.prefix);
  const received = events.filter((ev) => ev.type === 'alert.received');
  t.equal(received.length, n, 'one alert.received per alert');
  t.equal(new Set(received.map((ev) => ev.alertId)).size, n, 'for every alert');
  t.equal(events.filter((ev) => ev.type === 'alert.routed').length, 0, 'no separate alert.routed (the route is on alert.received)');
  t.ok(received.every((ev) => Array.isArray(ev.data.deliveryIds) && ev.data.deliveryIds.length > 0), 'every alert.received names its deliveries');
  t.equal(await logLength(e), 0, 'the log is empty');
  const ids = received.flatMap((ev) => ev.data.deliveryIds as string[]);
  const histories = await Promise.all(ids.map((id) => e.r.lrange(e.k.history(id), 0, -1)));
  t.ok(histories.every((h) => h.filter((x) => JSON.parse(x).source === 'ingest').length === 1), 'one ingest history entry per delivery');
  t.ok((await Promise.all(ids.map((id) => e.r.exists(e.k.delivery(id))))).every((x) => x === 1), 'every delivery hash');
  const sets = (id: string) => {
    const [b, p] = [bucketOf(id), id.slice(id.indexOf('.') + 1)];
    return [e.k.work(b, p, true), e.k.work(b, p, false), e.k.working(b, p)];
  };
  // The state first: a job taken meanwhile is in `working` by the time its sets are read.
  const states = await Promise.all(ids.map((id) => e.r.hget(e.k.delivery(id), 'state')));
  const jobs = await Promise.all(ids.map((id) => Promise.all(sets(id).map((key) => e.r.zscore(key, id)))));
  t.ok(ids.every((_, i) => states[i] !== 'queued' || jobs[i].filter((x) => x !== null).length === 1), 'every delivery still queued has one job');
}

