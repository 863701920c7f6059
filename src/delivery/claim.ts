import type { Redis } from 'ioredis';
import { pairs, TRANSITION_LUA, transitionDocs } from '../lifecycle/transition.js';
import { bucketOf, type Keys } from '../store/keys.js';
import type { AlertRecord } from '../store/records.js';

/**
 * The start of an attempt in one round trip: reads the delivery, checks that the platform's
 * circuit is closed, reads the alert and moves queued → sending, atomically. Anything unusual
 * (circuit not closed, alert missing, not a first delivery) returns early without a change, and
 * the engine takes the slow path for it. Every key of the script is in the delivery's bucket (one
 * slot, src/store/keys.ts); the platform's circuit is not, so it is read just before (a circuit
 * that opens in between lets this one attempt through, as one that opens during it does).
 */
const SCRIPT = `${TRANSITION_LUA}
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return {'missing'} end
local state, alertId
for i = 1, #h, 2 do
  if h[i] == 'state' then state = h[i + 1] elseif h[i] == 'alertId' then alertId = h[i + 1] end
end
if ARGV[1] ~= '1' or (state ~= 'queued' and state ~= 'sending') then return {'skip', h} end
if ARGV[2] == '1' then return {'circuit', h} end
if alertId ~= ARGV[3] then return {'other-alert', h} end
local rec = redis.call('GET', KEYS[4])
if not rec then return {'no-alert', h} end
if state == 'queued' then
  local t = apply_transition(KEYS[1], KEYS[2], KEYS[3], 'sending', 'queued', ARGV[5], '', {'updatedAt', ARGV[4]}, {}, {})
  if t[1] ~= 'ok' then return {'skip', h} end
end
return {'ok', h, rec, state}
`;

export type Claim =
  | { status: 'missing' }
  /** Not a first delivery in a sendable state: nothing was changed. */
  | { status: 'skip' | 'circuit' | 'other-alert' | 'no-alert'; hash: Record<string, string> }
  /** `from` is the state before: queued (now sending) or sending (a re-run after a crash). */
  | { status: 'ok'; hash: Record<string, string>; rec: AlertRecord; from: 'queued' | 'sending'; at: string };

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
  if (!r.fenliuClaim) r.defineCommand('fenliuClaim', { numberOfKeys: 4, lua: SCRIPT });
  const open = c.circuitKey ? await redis.hexists(c.circuitKey, 'openedAt') : 0;
  const at = new Date().toISOString();
  const { history } = transitionDocs({ deliveryId: c.deliveryId, to: 'sending', source: 'engine' }, at);
  const res = (await r.fenliuClaim!(
    k.delivery(c.deliveryId),
    k.history(c.deliveryId),
    k.audit(bucketOf(c.deliveryId)),
    // A job naming an alert of another bucket cannot name this delivery's alert: the script
    // answers other-alert before reading it, and the key stays in the delivery's slot.
    bucketOf(c.alertId) === bucketOf(c.deliveryId) ? k.alert(c.alertId) : k.alert(c.deliveryId),
    c.deliver ? '1' : '0',
    open ? '1' : '0',
    c.alertId,
    at,
    history,
  )) as [string, string[]?, string?, string?];
  const status = res[0] as Claim['status'];
  if (status === 'missing') return { status };
  const hash = pairs(res[1] ?? []);
  if (status !== 'ok') return { status, hash };
  return { status, hash, rec: JSON.parse(res[2]!) as AlertRecord, from: res[3] as 'queued' | 'sending', at };
}
