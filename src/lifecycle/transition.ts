import type { Redis } from 'ioredis';
import { auditStreamKey, type AuditEvent } from '../audit/events.js';
import type { Keys } from '../store/keys.js';
import { TRANSITIONS, type DeliveryState } from './states.js';

/**
 * Applies one state change atomically: checks the current state against the transitions table,
 * sets the new state and fields, appends to the history and to the audit stream, all in one
 * script, so concurrent workers, callbacks and operators cannot interleave.
 */
const SCRIPT = `
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {'missing', ''} end
if string.find(',' .. ARGV[2] .. ',', ',' .. cur .. ',', 1, true) == nil then
  return {'illegal', cur}
end
local n = tonumber(ARGV[5])
local fields = {'state', ARGV[1]}
for i = 1, n do
  fields[#fields + 1] = ARGV[5 + 2 * i - 1]
  fields[#fields + 1] = ARGV[5 + 2 * i]
end
redis.call('HSET', KEYS[1], unpack(fields))
local nx = tonumber(ARGV[6 + 2 * n])
for i = 1, nx do
  redis.call('HSETNX', KEYS[1], ARGV[6 + 2 * n + 2 * i - 1], ARGV[6 + 2 * n + 2 * i])
end
local dels = {}
for i = 7 + 2 * n + 2 * nx, #ARGV do dels[#dels + 1] = ARGV[i] end
if #dels > 0 then redis.call('HDEL', KEYS[1], unpack(dels)) end
local h = cjson.decode(ARGV[3])
h['from'] = cur
redis.call('RPUSH', KEYS[2], cjson.encode(h))
if ARGV[4] ~= '' then
  local a = cjson.decode(ARGV[4])
  a['data']['from'] = cur
  redis.call('XADD', KEYS[3], '*', 'e', cjson.encode(a))
end
return {'ok', cur}
`;

export type TransitionResult = { ok: true; from: DeliveryState } | { ok: false; reason: 'missing' | 'illegal'; current?: DeliveryState };

export interface TransitionRequest {
  deliveryId: string;
  to: DeliveryState;
  /** Who caused it: engine, callback, poll, timer, operator. */
  source: string;
  note?: string;
  /** Restrict the allowed starting states further than the table does. */
  from?: DeliveryState[];
  set?: Record<string, string | number | undefined>;
  /** Fields written only if the delivery has none yet (first sign-for time, ...). */
  setIfAbsent?: Record<string, string | number | undefined>;
  unset?: string[];
  audit?: Omit<AuditEvent, 'type' | 'at' | 'deliveryId'> & { data?: Record<string, unknown> };
  eventId?: string;
  at?: string;
}

export function allowedFrom(to: DeliveryState): DeliveryState[] {
  return (Object.keys(TRANSITIONS) as DeliveryState[]).filter((s) => TRANSITIONS[s].includes(to));
}

type WithTransition = Redis & { fenliuTransition?: (...args: string[]) => Promise<unknown> };

/** The script as a defined command: EVALSHA on the hot path, EVAL only when Redis lacks the script (ioredis retries on NOSCRIPT). */
function runTransition(redis: Redis, ...args: string[]): Promise<unknown> {
  const r = redis as WithTransition;
  if (!r.fenliuTransition) r.defineCommand('fenliuTransition', { numberOfKeys: 3, lua: SCRIPT });
  return r.fenliuTransition!(...args);
}

export async function transition(redis: Redis, k: Keys, prefix: string, r: TransitionRequest): Promise<TransitionResult> {
  const at = r.at ?? new Date().toISOString();
  const from = (r.from ?? allowedFrom(r.to)).filter((s) => TRANSITIONS[s].includes(r.to));
  const set: [string, string][] = [['updatedAt', at]];
  for (const [f, v] of Object.entries(r.set ?? {})) if (v !== undefined) set.push([f, String(v)]);
  const nx: [string, string][] = [];
  for (const [f, v] of Object.entries(r.setIfAbsent ?? {})) if (v !== undefined) nx.push([f, String(v)]);
  const history = JSON.stringify({ at, to: r.to, source: r.source, note: r.note, eventId: r.eventId });
  const audit = r.audit
    ? JSON.stringify({ type: 'delivery.state', at, deliveryId: r.deliveryId, ...r.audit, data: { to: r.to, source: r.source, note: r.note, eventId: r.eventId, ...(r.audit.data ?? {}) } })
    : '';
  const res = (await runTransition(
    redis,
    k.delivery(r.deliveryId),
    k.history(r.deliveryId),
    auditStreamKey(prefix),
    r.to,
    from.join(','),
    history,
    audit,
    String(set.length),
    ...set.flat(),
    String(nx.length),
    ...nx.flat(),
    ...(r.unset ?? []),
  )) as [string, string];
  if (res[0] === 'ok') return { ok: true, from: res[1] as DeliveryState };
  return { ok: false, reason: res[0] as 'missing' | 'illegal', current: (res[1] || undefined) as DeliveryState | undefined };
}
