import type { Redis } from 'ioredis';
import { AUDIT_FIELD, AUDIT_SEALED_FIELD, type AuditEvent } from '../audit/events.js';
import { sealForStream } from '../audit/format.js';
import { sealedStream } from '../audit/stream-format.js';
import { ARGS_LUA, encodeOps, type ScriptOp } from '../lifecycle/transition.js';
import type { DeliveryState } from '../lifecycle/states.js';
import { relayAudit } from '../store/audit-relay.js';
import { bucketOf, type Keys } from '../store/keys.js';

/**
 * The end of an attempt in one round trip (the claim script, claim.ts, is its start): the
 * attempt log, the state change the attempt leads to with its history entry, the one audit event
 * of the attempt (`delivery.attempt`, carrying the state change's `from`/`to` when it was made),
 * and what the change implies for the indexes (poll index, SLA timer and board, dead letters),
 * all atomically. Every key is in the delivery's bucket (one slot on Redis Cluster), except the
 * platform's circuit, which only a standalone Redis lets the caller add.
 *
 * The state change is checked like every other (src/lifecycle/transition.ts), but the engine
 * knows the state it moves from (it claimed the delivery: `sending`), so the history entry and
 * the event arrive complete and Redis does no JSON work on the hot path.
 *
 * KEYS: delivery, history, audit stream, [SLA timers, SLA board,] then the keys the ops name.
 * ARGV: to, allowed from (comma list), history entry, event head, state fragment, event tail,
 *   audit field, n fields + pairs, n dels + names, SLA timer key index ('' none), overdue board
 *   key index, delivery id, n kinds + (kind, due ms, settled 0|1) triples, n bodies + (body field,
 *   body JSON) pairs, the ops (transition.ts, encodeOps).
 *
 * The event goes to the stream sealed (src/audit/format.ts `sealForStream`) where no reader of an
 * earlier version can meet it (src/audit/stream-format.ts): its bodies, the request sent above
 * all, travel beside it, so the archiver joins strings instead of parsing them. Otherwise whole.
 */
const SCRIPT = `${ARGS_LUA}
i = 8
local f0, f1 = span(2)
local d0, d1 = span(1)
local slaKey, boardKey, id = ARGV[i], ARGV[i + 1], ARGV[i + 2]
i = i + 3
local k0, k1 = span(3)
local b0, b1 = span(2)
local ops = read_ops()
run(ops, 'b')
local cur = redis.call('HMGET', KEYS[1], 'state', 'overdue')
local state, overdue = cur[1], cur[2]
local applied = state and string.find(',' .. ARGV[2] .. ',', ',' .. state .. ',', 1, true) ~= nil
if applied then
  redis.call('HSET', KEYS[1], 'state', ARGV[1], unpack(ARGV, f0, f1))
  if d1 >= d0 then redis.call('HDEL', KEYS[1], unpack(ARGV, d0, d1)) end
  redis.call('RPUSH', KEYS[2], ARGV[3])
  redis.call('XADD', KEYS[3], '*', ARGV[7], ARGV[4] .. ARGV[5] .. ARGV[6], unpack(ARGV, b0, b1))
  if slaKey ~= '' then
    local flagged = {}
    local nflags = 0
    if overdue then
      for _, f in ipairs(cjson.decode(overdue)) do flagged[f] = true nflags = nflags + 1 end
    end
    local best
    local open = {}
    for j = k0, k1, 3 do
      local kind, due = ARGV[j], tonumber(ARGV[j + 1])
      if ARGV[j + 2] == '0' then
        open[kind] = true
        if not flagged[kind] and (best == nil or due < best) then best = due end
      end
    end
    if best then redis.call('ZADD', KEYS[tonumber(slaKey)], best, id) else redis.call('ZREM', KEYS[tonumber(slaKey)], id) end
    if nflags > 0 then
      local settled = true
      for f in pairs(flagged) do if open[f] then settled = false end end
      if settled then redis.call('ZREM', KEYS[tonumber(boardKey)], id) end
    end
  end
  run(ops, 'y')
else
  redis.call('XADD', KEYS[3], '*', ARGV[7], ARGV[4] .. ARGV[6], unpack(ARGV, b0, b1))
  run(ops, 'n')
end
run(ops, 'a')
if applied then return {'ok', state} end
return {state and 'illegal' or 'missing', state or ''}
`;

/** One SLA deadline of the delivery, as the state it moves to leaves it. */
export interface SlaDeadline {
  kind: string;
  dueAt: number;
  /** Met (or moot) in the new state: neither timed nor kept on the board for it. */
  settled: boolean;
}

export interface AttemptRecordRequest {
  deliveryId: string;
  to: DeliveryState;
  from: DeliveryState[];
  at: string;
  /** The history entry, complete (its `from` is the one allowed state the engine claimed). */
  history: string;
  /** The attempt's event, without the state change; `change` is merged into its data when the change is made. It may be sealed in place (its bodies replaced by placeholders). */
  event: AuditEvent & { data: Record<string, unknown> };
  change: Record<string, unknown>;
  set?: Record<string, string | number | undefined>;
  unset?: string[];
  /**
   * The SLA timer and board after the change (src/lifecycle/service.ts, Lifecycle.after): the
   * delivery's deadlines; the script drops those already flagged (read in the same step).
   */
  sla?: SlaDeadline[];
  /** Before the state check, whatever its outcome (the attempt log stands even if the state moved on). */
  before?: ScriptOp[];
  ifApplied?: ScriptOp[];
  ifRefused?: ScriptOp[];
  after?: ScriptOp[];
}

export type AttemptRecordResult = { ok: true; from: DeliveryState } | { ok: false; reason: 'missing' | 'illegal'; current?: DeliveryState };

type WithRecord = Redis & { fenliuRecordAttempt?: (...args: string[]) => Promise<unknown> };

/** Splits an event's JSON where the state change goes: the end of its `data` object. */
function eventParts(ev: AuditEvent & { data: Record<string, unknown> }, change: Record<string, unknown>): [string, string, string] {
  if (typeof ev.type !== 'string' || ev.type === '' || Number.isNaN(Date.parse(ev.at))) throw new TypeError('audit event needs a type and an ISO `at`');
  // `data` is the event's last member, so its JSON ends with `}}`; an empty data object has no member to follow.
  const { data, ...rest } = ev;
  const json = JSON.stringify({ ...rest, data });
  const head = json.slice(0, -2);
  const frag = JSON.stringify(change).slice(1, -1);
  return [head, frag && Object.keys(data).length ? `,${frag}` : frag, '}}'];
}

export async function recordAttempt(redis: Redis, k: Keys, prefix: string, r: AttemptRecordRequest): Promise<AttemptRecordResult> {
  const fields: string[] = ['updatedAt', r.at];
  for (const [f, v] of Object.entries(r.set ?? {})) if (v !== undefined) fields.push(f, String(v));
  const unset = r.unset ?? [];
  const b = bucketOf(r.deliveryId);
  const keyList = [k.delivery(r.deliveryId), k.history(r.deliveryId), k.audit(b)];
  if (r.sla) keyList.push(k.slaDue(b), k.overdue(b));
  const ops = encodeOps(keyList, r);
  const kinds: string[] = [];
  for (const s of r.sla ?? []) kinds.push(s.kind, String(s.dueAt), s.settled ? '1' : '0');
  const sealed = sealedStream(redis, prefix);
  const { event, bodyFields } = sealed ? sealForStream(r.event) : { event: r.event, bodyFields: [] };
  const [head, frag, tail] = eventParts(event as AttemptRecordRequest['event'], r.change);
  const rr = redis as WithRecord;
  // Keys vary with the ops, so the key count travels with each call.
  if (!rr.fenliuRecordAttempt) rr.defineCommand('fenliuRecordAttempt', { lua: SCRIPT });
  const out = (await rr.fenliuRecordAttempt!(
    String(keyList.length),
    ...keyList,
    r.to,
    r.from.join(','),
    r.history,
    head,
    frag,
    tail,
    sealed ? AUDIT_SEALED_FIELD : AUDIT_FIELD,
    String(fields.length / 2),
    ...fields,
    String(unset.length),
    ...unset,
    r.sla ? '4' : '',
    r.sla ? '5' : '',
    r.deliveryId,
    String(kinds.length / 3),
    ...kinds,
    String(bodyFields.length / 2),
    ...bodyFields,
    ...ops,
  )) as [string, string];
  // A no-op on a standalone Redis, where the script wrote to the one stream.
  void relayAudit(redis, prefix, b).catch(() => 0);
  return out[0] === 'ok' ? { ok: true, from: out[1] as DeliveryState } : { ok: false, reason: out[0] as 'missing' | 'illegal', current: (out[1] || undefined) as DeliveryState | undefined };
}
