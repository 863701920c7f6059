import type { Redis } from 'ioredis';
import type { Keys } from './keys.js';
import type { AlertRecord } from './records.js';
import type { RepeatMatcher } from '../lifecycle/repeat.js';

/**
 * Retention of alert records: removes every alert received before `cutoffMs` with everything
 * fenliu keeps about it in Redis — the record, its idempotency claim, its deliveries (hash,
 * history, attempt log), index entries (by time, by source, flow, open, overdue, dead letters,
 * remote tickets), its waiting first-delivery job and pending SLA timers, and, given the matcher, its
 * repeat-call keys. The audit trail is not touched: it lives on in the archived segment files.
 * Runs in chunks of `chunk` alerts; returns how many alerts it removed.
 */
export async function sweepRetention(
  redis: Redis,
  k: Keys,
  prefix: string,
  cutoffMs: number,
  opts: { chunk?: number; repeat?: RepeatMatcher } = {},
): Promise<{ alerts: number }> {
  const chunk = opts.chunk ?? 500;
  let removed = 0;
  // Bucket by bucket: an alert's keys and its index entries share its bucket's slot, so each
  // chunk is one MULTI (waiting jobs are in the same bucket); idempotency claims and repeat keys
  // (the slot of their hash) are removed beside it. BullMQ delivery jobs of an earlier version
  // need nothing here: a worker's start moved them and removed those queues (src/store/migrate.ts).
  for (const b of k.bucketList) for (;;) {
    const ids = await redis.zrangebyscore(k.alerts(b), '-inf', `(${cutoffMs}`, 'LIMIT', 0, chunk);
    if (!ids.length) break;
    const read = redis.pipeline();
    for (const id of ids) {
      read.get(k.alert(id));
      read.lrange(k.alertDeliveries(id), 0, -1);
    }
    const got = (await read.exec()) ?? [];
    const recs = ids.map((id, i) => {
      const raw = got[2 * i]?.[1] as string | null;
      const later = (got[2 * i + 1]?.[1] as string[] | null) ?? [];
      const rec = raw ? (JSON.parse(raw) as AlertRecord) : undefined;
      return { id, rec, dIds: rec ? [...rec.deliveryIds, ...later] : later };
    });
    // Each delivery's platform and remote ticket, for the per-platform indexes.
    const dread = redis.pipeline();
    for (const r of recs) for (const d of r.dIds) dread.hmget(k.delivery(d), 'platformId', 'remoteTicketId', 'pendingToken');
    const dinfo = ((await dread.exec()) ?? []).map(([, v]) => (v as (string | null)[] | null) ?? []);
    let di = 0;
    const tx = redis.multi();
    const elsewhere: Promise<unknown>[] = [];
    for (const { id, rec, dIds } of recs) {
      tx.zrem(k.alerts(b), id);
      tx.del(k.alert(id), k.alertLog(id), k.alertDeliveries(id), k.alertPlatforms(id), k.alertAux(id));
      if (rec) {
        tx.zrem(k.alertsBySource(b, rec.sourceId), id);
        elsewhere.push(redis.del(k.idem(rec.sourceId, rec.idempotencyKey)));
        // Only if they still point at this alert (a later call may own them now).
        if (opts.repeat) elsewhere.push(opts.repeat.forget(rec.alert, id));
      }
      for (const dId of dIds) {
        const [platformId, ticket, token] = dinfo[di++] ?? [];
        tx.del(k.delivery(dId), k.history(dId), k.attempts(dId));
        tx.zrem(k.overdue(b), dId);
        tx.zrem(k.slaDue(b), dId);
        if (!platformId) continue;
        // A first-delivery job still waiting (its follow-ups end by themselves: no delivery, no attempt).
        tx.zrem(k.work(b, platformId, false), dId).zrem(k.work(b, platformId, true), dId);
        tx.zrem(k.flowDelivered(b, platformId), dId);
        tx.zrem(k.open(b, platformId), dId);
        tx.zrem(k.deadLetters(b, platformId), dId);
        if (ticket) tx.hdel(k.ticket(b, platformId), ticket);
        if (token) tx.hdel(k.ticket(b, platformId), `token:${token}`);
      }
    }
    await Promise.all([tx.exec(), ...elsewhere]);
    removed += ids.length;
    if (ids.length < chunk) break;
  }
  void prefix;
  return { alerts: removed };
}
