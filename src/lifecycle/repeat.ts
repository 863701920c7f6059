import { createHmac, hash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Alert } from '../../adapters/sdk.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { bucketOfKey, type Keys } from '../store/keys.js';
import { idTime } from '../store/ids.js';
import { allDeliveryIds, getAlertRecord, getDeliveries, type AlertRecord } from '../store/records.js';
import { parseDuration } from './service.js';

/** States in which a case still needs handling: a repeat call about it is an urge, not a new case. */
const OPEN = new Set(['queued', 'sending', 'delivered', 'accepted', 'in_progress', 'reopened']);

export interface RepeatKeys {
  /** Caller phone + category family (+ source, unless cross-source linking is on). */
  phone?: string;
  /** Region + address + full category (+ source, unless cross-source linking is on). */
  place: string;
}

/** Which key linked a repeat call to its case: kept on the alert record and in the audit trail. */
export type RepeatKeyName = 'place+category' | 'phone+family';

export interface RepeatMatch {
  caseId: string;
  key: RepeatKeyName;
  /** The category (place key) or category family (phone key) both alerts share. */
  on: string;
  /** Whether the case came from another source (only with `repeat.crossSource: true`). */
  crossSource: boolean;
}

/** `dispute` of `dispute.debt`: the phone key only links calls about the same kind of problem. */
export function categoryFamily(category: string): string {
  return category.split('.')[0];
}

/**
 * Links a repeat call (重复报警) to the open case it is about, within a window, by one of two keys:
 * the same place and the same category, or the same caller phone and the same category family.
 * Both keys include the source, so a call from another 110 system never links to this one's case
 * unless `crossSource` is set. Phones are compared as keyed hashes; nothing about them is stored
 * in clear for matching.
 */
export class RepeatMatcher {
  readonly windowMs: number;

  private constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly secret: string,
    window: string,
    /** Link calls from different sources (default false: a case belongs to the 110 system that sent it). */
    readonly crossSource = false,
  ) {
    this.windowMs = parseDuration(window);
  }

  /** Alerts of this process holding repeat keys whose fate (a case, or not) is not known yet. */
  private readonly inflight = new Map<string, InFlight>();
  /** Waits for another process's holder, shared by the calls waiting on it. */
  private readonly reading = new Map<string, Promise<AlertRecord | 'moved' | 'dead'>>();
  private claims: Claim[] = [];
  /** How long to wait for the record of a holder in flight in another process before taking its keys. */
  inFlightMs = 2_000;

  /** The key comes from config, or is created once per installation and shared by all processes through Redis. */
  static async create(redis: Redis, keys: Keys, prefix: string, cfg: { window: string; secret?: string; crossSource?: boolean }): Promise<RepeatMatcher> {
    let secret = cfg.secret;
    if (!secret) {
      const k = `${prefix}:repeat:secret`;
      await redis.set(k, randomBytes(32).toString('hex'), 'NX');
      secret = (await redis.get(k))!;
    }
    return new RepeatMatcher(redis, keys, secret, cfg.window, cfg.crossSource ?? false);
  }

  /** The keyed hash a repeat key is named by: HMAC-SHA256, hex, first 32 digits. */
  private mac(s: string): string {
    return (this.hmac ??= hmacSha256(this.secret))(s).slice(0, 32);
  }
  private hmac?: (s: string) => string;

  keysFor(alert: Alert): RepeatKeys {
    const t = repeatTexts(alert, this.crossSource ? '*' : alert.source.system);
    return {
      phone: t.phone !== undefined ? this.keys.repeatPhone(this.mac(t.phone)) : undefined,
      place: this.keys.repeatPlace(this.mac(t.place)),
    };
  }

  /**
   * The alert's keys when the ingest batch script may claim them with its record (they and the
   * alert's bucket are written by one call: a single Redis), else undefined. Claimed there only
   * when both are free, which makes the alert a new case at once (src/ingest/script.ts); when one
   * is held, the alert goes through `begin` as before.
   */
  fastKeys(alert: Alert, bucket: number): { place: string; phone?: string; windowMs: number } | undefined {
    const k = this.keysFor(alert);
    // A single Redis writes every bucket in one call: no need to find the keys' buckets.
    if (this.keys.groups(ANY_TWO_BUCKETS).length !== 1) {
      const buckets = new Set([bucket, bucketOfKey(k.place) ?? 0]);
      if (k.phone !== undefined) buckets.add(bucketOfKey(k.phone) ?? 0);
      if (this.keys.groups(buckets).length !== 1) return undefined;
    }
    return { place: k.place, phone: k.phone, windowMs: this.windowMs };
  }

  /**
   * After a batch write that failed for an alert given `fastKeys`: stored or not (a 503 for
   * replicas comes after the write), Redis says; not stored, its keys go (each only if it holds `id`).
   */
  async abandon(id: string, keys: { place: string; phone?: string }): Promise<void> {
    const stored = await this.redis.exists(this.keys.alert(id)).then((n) => n > 0, () => true);
    if (stored) return;
    await Promise.all([keys.place, keys.phone].flatMap((key) => (key ? [this.release(key, id)] : [])));
  }

  /**
   * Decides, atomically against every other ingest of this installation, whether the alert `id`
   * repeats an open case or opens one (docs/lifecycle.md, "Repeat calls"): claims its place key,
   * then (holding it) its phone key, each as `SET NX GET` would. Starts at once; the caller asks for the
   * match once its idempotency lookup says the alert is new, and says with `done` whether the
   * alert was stored (its claims stay) or not (they are released).
   */
  begin(alert: Alert, id: string, keys?: RepeatKeys): RepeatClaim {
    const k = keys ?? this.keysFor(alert);
    let settle!: (f: Fate) => void;
    const me: InFlight = { src: srcOf(alert), sourceId: alert.source.system, fate: new Promise<Fate>((r) => (settle = r)) };
    this.inflight.set(id, me);
    const finish = (f: Fate) => {
      if (this.inflight.get(id) === me) this.inflight.delete(id);
      settle(f);
    };
    const decided = this.decide(k, alert, id).then(
      (d) => {
        // Linked: its claims went to the case already; those waiting on it read the keys again.
        if (d.match) finish('moved');
        return d;
      },
      (err) => {
        finish('moved');
        throw err;
      },
    );
    decided.catch(() => undefined);
    return {
      match: () => decided.then((d) => d.match),
      done: (stored) =>
        decided.then(
          async (d) => {
            if (d.match) return;
            // A failed write may have stored it all the same (a 503 for replicas comes after it).
            if (stored === undefined && d.held.length) stored = await this.redis.exists(this.keys.alert(id)).then((n) => n > 0, () => true);
            if (stored) return finish('case');
            // Not stored (a copy, a conflict, a failed write): its claims go, so another call may take them.
            await Promise.all(d.held.map((key) => this.release(key, id))).catch(() => undefined);
            finish('moved');
          },
          () => undefined,
        ),
    };
  }

  private async decide(k: RepeatKeys, alert: Alert, id: string): Promise<{ match?: RepeatMatch; held: string[] }> {
    const held: string[] = [];
    try {
      // The place key first: it is the stronger one. Only an alert holding its place key goes on
      // to its phone key, so a phone key's holder never waits on anyone: waits cannot go round.
      // Where one script may write both keys (a single Redis), the phone key is claimed in the
      // same call when the place key was free.
      const both = k.phone !== undefined && this.keys.groups(new Set([bucketOfKey(k.place) ?? 0, bucketOfKey(k.phone) ?? 0])).length === 1;
      const first = await this.claim(id, k.place, both ? k.phone : undefined);
      if (first.then === null) held.push(k.phone!);
      const place = await this.take(k.place, id, alert, first.holder);
      if (place.kind === 'live') return { match: { caseId: place.caseId, key: 'place+category', on: alert.category, crossSource: place.crossSource }, held };
      if (place.kind !== 'held') return { held };
      held.push(k.place);
      if (!k.phone) return { held };
      const phone = await this.take(k.phone, id, alert, first.then !== undefined ? first.then : (await this.claim(id, k.phone)).holder);
      if (phone.kind === 'held' && first.then !== null) held.push(k.phone);
      if (phone.kind !== 'live') return { held };
      // Linked by phone: a repeat holds no key, so the place key goes back (before those waiting
      // on it are told: they claim again and find it free, as if this call had never claimed it).
      await this.release(k.place, id);
      return { match: { caseId: phone.caseId, key: 'phone+family', on: categoryFamily(alert.category), crossSource: phone.crossSource }, held: [] };
    } catch (err) {
      // Both keys, not only those known held: a script that failed half-way (out of memory)
      // may have claimed one. Each goes only if it holds this id.
      await this.forget(alert, id).catch(() => undefined);
      throw err;
    }
  }

  /** Takes one key for `id` given its holder when claimed (null: taken), or says which live case holds it. */
  private async take(key: string, id: string, alert: Alert, holder: string | null): Promise<Holder | { kind: 'held' }> {
    // Each round is another request changing the key under us: a handful cannot happen in practice.
    for (let round = 0; round < 8; round++) {
      if (holder === null || holder === id) return { kind: 'held' };
      const h = await this.judge(key, holder, alert);
      if (h.kind === 'live' || h.kind === 'self') return h;
      if (h.kind === 'moved') holder = (await this.claim(id, key)).holder;
      else holder = await this.swap(key, holder, id);
    }
    // Left alone, as a copy would be: a new case without keys.
    return { kind: 'self' };
  }

  /** What the holder of a key is to this alert: its open case, its own copy, replaceable, or gone from the key. */
  private async judge(key: string, holder: string, alert: Alert): Promise<Holder> {
    const local = this.inflight.get(holder);
    if (local) {
      // A copy of this alert in flight here: its own fate decides. Judged 'self' at once, this
      // copy could be written first and the holder become its duplicate, releasing the keys the
      // stored case then lacks. Waiting cannot go round: a copy holds nothing the first one needs.
      if (local.src === srcOf(alert)) return (await local.fate) === 'case' ? { kind: 'self' } : { kind: 'moved' };
      return (await local.fate) === 'case' ? { kind: 'live', caseId: holder, crossSource: local.sourceId !== alert.source.system } : { kind: 'moved' };
    }
    const got = await this.recordOf(key, holder);
    if (got === 'moved' || got === 'dead') return { kind: got };
    const rec = got;
    // The same 110 alert sent again is idempotency's business, not a repeat.
    if (rec.sourceId === alert.source.system && rec.alert.source.alertId === alert.source.alertId) return { kind: 'self' };
    // A repeat gives its claims back before it is written: still holding one, its release failed.
    // The keys already carry the source; this guards keys written before they did.
    if (rec.repeatOf || (!this.crossSource && rec.sourceId !== alert.source.system)) return { kind: 'dead' };
    const ds = await getDeliveries(this.redis, this.keys, await allDeliveryIds(this.redis, this.keys, rec));
    // A delivery the record lists but Redis does not hold yet is one still to be materialised
    // from the ingest log: queued, so open.
    const open = ds.some((d) => (d.kind ?? 'primary') === 'primary' && OPEN.has(d.state)) || rec.deliveryIds.some((id) => !ds.some((d) => d.id === id));
    if (!open) return { kind: 'dead' };
    return { kind: 'live', caseId: rec.id, crossSource: rec.sourceId !== alert.source.system };
  }

  /**
   * The holder's record; for a holder of another process whose record is not written yet (in
   * flight), waits for it, polling, at most `inFlightMs`. Shared by the calls waiting on one holder.
   */
  private recordOf(key: string, holder: string): Promise<AlertRecord | 'moved' | 'dead'> {
    const tag = `${key} ${holder}`;
    let p = this.reading.get(tag);
    if (!p) {
      p = this.waitForRecord(key, holder).finally(() => this.reading.delete(tag));
      this.reading.set(tag, p);
    }
    return p;
  }

  private async waitForRecord(key: string, holder: string): Promise<AlertRecord | 'moved' | 'dead'> {
    const rec = await getAlertRecord(this.redis, this.keys, holder);
    if (rec) return rec;
    // Old enough that no request can still be storing it: a process died between claim and write.
    if (Date.now() - idTime(holder) > STALE_AFTER_MS) return 'dead';
    const until = Date.now() + this.inFlightMs;
    for (let pause = 2; Date.now() < until; pause = Math.min(pause * 2, 50)) {
      await sleep(pause);
      const [cur, r] = await Promise.all([this.redis.get(key), getAlertRecord(this.redis, this.keys, holder)]);
      if (r) return r;
      if (cur !== holder) return 'moved';
    }
    return 'dead';
  }

  /**
   * Claims `key` like `SET key id NX PX window GET` (null when taken, else the holder), and when taken and `then`
   * is given, the same for `then` (undefined: not tried). The claims of one event-loop turn go in
   * one script call (one per bucket on Cluster).
   */
  private claim(id: string, key: string, then?: string): Promise<{ holder: string | null; then?: string | null }> {
    return new Promise((resolve, reject) => {
      if (this.claims.push({ id, key, then, resolve, reject }) === 1) setImmediate(() => this.flushClaims());
    });
  }

  private flushClaims(): void {
    const batch = this.claims;
    this.claims = [];
    const byBucket = new Map<number, Claim[]>();
    for (const c of batch) {
      const b = bucketOfKey(c.key) ?? 0;
      const list = byBucket.get(b);
      if (list) list.push(c);
      else byBucket.set(b, [c]);
    }
    for (const group of this.keys.groups(byBucket.keys())) {
      const cs = group.flatMap((b) => byBucket.get(b)!);
      const args: (string | number)[] = [this.windowMs];
      for (const c of cs) args.push(c.id, c.key, c.then ?? '');
      // KEYS[1] routes the call on Cluster; every key of one call is in its slot there.
      (this.cmd().fenliuRepeatClaim(cs[0].key, ...args) as Promise<string[]>).then(
        (res) =>
          cs.forEach((c, i) => {
            const [a, b] = [res[2 * i], res[2 * i + 1]];
            c.resolve({ holder: a || null, then: b === '-' ? undefined : b || null });
          }),
        (err) => cs.forEach((c) => c.reject(err)),
      );
    }
  }

  /** Sets the key to `to` if it holds `from` (or nothing): null when set, else its holder. */
  private swap(key: string, from: string, to: string): Promise<string | null> {
    return this.cmd().fenliuRepeatSwap(key, from, to, this.windowMs) as Promise<string | null>;
  }

  /** Deletes the repeat keys of an alert that still hold its id (retention, a failed claim). */
  async forget(alert: Alert, id: string): Promise<void> {
    const k = this.keysFor(alert);
    await Promise.all([k.place, k.phone].flatMap((key) => (key ? [this.release(key, id)] : [])));
  }

  /** Deletes the key if it still holds `id`. */
  private release(key: string, id: string): Promise<unknown> {
    return this.cmd().fenliuRepeatRelease(key, id);
  }

  private cmd(): Redis & Record<string, (...a: unknown[]) => Promise<unknown>> {
    const client = this.redis as Redis & Record<string, (...a: unknown[]) => Promise<unknown>>;
    if (!client.fenliuRepeatSwap) {
      client.defineCommand('fenliuRepeatClaim', { numberOfKeys: 1, lua: CLAIM });
      client.defineCommand('fenliuRepeatSwap', { numberOfKeys: 1, lua: SWAP });
      client.defineCommand('fenliuRepeatRelease', { numberOfKeys: 1, lua: RELEASE });
    }
    return client;
  }
}

/**
 * ARGV: window ms, then per claim: id, key, then-key or ''. Returns per claim two strings: the
 * key's holder or '' (taken), and the then-key's holder, '' (taken) or '-' (not tried: the key
 * was held, or no then-key). Ids are never '' or '-'. Each claim is one `SET key id NX PX window
 * GET` (Redis ≥ 7; a Redis that refuses NX with GET gets GET then SET, as atomic in a script).
 */
const CLAIM = `
local px, out, nxget = ARGV[1], {}, true
local function claim(key, id)
  if nxget then
    local r = redis.pcall('SET', key, id, 'NX', 'PX', px, 'GET')
    if type(r) ~= 'table' then return r or '' end
    nxget = false
  end
  local held = redis.call('GET', key)
  if held then return held end
  redis.call('SET', key, id, 'PX', px)
  return ''
end
for i = 2, #ARGV, 3 do
  local id, key, nextKey = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local held = claim(key, id)
  out[#out + 1] = held
  if held == '' and nextKey ~= '' then out[#out + 1] = claim(nextKey, id) else out[#out + 1] = '-' end
end
return out
`;
/** One key each (a slot each on Cluster). */
const SWAP = `
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return cur end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return false
`;
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/**
 * HMAC-SHA256 (RFC 2104) as two one-shot hashes, for a key of at most one block of ASCII (an
 * installation's generated secret is 64 hex digits): its padded forms are then ASCII too, so the
 * inner hash takes `ipad + message` as one string. About a third cheaper than `createHmac`, which
 * builds a stream object and sets the key up on every call (two keyed hashes per alert). Any
 * other key uses `createHmac`.
 */
export function hmacSha256(secret: string): (s: string) => string {
  // eslint-disable-next-line no-control-regex
  if (secret.length > 64 || !/^[\x00-\x7f]*$/.test(secret)) return (s) => createHmac('sha256', secret).update(s).digest('hex');
  let ipad = '';
  const outer = Buffer.alloc(64 + 32);
  for (let i = 0; i < 64; i++) {
    const b = i < secret.length ? secret.charCodeAt(i) : 0;
    ipad += String.fromCharCode(b ^ 0x36);
    outer[i] = b ^ 0x5c;
  }
  return (s) => {
    hash('sha256', ipad + s, 'buffer').copy(outer, 64);
    return hash('sha256', outer, 'hex');
  };
}

/**
 * The texts an alert's repeat-call keys are the keyed hashes of (`scope`: its source, or '*' across
 * sources): place + category, and phone + category family when the caller gave a phone number.
 */
export function repeatTexts(alert: Pick<Alert, 'source' | 'category' | 'caller' | 'location'>, scope: string): { place: string; phone?: string } {
  const phone = alert.caller?.phone?.replace(/\D/g, '').replace(/^86(?=1\d{10}$)/, '');
  const address = alert.location.address.normalize('NFKC').toLowerCase().replace(/[\s\p{P}\p{S}]/gu, '');
  return {
    place: `place:${scope}|${alert.location.regionCode.slice(0, 6)}|${address}|${alert.category}`,
    phone: phone && phone.length >= 5 ? `phone:${scope}|${categoryFamily(alert.category)}|${phone}` : undefined,
  };
}

const ANY_TWO_BUCKETS = [0, 1];

/** A holder without its record older than this is no request in flight but a leftover of a crash (clocks of the hosts may differ by less). */
const STALE_AFTER_MS = 60_000;

/** What became of an alert that held keys: a stored case (keeps them), or not (they moved on: read again). */
type Fate = 'case' | 'moved';

interface InFlight {
  /** Source and source alert id: a copy of the same alert is no repeat of it. */
  src: string;
  sourceId: string;
  fate: Promise<Fate>;
}

type Holder =
  | { kind: 'live'; caseId: string; crossSource: boolean }
  /** The alert itself, sent again: no match, no claim (idempotency answers it). */
  | { kind: 'self' }
  /** Closed, missing or dead: this alert may replace it. */
  | { kind: 'dead' }
  /** No longer on the key: claim again. */
  | { kind: 'moved' };

interface Claim {
  id: string;
  key: string;
  then?: string;
  resolve: (r: { holder: string | null; then?: string | null }) => void;
  reject: (err: unknown) => void;
}

/** One alert's repeat decision (RepeatMatcher.begin). */
export interface RepeatClaim {
  /** The open case this alert repeats, if any (claims made meanwhile). */
  match(): Promise<RepeatMatch | undefined>;
  /** Whether the alert was stored (undefined: not known, after an error): its claims stay (a new case), or are released (a copy, a conflict, a failed write). */
  done(stored: boolean | undefined): Promise<void>;
}

const srcOf = (a: Alert) => `${a.source.system}\n${a.source.alertId}`;
