import type { Redis } from 'ioredis';
import { auditRelayCursorKey, auditStreamKey } from '../audit/events.js';
import { BUCKETS, isStandalone, keys } from './keys.js';

/**
 * The audit relay. Scripts write an audit event into their bucket's stream (the same slot as the
 * change it records, so the two stay atomic on Redis Cluster); the relay moves those events into
 * the one stream the archiver, the audit query and `fenliu audit` read. Each bucket's events keep
 * their order, and each is appended once: the append and the bucket's cursor (last id moved) are
 * one script in the global stream's slot, which skips what a concurrent relay moved already.
 * The bucket stream is trimmed after; a crash in between leaves entries the next relay skips.
 */
const APPEND = `
local function newer(a, b)
  if not b then return true end
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am > bm or (am == bm and as > bs)
end
local last = redis.call('HGET', KEYS[2], ARGV[1])
if not last then last = nil end
local moved = false
local i = 2
while i <= #ARGV do
  local id, n = ARGV[i], tonumber(ARGV[i + 1])
  if newer(id, last) then
    redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 2, i + 1 + n))
    last = id
    moved = true
  end
  i = i + 2 + n
end
if moved then redis.call('HSET', KEYS[2], ARGV[1], last) end
return last
`;

const CHUNK = 500;

type WithAppend = Redis & { fenliuAuditRelay?: (...a: string[]) => Promise<string | null> };

async function relayNow(redis: Redis, prefix: string, b: number): Promise<number> {
  const r = redis as WithAppend;
  if (!r.fenliuAuditRelay) r.defineCommand('fenliuAuditRelay', { numberOfKeys: 2, lua: APPEND });
  const source = keys(prefix).bucketAudit(b);
  let moved = 0;
  for (;;) {
    const entries = (await redis.xrange(source, '-', '+', 'COUNT', CHUNK)) as [string, string[]][];
    if (!entries.length) return moved;
    // every field as it is: an event written whole (`e`) or sealed by its producer (`s`, `b:…`)
    const args: string[] = [String(b)];
    for (const [id, fields] of entries) args.push(id, String(fields.length), ...fields);
    await r.fenliuAuditRelay!(auditStreamKey(prefix), auditRelayCursorKey(prefix), ...args);
    const last = entries[entries.length - 1][0];
    const [ms, seq] = last.split('-');
    await redis.xtrim(source, 'MINID', `${ms}-${Number(seq) + 1}`);
    moved += entries.length;
    if (entries.length < CHUNK) return moved;
  }
}

interface Slot {
  running?: Promise<number>;
  queued?: Promise<number>;
}
const slots = new WeakMap<Redis, Map<string, Slot>>();

/**
 * Relays one bucket's events. Calls while a relay of the bucket runs share one follow-up relay,
 * which starts after it and so sees every event written before the call.
 */
export function relayAudit(redis: Redis, prefix: string, b: number): Promise<number> {
  // Standalone: scripts wrote to the one stream already; what an older version left in a bucket
  // stream is moved by relayAllAudit (the archiver and the lifecycle worker's timer call it).
  if (isStandalone(prefix)) return Promise.resolve(0);
  return relayQueued(redis, prefix, b);
}

function relayQueued(redis: Redis, prefix: string, b: number): Promise<number> {
  let per = slots.get(redis);
  if (!per) slots.set(redis, (per = new Map()));
  const name = `${prefix}\n${b}`;
  let s = per.get(name);
  if (!s) per.set(name, (s = {}));
  const slot = s;
  const start = (): Promise<number> => {
    const p = relayNow(redis, prefix, b).finally(() => {
      if (slot.running === p) slot.running = undefined;
    });
    slot.running = p;
    return p;
  };
  if (slot.queued) return slot.queued;
  if (!slot.running) return start();
  const q = slot.running.catch(() => 0).then(() => {
    slot.queued = undefined;
    return start();
  });
  slot.queued = q;
  return q;
}

/** Relays every bucket (readers of the audit stream call this first; a timer calls it as a catch-all). */
export async function relayAllAudit(redis: Redis, prefix: string): Promise<number> {
  const n = await Promise.all(Array.from({ length: BUCKETS }, (_, b) => relayQueued(redis, prefix, b)));
  return n.reduce((a, x) => a + x, 0);
}
