import type { Redis } from 'ioredis';
import { pairs } from '../lifecycle/transition.js';
import { bucketOf, isStandalone, type Keys } from '../store/keys.js';
import type { AlertRecord } from '../store/records.js';

/**
 * The start of attempts in one round trip: per delivery, reads it, checks that the platform's
 * circuit is closed, reads the alert and moves queued → sending, atomically. Anything unusual
 * (circuit not closed, alert missing, not a first delivery) returns early for that delivery
 * without a change, and the engine takes the slow path for it. The deliveries of one call are
 * the jobs of one take (`claimMany`: one platform, one group of buckets, so one slot on Cluster);
 * every key of a delivery is in its bucket (src/store/keys.ts). The platform's circuit is not: on
 * a standalone Redis the script reads it too (the last key); on Cluster it is read just before
 * (a circuit that opens in between lets these attempts through, as one that opens during them
 * does).
 *
 * The move is the transitions table's queued → sending (always legal); the state was read in
 * this script, so the history entry arrives complete and Redis does no JSON work.
 *
 * KEYS: per delivery: delivery, history, alert; then the circuit, standalone only.
 * ARGV: count, circuit open (1|0: read beside the script, or not to be read), history entry,
 *   updatedAt, then per delivery: deliver (1|0), alert id.
 * Returns per delivery {status, hash[, alert record, state before]}.
 */
const SCRIPT = `
local n = tonumber(ARGV[1])
local open = ARGV[2] == '1'
if #KEYS > n * 3 and not open then open = redis.call('HEXISTS', KEYS[n * 3 + 1], 'openedAt') == 1 end
local out = {}
for j = 0, n - 1 do
  local a = 5 + j * 2
  local h = redis.call('HGETALL', KEYS[j * 3 + 1])
  if #h == 0 then
    out[j + 1] = {'missing'}
  else
    local state, alertId
    for i = 1, #h, 2 do
      if h[i] == 'state' then state = h[i + 1] elseif h[i] == 'alertId' then alertId = h[i + 1] end
    end
    if ARGV[a] ~= '1' or (state ~= 'queued' and state ~= 'sending') then out[j + 1] = {'skip', h}
    elseif open then out[j + 1] = {'circuit', h}
    elseif alertId ~= ARGV[a + 1] then out[j + 1] = {'other-alert', h}
    else
      local rec = redis.call('GET', KEYS[j * 3 + 3])
      if not rec then out[j + 1] = {'no-alert', h}
      else
        if state == 'queued' then
          redis.call('HSET', KEYS[j * 3 + 1], 'state', 'sending', 'updatedAt', ARGV[4])
          redis.call('RPUSH', KEYS[j * 3 + 2], ARGV[3])
        end
        out[j + 1] = {'ok', h, rec, state}
      end
    end
  end
end
return out
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
}

/** One delivery: `claimMany` with one request; `circuitKey` absent when the caller already holds an admission. */
export async function claim(redis: Redis, k: Keys, prefix: string, c: ClaimRequest & { circuitKey?: string }): Promise<Claim> {
  return (await claimMany(redis, k, prefix, [c], c.circuitKey))[0];
}

/**
 * Claims the deliveries of one take in one call (see SCRIPT). All must be in one slot on Cluster
 * (one bucket); `circuitKey` is the platform's circuit to check, absent when the caller already
 * holds an admission.
 */
export async function claimMany(redis: Redis, k: Keys, prefix: string, reqs: ClaimRequest[], circuitKey?: string): Promise<Claim[]> {
  const r = redis as WithClaim;
  // Keys vary (count of deliveries; the circuit is a key only on a standalone Redis), so the key count travels with each call.
  if (!r.fenliuClaim) r.defineCommand('fenliuClaim', { lua: SCRIPT });
  const inScript = circuitKey !== undefined && isStandalone(prefix);
  const open = circuitKey && !inScript && (await redis.hexists(circuitKey, 'openedAt')) === 1 ? '1' : '0';
  const at = new Date().toISOString();
  const history = JSON.stringify({ at, to: 'sending', source: 'engine', from: 'queued' });
  const keyList: string[] = [];
  const args: string[] = [String(reqs.length), open, history, at];
  for (const c of reqs) {
    // A job naming an alert of another bucket cannot name this delivery's alert: the script
    // answers other-alert before reading it, and the key stays in the delivery's slot.
    keyList.push(k.delivery(c.deliveryId), k.history(c.deliveryId), bucketOf(c.alertId) === bucketOf(c.deliveryId) ? k.alert(c.alertId) : k.alert(c.deliveryId));
    args.push(c.deliver ? '1' : '0', c.alertId);
  }
  if (inScript) keyList.push(circuitKey!);
  const res = (await r.fenliuClaim!(String(keyList.length), ...keyList, ...args)) as [string, string[]?, string?, string?][];
  return res.map((x): Claim => {
    const status = x[0] as Claim['status'];
    if (status === 'missing') return { status };
    const hash = pairs(x[1] ?? []);
    if (status !== 'ok') return { status, hash };
    return { status, hash, rec: JSON.parse(x[2]!) as AlertRecord, from: x[3] as 'queued' | 'sending', at };
  });
}
