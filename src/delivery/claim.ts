import type { Redis } from 'ioredis';
import { pairs } from '../lifecycle/transition.js';
import { bucketOf, isStandalone, type Keys } from '../store/keys.js';
import type { AlertRecord } from '../store/records.js';

/**
 * The start of an attempt in one round trip: reads the delivery, checks that the platform's
 * circuit is closed, reads the alert and moves queued → sending, atomically. Anything unusual
 * (circuit not closed, alert missing, not a first delivery) returns early without a change, and
 * the engine takes the slow path for it. Every key of the script is in the delivery's bucket (one
 * slot, src/store/keys.ts). The platform's circuit is not: on a standalone Redis the script reads
 * it too (KEYS[4]); on Cluster it is read just before (a circuit that opens in between lets this
 * one attempt through, as one that opens during it does). Either way the answer says whether the
 * circuit holds anything (a failure count), so a success with nothing to reset costs no write.
 *
 * The move is the transitions table's queued → sending (always legal); the state was read in
 * this script, so the history entry arrives complete and Redis does no JSON work.
 */
const SCRIPT = `
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return {'missing'} end
local state, alertId
for i = 1, #h, 2 do
  if h[i] == 'state' then state = h[i + 1] elseif h[i] == 'alertId' then alertId = h[i + 1] end
end
if ARGV[1] ~= '1' or (state ~= 'queued' and state ~= 'sending') then return {'skip', h} end
local dirty = ARGV[2]
if dirty == '2' then return {'circuit', h} end
if KEYS[4] then
  local c = redis.call('HMGET', KEYS[4], 'openedAt', 'failures')
  if c[1] then return {'circuit', h} end
  if c[2] then dirty = '1' end
end
if alertId ~= ARGV[3] then return {'other-alert', h} end
local rec = redis.call('GET', KEYS[3])
if not rec then return {'no-alert', h} end
if state == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'sending', 'updatedAt', ARGV[4])
  redis.call('RPUSH', KEYS[2], ARGV[5])
end
return {'ok', h, rec, state, dirty}
`;

export type Claim =
  | { status: 'missing' }
  /** Not a first delivery in a sendable state: nothing was changed. */
  | { status: 'skip' | 'circuit' | 'other-alert' | 'no-alert'; hash: Record<string, string> }
  /** `from` is the state before: queued (now sending) or sending (a re-run after a crash). */
  | { status: 'ok'; hash: Record<string, string>; rec: AlertRecord; from: 'queued' | 'sending'; at: string; circuitDirty: boolean };

type WithClaim = Redis & { fenliuClaim?: (...args: string[]) => Promise<unknown> };

export interface ClaimRequest {
  deliveryId: string;
  /** Only a first delivery (job kind `deliver`) is claimed; for others the hash is returned. */
  deliver: boolean;
  /** The alert the job names; the script reads it only if the delivery agrees. */
  alertId: string;
  /** The circuit hash to check; absent when the caller already holds an admission. */
  circuitKey?: string;
}

export async function claim(redis: Redis, k: Keys, prefix: string, c: ClaimRequest): Promise<Claim> {
  const r = redis as WithClaim;
  // Keys vary (the circuit is a key only on a standalone Redis), so the key count travels with each call.
  if (!r.fenliuClaim) r.defineCommand('fenliuClaim', { lua: SCRIPT });
  const inScript = c.circuitKey !== undefined && isStandalone(prefix);
  // 0: closed and clean, 1: failures counted (or not known: the caller holds an admission), 2: open.
  let circuit = c.circuitKey ? '0' : '1';
  if (c.circuitKey && !inScript) {
    const [openedAt, failures] = await redis.hmget(c.circuitKey, 'openedAt', 'failures');
    circuit = openedAt ? '2' : failures ? '1' : '0';
  }
  const at = new Date().toISOString();
  const history = JSON.stringify({ at, to: 'sending', source: 'engine', from: 'queued' });
  const keyList = [
    k.delivery(c.deliveryId),
    k.history(c.deliveryId),
    // A job naming an alert of another bucket cannot name this delivery's alert: the script
    // answers other-alert before reading it, and the key stays in the delivery's slot.
    bucketOf(c.alertId) === bucketOf(c.deliveryId) ? k.alert(c.alertId) : k.alert(c.deliveryId),
  ];
  if (inScript) keyList.push(c.circuitKey!);
  const res = (await r.fenliuClaim!(String(keyList.length), ...keyList, c.deliver ? '1' : '0', circuit, c.alertId, at, history)) as [string, string[]?, string?, string?, string?];
  const status = res[0] as Claim['status'];
  if (status === 'missing') return { status };
  const hash = pairs(res[1] ?? []);
  if (status !== 'ok') return { status, hash };
  return { status, hash, rec: JSON.parse(res[2]!) as AlertRecord, from: res[3] as 'queued' | 'sending', at, circuitDirty: res[4] === '1' };
}
