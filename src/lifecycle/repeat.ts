import { createHmac, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Alert } from '../../adapters/sdk.js';
import type { Keys } from '../store/keys.js';
import { allDeliveryIds, getAlertRecord, getDeliveries } from '../store/records.js';
import { parseDuration } from './service.js';

/** States in which a case still needs handling: a repeat call about it is an urge, not a new case. */
const OPEN = new Set(['queued', 'sending', 'delivered', 'accepted', 'in_progress', 'reopened']);

export interface RepeatKeys {
  phone?: string;
  place: string;
}

/**
 * Links a repeat call (重复报警) to the open case it is about: same caller phone, or same place and
 * category, within a window. Phones are compared as keyed hashes; nothing about them is stored in
 * clear for matching.
 */
export class RepeatMatcher {
  readonly windowMs: number;

  private constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly secret: string,
    window: string,
  ) {
    this.windowMs = parseDuration(window);
  }

  /** The key comes from config, or is created once per installation and shared by all processes through Redis. */
  static async create(redis: Redis, keys: Keys, prefix: string, cfg: { window: string; secret?: string }): Promise<RepeatMatcher> {
    let secret = cfg.secret;
    if (!secret) {
      const k = `${prefix}:repeat:secret`;
      await redis.set(k, randomBytes(32).toString('hex'), 'NX');
      secret = (await redis.get(k))!;
    }
    return new RepeatMatcher(redis, keys, secret, cfg.window);
  }

  keysFor(alert: Alert): RepeatKeys {
    const h = (s: string) => createHmac('sha256', this.secret).update(s).digest('hex').slice(0, 32);
    const phone = alert.caller?.phone?.replace(/\D/g, '').replace(/^86(?=1\d{10}$)/, '');
    const address = alert.location.address.normalize('NFKC').toLowerCase().replace(/[\s\p{P}\p{S}]/gu, '');
    return {
      phone: phone && phone.length >= 5 ? this.keys.repeatPhone(h(`phone:${phone}`)) : undefined,
      place: this.keys.repeatPlace(h(`place:${alert.location.regionCode.slice(0, 6)}|${address}|${alert.category}`)),
    };
  }

  /** The open case this alert repeats, if any. */
  async findOpenCase(k: RepeatKeys, sourceAlertId: string): Promise<string | undefined> {
    const candidates = (await this.redis.mget(...[k.phone, k.place].filter((x): x is string => !!x))).filter((x): x is string => !!x);
    for (const id of new Set(candidates)) {
      const rec = await getAlertRecord(this.redis, this.keys, id);
      // The same 110 alert sent again is idempotency's business, not a repeat.
      if (!rec || rec.alert.source.alertId === sourceAlertId) continue;
      const ds = await getDeliveries(this.redis, this.keys, await allDeliveryIds(this.redis, this.keys, rec));
      if (ds.some((d) => (d.kind ?? 'primary') === 'primary' && OPEN.has(d.state))) return rec.id;
    }
    return undefined;
  }
}
