import { createHmac, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Alert } from '../../adapters/sdk.js';
import type { Keys } from '../store/keys.js';
import { allDeliveryIds, getAlertRecord, getDeliveries } from '../store/records.js';
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

  keysFor(alert: Alert): RepeatKeys {
    const h = (s: string) => createHmac('sha256', this.secret).update(s).digest('hex').slice(0, 32);
    const scope = this.crossSource ? '*' : alert.source.system;
    const phone = alert.caller?.phone?.replace(/\D/g, '').replace(/^86(?=1\d{10}$)/, '');
    const address = alert.location.address.normalize('NFKC').toLowerCase().replace(/[\s\p{P}\p{S}]/gu, '');
    return {
      phone: phone && phone.length >= 5 ? this.keys.repeatPhone(h(`phone:${scope}|${categoryFamily(alert.category)}|${phone}`)) : undefined,
      place: this.keys.repeatPlace(h(`place:${scope}|${alert.location.regionCode.slice(0, 6)}|${address}|${alert.category}`)),
    };
  }

  /** The open case this alert repeats, if any, and which key says so (the place key first: it is the stronger one). */
  async findOpenCase(k: RepeatKeys, alert: Alert): Promise<RepeatMatch | undefined> {
    const named: [RepeatKeyName, string][] = [['place+category', k.place], ...(k.phone ? [['phone+family', k.phone] as [RepeatKeyName, string]] : [])];
    // One GET each: the two keys hash to different buckets (two slots on Redis Cluster).
    const hits = await Promise.all(named.map(([, key]) => this.redis.get(key)));
    for (let i = 0; i < named.length; i++) {
      const id = hits[i];
      if (!id) continue;
      const rec = await getAlertRecord(this.redis, this.keys, id);
      // The same 110 alert sent again is idempotency's business, not a repeat.
      if (!rec || (rec.sourceId === alert.source.system && rec.alert.source.alertId === alert.source.alertId)) continue;
      // The keys already carry the source; this guards keys written before they did.
      if (!this.crossSource && rec.sourceId !== alert.source.system) continue;
      const ds = await getDeliveries(this.redis, this.keys, await allDeliveryIds(this.redis, this.keys, rec));
      if (!ds.some((d) => (d.kind ?? 'primary') === 'primary' && OPEN.has(d.state))) continue;
      const key = named[i][0];
      return { caseId: rec.id, key, on: key === 'place+category' ? alert.category : categoryFamily(alert.category), crossSource: rec.sourceId !== alert.source.system };
    }
    return undefined;
  }
}
