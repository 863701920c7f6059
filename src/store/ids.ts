import { randomBytes } from 'node:crypto';

const B32 = '0123456789abcdefghjkmnpqrstvwxyz';

/** Time-sortable id: 10 chars of milliseconds (Crockford base32, lower case) and 16 random ones. */
export function newId(prefix: string, now = Date.now()): string {
  let t = '';
  let n = now;
  for (let i = 0; i < 10; i++) {
    t = B32[n % 32] + t;
    n = Math.floor(n / 32);
  }
  const r = randomBytes(10);
  let s = '';
  for (let i = 0; i < 16; i++) s += B32[r[i % 10] >> (i < 10 ? 3 : 0) & 31];
  return `${prefix}_${t}${s}`;
}

/** Delivery id: one per alert × platform, derived so that it is stable and readable. */
export function deliveryId(alertId: string, platformId: string): string {
  return `dlv_${alertId.slice(4)}.${platformId}`;
}
