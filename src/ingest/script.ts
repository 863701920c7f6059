/**
 * The batch write of ingest, as one Lua script: all alerts of one event-loop turn in one call.
 * Key names come from src/store/keys.ts through the arguments, so the script names no key itself.
 * Every key of one call is in one key-layout bucket (one slot; the writer calls it per bucket),
 * and KEYS[1], the bucket's outbox, routes the call on Redis Cluster (docs/scaling.md).
 *
 * KEYS: outbox (delivery ids whose BullMQ job is still to be added, scored with the alert's time).
 * ARGV: auditStream, slaDue, alertsIndex, auditField, alertCount, then per alert:
 *   idemKey, claim ("<alertId> <bodyHash>"), alertId, alertKey, alertJson, recordRest, score, bySourceIndex,
 *   deliveryCount, per delivery: [deliveryId, deliveryKey, fieldCount, field, value, ..., historyKey,
 *   historyEntry, slaDueAt or ''],
 *   setCount, per set: [key, value, ttlMs],
 *   auditCount, per event: [eventJson, ''] or [eventRest, dataRest] for an event whose data holds the alert.
 * The alert's JSON travels once and is spliced into the record and into such events here (the
 * "rest" parts are JSON objects without that member): it is most of the bytes of an alert.
 *
 * Redis does not roll a script back. Out of memory (noeviction) refuses its first write, so
 * nothing is written; a later runtime error (only a key of the wrong type, i.e. foreign data
 * under fenliu's prefix) would leave part of a batch written and its request answered 503.
 * Returns, per alert, '' when it was written, or the claim that already held its idempotency key
 * (a copy stored first), in which case nothing of that alert is written.
 */
export const INGEST_SCRIPT = `
local audit, slaDue, alerts, field = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local n = tonumber(ARGV[5])
local i = 6
local out = {}
-- Writes to the same key for the whole batch are gathered and made once at the end:
-- one MSET, one ZADD per index, instead of one call per alert.
local mset, byScore, sla, bySourceKeys, outbox = {}, {}, {}, {}, {}
local bySourceMembers = {}
-- The members of a JSON object after one spliced in front: '{"a":1}' -> ',"a":1}', '{}' -> '}'.
local function rest(json)
  if json == '{}' then return '}' end
  return ',' .. string.sub(json, 2)
end
local function push(t, a, b)
  t[#t + 1] = a
  t[#t + 1] = b
end
for a = 1, n do
  local idemKey, claim, alertId, alertKey, alert, score, bySource = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 6], ARGV[i + 7]
  local nd = tonumber(ARGV[i + 8])
  local held = redis.call('GET', idemKey)
  local write = not held
  if write then
    push(mset, idemKey, claim)
    push(mset, alertKey, '{"alert":' .. alert .. rest(ARGV[i + 5]))
    push(byScore, score, alertId)
    if not bySourceMembers[bySource] then
      bySourceMembers[bySource] = {}
      bySourceKeys[#bySourceKeys + 1] = bySource
    end
    push(bySourceMembers[bySource], score, alertId)
  end
  i = i + 9
  for d = 1, nd do
    local id, key, nf = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
    local h = i + 3 + 2 * nf
    if write then
      redis.call('HSET', key, unpack(ARGV, i + 3, h - 1))
      redis.call('RPUSH', ARGV[h], ARGV[h + 1])
      if ARGV[h + 2] ~= '' then push(sla, ARGV[h + 2], id) end
      push(outbox, score, id)
    end
    i = h + 3
  end
  local ns = tonumber(ARGV[i])
  i = i + 1
  for s = 1, ns do
    if write then redis.call('SET', ARGV[i], ARGV[i + 1], 'PX', ARGV[i + 2]) end
    i = i + 3
  end
  local ne = tonumber(ARGV[i])
  i = i + 1
  for e = 1, ne do
    if write then
      local ev = ARGV[i]
      local data = ARGV[i + 1]
      if data ~= '' then
        ev = '{"data":{"alert":' .. alert .. rest(data) .. rest(ev)
      end
      redis.call('XADD', audit, '*', field, ev)
    end
    i = i + 2
  end
  out[a] = held or ''
end
-- unpack puts every element on Lua's stack, whose size is limited: at most 1000 at a time.
local function each(cmd, key, t)
  for s = 1, #t, 1000 do
    if key then redis.call(cmd, key, unpack(t, s, math.min(s + 999, #t)))
    else redis.call(cmd, unpack(t, s, math.min(s + 999, #t))) end
  end
end
each('MSET', nil, mset)
each('ZADD', alerts, byScore)
for _, k in ipairs(bySourceKeys) do each('ZADD', k, bySourceMembers[k]) end
each('ZADD', slaDue, sla)
each('ZADD', KEYS[1], outbox)
return out
`;
