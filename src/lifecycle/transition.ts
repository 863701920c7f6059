import type { Redis } from 'ioredis';
import type { AuditEvent } from '../audit/events.js';
import { relayAudit } from '../store/audit-relay.js';
import { bucketOf, type Keys } from '../store/keys.js';
import { TRANSITIONS, type DeliveryState } from './states.js';

/**
 * The state change itself, as a Lua function other scripts include (the engine's claim script
 * uses it too), so there is one implementation of the check, the history entry and the audit
 * event. `fields`, `nx` and `dels` are flat lists; returns {'ok'|'missing'|'illegal', current}.
 */
export const TRANSITION_LUA = `
local function apply_transition(dkey, hkey, akey, to, from, history, audit, fields, nx, dels)
  local cur = redis.call('HGET', dkey, 'state')
  if not cur then return {'missing', ''} end
  if string.find(',' .. from .. ',', ',' .. cur .. ',', 1, true) == nil then
    return {'illegal', cur}
  end
  local set = {'state', to}
  for i = 1, #fields do set[#set + 1] = fields[i] end
  redis.call('HSET', dkey, unpack(set))
  for i = 1, #nx, 2 do redis.call('HSETNX', dkey, nx[i], nx[i + 1]) end
  if #dels > 0 then redis.call('HDEL', dkey, unpack(dels)) end
  local h = cjson.decode(history)
  h['from'] = cur
  redis.call('RPUSH', hkey, cjson.encode(h))
  if audit ~= '' then
    local a = cjson.decode(audit)
    a['data']['from'] = cur
    redis.call('XADD', akey, '*', 'e', cjson.encode(a))
  end
  return {'ok', cur}
end
`;

/**
 * Lua shared by scripts that take counted lists and extra writes (ScriptOps, by phase) in ARGV,
 * as `encodeOps` lays them out: set `i` to the first list's index, then `list(step)` reads one
 * counted list into a table, or `span(step)` gives its first and last index in ARGV; `read_ops()`
 * reads the ops, `run(ops, phase)` runs one phase's. An op is kept as indexes into ARGV and run
 * with `unpack(ARGV, from, to)`: a hot script (the attempt's record) spent about a sixth of its
 * Redis time copying its ~70 arguments into tables (docs/performance.md, tenth step).
 */
export const ARGS_LUA = `
local i = 1
local function list(step)
  local n = tonumber(ARGV[i])
  local out = {}
  for j = 1, n * step do out[j] = ARGV[i + j] end
  i = i + 1 + n * step
  return out
end
local function span(step)
  local a = i + 1
  i = a + tonumber(ARGV[i]) * step
  return a, i - 1
end
local function read_ops()
  local ops = {b = {}, a = {}, y = {}, n = {}}
  local nops = tonumber(ARGV[i])
  i = i + 1
  for _ = 1, nops do
    local t = ops[ARGV[i]]
    local na = tonumber(ARGV[i + 2])
    t[#t + 1] = i + 3
    t[#t + 1] = tonumber(ARGV[i + 1])
    t[#t + 1] = na
    i = i + 4 + na
  end
  return ops
end
local function run(ops, phase)
  local t = ops[phase]
  for j = 1, #t, 3 do
    local s = t[j]
    redis.call(ARGV[s], KEYS[t[j + 1]], unpack(ARGV, s + 1, s + t[j + 2]))
  end
end
`;

/**
 * Applies one state change atomically: checks the current state against the transitions table,
 * sets the new state and fields, appends to the history and to the audit stream, all in one
 * script, so concurrent workers, callbacks and operators cannot interleave. Callers may add
 * commands of their own (an attempt log, indexes) that must land in the same atomic step.
 */
const SCRIPT = `${TRANSITION_LUA}${ARGS_LUA}
i = 5
local fields = list(2)
local nx = list(2)
local dels = list(1)
local ops = read_ops()
run(ops, 'b')
local res = apply_transition(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], fields, nx, dels)
if res[1] == 'ok' then run(ops, 'y') else run(ops, 'n') end
run(ops, 'a')
if ARGV[i] == '1' then res[3] = redis.call('HGETALL', KEYS[1]) end
return res
`;

export type TransitionResult = { ok: true; from: DeliveryState } | { ok: false; reason: 'missing' | 'illegal'; current?: DeliveryState };

/** A transition's result with the delivery hash as the same atomic step left it (`read: true`). */
export type TransitionReadResult = TransitionResult & { hash: Record<string, string> };

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

/** One Redis write command on one key, run inside a transition's script. */
export interface ScriptOp {
  cmd: string;
  key: string;
  args: (string | number)[];
}

/** Writes that share the transition's atomic step, by when they run. */
export interface TransitionExtras {
  /** Before the state check, whatever its outcome (an attempt's log stands even if the state moved on). */
  before?: ScriptOp[];
  /** Only if the transition was applied. */
  ifApplied?: ScriptOp[];
  /** Only if it was refused (or the delivery is missing). */
  ifRefused?: ScriptOp[];
  /** After, whatever the outcome. */
  after?: ScriptOp[];
}

/**
 * Lays out extra writes for ARGS_LUA's `read_ops`: their count, then per op its phase (b before,
 * y if applied, n if refused, a after), key index, argument count, command and arguments. Keys
 * not in `keyList` yet are appended to it (the script's KEYS).
 */
export function encodeOps(keyList: string[], x?: TransitionExtras): string[] {
  const keyIndex = new Map(keyList.map((key, i) => [key, i + 1]));
  const ops: string[] = [];
  let nops = 0;
  const add = (phase: string, list?: ScriptOp[]) => {
    for (const op of list ?? []) {
      let ix = keyIndex.get(op.key);
      if (ix === undefined) {
        keyList.push(op.key);
        ix = keyList.length;
        keyIndex.set(op.key, ix);
      }
      ops.push(phase, String(ix), String(op.args.length), op.cmd, ...op.args.map(String));
      nops++;
    }
  };
  add('b', x?.before);
  add('y', x?.ifApplied);
  add('n', x?.ifRefused);
  add('a', x?.after);
  return [String(nops), ...ops];
}

export function allowedFrom(to: DeliveryState): DeliveryState[] {
  return (Object.keys(TRANSITIONS) as DeliveryState[]).filter((s) => TRANSITIONS[s].includes(to));
}

type WithTransition = Redis & { fenliuTransition2?: (...args: string[]) => Promise<unknown> };

/** The script as a defined command: EVALSHA on the hot path, EVAL only when Redis lacks the script (ioredis retries on NOSCRIPT). */
function runTransition(redis: Redis, numberOfKeys: number, ...args: string[]): Promise<unknown> {
  const r = redis as WithTransition;
  // Keys vary with the extra writes, so the key count travels with each call.
  if (!r.fenliuTransition2) r.defineCommand('fenliuTransition2', { lua: SCRIPT });
  return r.fenliuTransition2!(String(numberOfKeys), ...args);
}

/** The history entry and audit event of a transition, as the script completes them (it adds `from`). */
export function transitionDocs(r: TransitionRequest, at: string): { history: string; audit: string } {
  const history = JSON.stringify({ at, to: r.to, source: r.source, note: r.note, eventId: r.eventId });
  const audit = r.audit
    ? JSON.stringify({ type: 'delivery.state', at, deliveryId: r.deliveryId, ...r.audit, data: { to: r.to, source: r.source, note: r.note, eventId: r.eventId, ...(r.audit.data ?? {}) } })
    : '';
  return { history, audit };
}

export function transition(redis: Redis, k: Keys, prefix: string, r: TransitionRequest, x: TransitionExtras & { read: true }): Promise<TransitionReadResult>;
export function transition(redis: Redis, k: Keys, prefix: string, r: TransitionRequest, x?: TransitionExtras): Promise<TransitionResult>;
export async function transition(redis: Redis, k: Keys, prefix: string, r: TransitionRequest, x?: TransitionExtras & { read?: boolean }): Promise<TransitionResult | TransitionReadResult> {
  const at = r.at ?? new Date().toISOString();
  const from = (r.from ?? allowedFrom(r.to)).filter((s) => TRANSITIONS[s].includes(r.to));
  const set: string[] = ['updatedAt', at];
  for (const [f, v] of Object.entries(r.set ?? {})) if (v !== undefined) set.push(f, String(v));
  const nx: string[] = [];
  for (const [f, v] of Object.entries(r.setIfAbsent ?? {})) if (v !== undefined) nx.push(f, String(v));
  const unset = r.unset ?? [];
  const { history, audit } = transitionDocs(r, at);
  // Every key is in the delivery's bucket (one slot): its audit stream, and the extras' index keys.
  const b = bucketOf(r.deliveryId);
  const keyList = [k.delivery(r.deliveryId), k.history(r.deliveryId), k.audit(b)];
  const ops = encodeOps(keyList, x);
  const res = (await runTransition(
    redis,
    keyList.length,
    ...keyList,
    r.to,
    from.join(','),
    history,
    audit,
    String(set.length / 2),
    ...set,
    String(nx.length / 2),
    ...nx,
    String(unset.length),
    ...unset,
    ...ops,
    x?.read ? '1' : '0',
  )) as [string, string, string[]?];
  // Events the script (or an extra op) appended go on to the archiver's stream, without holding
  // up the caller (what follows a transition is often timed); readers relay first, and the
  // lifecycle sweep relays whatever a crash left.
  if ((audit && res[0] === 'ok') || ops.includes('XADD')) void relayAudit(redis, prefix, b).catch(() => 0);
  const out: TransitionResult =
    res[0] === 'ok' ? { ok: true, from: res[1] as DeliveryState } : { ok: false, reason: res[0] as 'missing' | 'illegal', current: (res[1] || undefined) as DeliveryState | undefined };
  if (!x?.read) return out;
  return { ...out, hash: pairs(res[2] ?? []) };
}

export function pairs(flat: string[]): Record<string, string> {
  const h: Record<string, string> = {};
  for (let i = 0; i < flat.length; i += 2) h[flat[i]] = flat[i + 1];
  return h;
}
