import { AUDIT_BODY_FIELD_PREFIX, AUDIT_SEALED_FIELD } from '../audit/events.js';

/** Lua helpers both scripts splice JSON with. */
const LUA_HELPERS = `-- The members of a JSON object after one spliced in front: '{"a":1}' -> ',"a":1}', '{}' -> '}'.
local function rest(json)
  if json == '{}' then return '}' end
  return ',' .. string.sub(json, 2)
end
local function push(t, a, b)
  t[#t + 1] = a
  t[#t + 1] = b
end
`;

/**
 * Lua both scripts write an alert's deliveries and events with (needs `push` and `field` defined
 * before it; jobs are due at `now`, Redis's clock): from ARGV[i], deliveryCount, per delivery
 * [...], eventCount, per event [...] (layout in MATERIALISE_SCRIPT's comment). Writes only when `alert` (its JSON) is given; `exact`:
 * that JSON is the text the event's placeholder hashes, so a sealed event may hold it as its body.
 * Returns the index after the alert's arguments.
 */
const LUA_WRITE_ALERT = `local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
-- ZADDs gathered per key, made once at the end of the script
local zsets, zkeys = {}, {}
local function zadd(key, score, member)
  if not zsets[key] then
    zsets[key] = {}
    zkeys[#zkeys + 1] = key
  end
  push(zsets[key], score, member)
end
local function writeAlert(i, alert, exact, audit, slaDue)
  local nd = tonumber(ARGV[i])
  i = i + 1
  for d = 1, nd do
    local did, key, nf = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
    local h = i + 3 + 2 * nf
    if alert then
      redis.call('HSET', key, unpack(ARGV, i + 3, h - 1))
      redis.call('RPUSH', ARGV[h], ARGV[h + 1])
      if ARGV[h + 2] ~= '' then zadd(slaDue, ARGV[h + 2], did) end
      zadd(ARGV[h + 3], now, did)
    end
    i = h + 4
  end
  local ne = tonumber(ARGV[i])
  i = i + 1
  for v = 1, ne do
    if alert then
      local ev, holds = ARGV[i], ARGV[i + 1]
      if holds == '' then redis.call('XADD', audit, '*', field, ev)
      elseif exact and holds == 'sealed' then redis.call('XADD', audit, '*', '${AUDIT_SEALED_FIELD}', ev, '${AUDIT_BODY_FIELD_PREFIX}data.alert', alert)
      -- whole: the alert where its placeholder ('{"data":{"alert":{"$body":"<hash>"}') was
      else redis.call('XADD', audit, '*', field, string.sub(ev, 1, 17) .. alert .. string.sub(ev, string.find(ev, '"}', 28, true) + 2)) end
    end
    i = i + 2
  end
  return i
end
`;

/**
 * The batch write of ingest, as one Lua script: the alerts of one event-loop turn in one call per
 * group of key-layout buckets (`k.groups`: all of them on a single Redis, one per call on Redis
 * Cluster, where KEYS[1], a log of the group, routes the call; docs/scaling.md). Key names come
 * from src/store/keys.ts through the arguments, so the script names no key itself.
 *
 * Per alert it writes what a 202 promises and nothing more (docs/reliability.md): the idempotency
 * claim, the record and the two indexes, and its item in one XADD per bucket onto the bucket's
 * ingest log (src/store/ingest-log.ts), which the dispatcher turns into deliveries, timers, audit
 * events and jobs (src/ingest/dispatcher.ts). The alert's log key (`k.alertLog`) names that entry.
 *
 * Write-through (`engine.ingestWriteThrough`, auditField given): no log entry and no log key; each
 * alert written also gets, in this same call, what the dispatcher would write for it (the
 * materialise script's per-alert part, same argument layout), its events holding the alert from
 * ARGV, and one PUBLISH per call on the work channel (the platforms' ids, space-separated) wakes
 * the engines of every process (src/delivery/wake.ts).
 *
 * KEYS: a log of the group.
 * ARGV: bucketCount, repeatWindowMs, auditField ('' = log-first), workChannel, platformIds, then
 *   per bucket: alertsIndex, ingestLog, alertCount, auditStream, slaDue, then per alert: idemKey,
 *   claim ("<alertId> <bodyHash>"), alertId, alertKey, alertJson, recordRest, score,
 *   bySourceIndex, extra (LogExtra JSON; '' write-through), placeKey, phoneKey, logKey ('' write-
 *   through), then write-through only: deliveryCount, per delivery [...], eventCount, per event
 *   [...], as in MATERIALISE_SCRIPT.
 * The alert's JSON travels once and is spliced into the record here (recordRest is the record's
 * JSON without it); the log item is `{"r":<recordRest>,"x":<extra>}`.
 *
 * placeKey and phoneKey ('' = none) are the alert's repeat-call keys (src/lifecycle/repeat.ts),
 * given when this call may write them (a single Redis): an alert whose keys are both free claims
 * them (`SET NX PX window`) with its record, atomically, so the common case of a new case needs no
 * claim call of its own. When either is held, nothing of the alert is written and its answer is
 * '!': the caller decides the match with the repeat matcher and submits the alert again without keys.
 *
 * Redis does not roll a script back. Out of memory (noeviction) refuses its first write, so
 * nothing is written; a later runtime error (only a key of the wrong type, i.e. foreign data
 * under fenliu's prefix) would leave part of a batch written and its request answered 503.
 * Returns, per alert in argument order, '' when it was written, the claim that already held its
 * idempotency key (a copy stored first), or '!' (a repeat key is held); in both of these cases
 * nothing of that alert is written.
 */
export const INGEST_SCRIPT = `
local out = {}
-- Writes to the same key are gathered and made once: one MSET for the batch, one ZADD per index
-- key and one XADD per log, instead of one call per alert.
local mset = {}
${LUA_HELPERS}-- unpack puts every element on Lua's stack, whose size is limited: at most 1000 at a time.
local function each(cmd, key, t)
  for s = 1, #t, 1000 do
    if key then redis.call(cmd, key, unpack(t, s, math.min(s + 999, #t)))
    else redis.call(cmd, unpack(t, s, math.min(s + 999, #t))) end
  end
end
local px, field, channel, platforms = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local inline = field ~= ''
local wrote = false
${LUA_WRITE_ALERT}local i = 6
for b = 1, tonumber(ARGV[1]) do
  local alerts, log, n, audit, slaDue = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3], ARGV[i + 4]
  i = i + 5
  local byScore, bySourceKeys, bySourceMembers, items, recs = {}, {}, {}, {}, {}
  for a = 1, n do
    local idemKey, alertId, alertKey, recordRest, score, bySource = ARGV[i], ARGV[i + 2], ARGV[i + 3], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
    local held = redis.call('GET', idemKey)
    local place, phone = ARGV[i + 9], ARGV[i + 10]
    if not held and place ~= '' then
      if not redis.call('SET', place, alertId, 'NX', 'PX', px) then
        held = '!'
      elseif phone ~= '' and not redis.call('SET', phone, alertId, 'NX', 'PX', px) then
        redis.call('DEL', place)
        held = '!'
      end
    end
    if not held then
      wrote = true
      push(mset, idemKey, ARGV[i + 1])
      push(byScore, score, alertId)
      if not bySourceMembers[bySource] then
        bySourceMembers[bySource] = {}
        bySourceKeys[#bySourceKeys + 1] = bySource
      end
      push(bySourceMembers[bySource], score, alertId)
      if inline then push(mset, alertKey, '{"alert":' .. ARGV[i + 4] .. rest(recordRest))
      else
        recs[#recs + 1] = i
        push(items, alertId, '{"r":' .. recordRest .. ',"x":' .. ARGV[i + 8] .. '}')
      end
    end
    out[#out + 1] = held or ''
    local alert = ARGV[i + 4]
    i = i + 12
    -- write-through: what the dispatcher would write for it, now (the alert as it came: exact)
    if inline then i = writeAlert(i, not held and alert, true, audit, slaDue) end
  end
  -- One entry per bucket and call (500 alerts at most per entry: the stack limit above).
  for s = 1, #items, 1000 do
    local id = redis.call('XADD', log, '*', unpack(items, s, math.min(s + 999, #items)))
    for r = (s + 1) / 2, math.min((s + 999) / 2, #recs) do
      local at = recs[r]
      push(mset, ARGV[at + 3], '{"alert":' .. ARGV[at + 4] .. rest(ARGV[at + 5]))
      push(mset, ARGV[at + 11], id)
    end
  end
  each('ZADD', alerts, byScore)
  for _, k in ipairs(bySourceKeys) do each('ZADD', k, bySourceMembers[k]) end
end
each('MSET', nil, mset)
for _, k in ipairs(zkeys) do each('ZADD', k, zsets[k]) end
-- the engines of every process wake at once (src/delivery/wake.ts), one message per call
if inline and wrote then redis.call('PUBLISH', channel, platforms) end
return out
`;

/**
 * Materialises ingest log entries (src/store/ingest-log.ts), each at most once: an entry still in
 * its log is written out and deleted (XACK + XDEL) in this one script, so a second run for it (a
 * dispatcher that crashed before its XACK, an on-demand call racing the dispatcher) finds it gone
 * and writes nothing. Per alert: its deliveries (hash, history, SLA timer, job in its platform's
 * work set, src/delivery/work.ts: a plain first delivery, job id = delivery id) and its
 * audit events, where an event holding the alert gets the alert's JSON cut from the head of its
 * record (it is most of an alert's bytes and is never sent back from Redis), and the alert's log
 * key goes (the entry it names is gone). A record of an earlier version names the entry itself
 * (`log`) and loses that field. An alert whose record is gone (retention) is skipped.
 *
 * KEYS: a log of the group (routes the call on Redis Cluster).
 * ARGV: group, auditField, entryCount, then per entry: log, entryId, auditStream, slaDue,
 *   alertCount, then per alert: alertKey, logKey, alertBytes, deliveryCount, per delivery:
 *   [deliveryId, deliveryKey, fieldCount, field, value, ..., historyKey, historyEntry, slaDueAt or '', workSet],
 *   eventCount, per event: [eventJson, ''], or [sealedJson, 'sealed' | 'whole'] for an event whose
 *   data holds the alert: the event sealed (src/audit/format.ts `sealForStream`), `data.alert`
 *   first and its placeholder the record's bodyHash. 'sealed': written with the alert's text cut
 *   from the record as its body (the text that hash was taken from); 'whole' (the caller's choice,
 *   src/audit/stream-format.ts), and for a record whose alert cannot be cut as it was written (an
 *   earlier version's): the event whole, the alert where its placeholder was.
 * Jobs are due at once (the time of this call, by Redis's clock).
 * Returns per entry 1 when this call materialised it, 0 when it was gone already.
 */
export const MATERIALISE_SCRIPT = `
local group, field = ARGV[1], ARGV[2]
local out = {}
${LUA_HELPERS}${LUA_WRITE_ALERT}local i = 4
for e = 1, tonumber(ARGV[3]) do
  local log, id, audit, slaDue, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4])
  i = i + 5
  local live = #redis.call('XRANGE', log, id, id) > 0
  for a = 1, n do
    local rec = live and redis.call('GET', ARGV[i])
    local bytes = tonumber(ARGV[i + 2])
    local alert, exact
    if rec then
      redis.call('DEL', ARGV[i + 1])
      if string.sub(rec, 1, 9) == '{"alert":' and string.sub(rec, 10 + bytes, 10 + bytes) == ',' then
        alert = string.sub(rec, 10, 9 + bytes)
        exact = true
        -- A record of an earlier version holds the log id itself: dropped, the record goes back
        -- to the allocator size class it had before the log existed (~256 B).
        if string.sub(rec, 10 + bytes, 17 + bytes) == ',"log":"' then
          local q = string.find(rec, '"', 18 + bytes, true)
          if q then redis.call('SET', ARGV[i], '{"alert":' .. alert .. string.sub(rec, q + 1), 'KEEPTTL') end
        end
      else
        alert = cjson.encode(cjson.decode(rec).alert)
      end
    end
    i = writeAlert(i + 3, alert, exact, audit, slaDue)
  end
  -- No group yet (no dispatcher has started): nothing is pending, nothing to acknowledge.
  redis.pcall('XACK', log, group, id)
  if live then redis.call('XDEL', log, id) end
  out[e] = live and 1 or 0
end
for _, k in ipairs(zkeys) do
  local t = zsets[k]
  for s = 1, #t, 1000 do redis.call('ZADD', k, unpack(t, s, math.min(s + 999, #t))) end
end
return out
`;
