import { randomBytes } from 'node:crypto';

const B32 = '0123456789abcdefghjkmnpqrstvwxyz';

// Random bytes are drawn 4 KiB at a time: one system call per ~400 ids instead of one per id.
let pool = Buffer.alloc(0);
let poolAt = 0;

/**
 * Time-sortable id: 10 chars of milliseconds (Crockford base32, lower case) and 16 random ones.
 * Given a key-layout bucket (src/store/keys.ts), the last character is drawn from the two that
 * name it (index modulo 16), so the id's keys land in that bucket.
 */
export function newId(prefix: string, now = Date.now(), bucket?: number): string {
  let t = '';
  let n = now;
  for (let i = 0; i < 10; i++) {
    t = B32[n % 32] + t;
    n = Math.floor(n / 32);
  }
  if (poolAt + 10 > pool.length) {
    pool = randomBytes(4096);
    poolAt = 0;
  }
  const o = poolAt;
  poolAt += 10;
  let s = '';
  for (let i = 0; i < 16; i++) s += B32[pool[o + (i % 10)] >> (i < 10 ? 3 : 0) & 31];
  if (bucket !== undefined) s = s.slice(0, 15) + B32[(bucket & 15) | (pool[o + 5] & 16)];
  return `${prefix}_${t}${s}`;
}

/** Delivery id: one per alert × platform, derived so that it is stable and readable. */
export function deliveryId(alertId: string, platformId: string): string {
  return `dlv_${alertId.slice(4)}.${platformId}`;
}

/** The epoch ms an id was made at (its first 10 characters after the prefix). */
export function idTime(id: string): number {
  const t = id.slice(id.indexOf('_') + 1, id.indexOf('_') + 11);
  let n = 0;
  for (const c of t) n = n * 32 + B32.indexOf(c);
  return n;
}
