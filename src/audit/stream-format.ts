/**
 * Whether producers may write their events sealed (`s` + `b:<path>`, docs/audit.md "Stream
 * entries") or must write them whole (`e`). A process of an earlier version reads only `e`: its
 * archiver would archive a sealed entry as `audit.malformed` (its fields kept, its type lost),
 * and on Redis Cluster its relay would copy the event without its bodies. So an event is written
 * sealed only where no such reader can meet it:
 * - on a standalone Redis, where scripts write to the one stream and no relay moves it, and
 * - while the archiver holding the lock is of this version: its lock token says so
 *   (ARCHIVER_TOKEN_PREFIX). The holder is read again every REFRESH_MS; until the first read,
 *   and with no archiver holding the lock, events go whole.
 */
import type { Redis } from 'ioredis';
import { auditLockKey } from './events.js';
import { isStandalone } from '../store/keys.js';

/** The lock token of an archiver that reads sealed entries begins with this. */
export const ARCHIVER_TOKEN_PREFIX = 's1.';
/** How often a producer reads which archiver holds the lock (a handover to an older one is seen within this). */
export const REFRESH_MS = 5_000;

interface Known {
  sealed: boolean;
  at: number;
  reading?: Promise<boolean>;
}
const known = new WeakMap<Redis, Map<string, Known>>();

function entry(redis: Redis, prefix: string): Known {
  let per = known.get(redis);
  if (!per) known.set(redis, (per = new Map()));
  let k = per.get(prefix);
  if (!k) per.set(prefix, (k = { sealed: false, at: -Infinity }));
  return k;
}

/** Reads the lock's holder now (tests await it; producers start it and go on with what they knew). */
export function readStreamFormat(redis: Redis, prefix: string): Promise<boolean> {
  const k = entry(redis, prefix);
  k.reading ??= redis
    .get(auditLockKey(prefix))
    .then(
      (holder) => (k.sealed = isStandalone(prefix) && holder !== null && holder.startsWith(ARCHIVER_TOKEN_PREFIX)),
      () => k.sealed,
    )
    .finally(() => {
      k.at = Date.now();
      k.reading = undefined;
    });
  return k.reading;
}

/** Whether to write an event sealed now: what the last read said, a new read started when it is stale. */
export function sealedStream(redis: Redis, prefix: string): boolean {
  if (!isStandalone(prefix)) return false;
  const k = entry(redis, prefix);
  if (Date.now() - k.at > REFRESH_MS) void readStreamFormat(redis, prefix);
  return k.sealed;
}
