/**
 * The repeat-call keys themselves (src/lifecycle/repeat.ts): which alerts share a key, with and
 * without `repeat.crossSource`. Whole cases (linking, urges, new tickets) are in lifecycle-cases.
 */
import t from 'tap';
import { Redis } from 'ioredis';
import type { Alert } from '../adapters/sdk.js';
import { createHmac } from 'node:crypto';
import { categoryFamily, hmacSha256, RepeatMatcher } from '../src/lifecycle/repeat.js';
import { keys } from '../src/store/keys.js';
import { startRedis } from './helpers/redis.js';

const base = (over: Partial<Alert> = {}): Alert =>
  ({
    source: { system: 'hs-110', alertId: 'A-1' },
    reportedAt: '2026-11-29T10:00:00+08:00',
    category: 'dispute.debt',
    summary: '欠款',
    location: { address: '杭州西路88号', regionCode: '420204' },
    caller: { phone: '13800138000' },
    ...over,
  }) as Alert;

t.test('repeat keys: source, family and place', async (t) => {
  const redis = await startRedis();
  const r = new Redis(redis.url);
  t.teardown(async () => {
    r.disconnect();
    await redis.stop();
  });
  const k = keys('rk');
  const own = await RepeatMatcher.create(r, k, 'rk', { window: '72h', secret: 'a-secret-of-16-chars+' });
  const shared = await RepeatMatcher.create(r, k, 'rk', { window: '72h', secret: 'a-secret-of-16-chars+', crossSource: true });
  const a = own.keysFor(base());
  t.equal(categoryFamily('dispute.debt'), 'dispute');
  t.equal(own.keysFor(base({ category: 'dispute.neighbor', caller: { phone: '+86 138-0013-8000' } })).phone, a.phone, 'same family, same phone (any spelling): same phone key');
  t.not(own.keysFor(base({ category: 'consumer.refund' })).phone, a.phone, 'another family: another phone key');
  t.not(own.keysFor(base({ category: 'dispute.neighbor' })).place, a.place, 'the place key needs the whole category');
  t.equal(own.keysFor(base({ location: { address: '杭州西路 88 号。', regionCode: '420204001' } })).place, a.place, 'address spelling and street-level code do not matter');
  const other = base({ source: { system: 'wh-110', alertId: 'A-1' } });
  t.not(own.keysFor(other).phone, a.phone, 'another source: another phone key');
  t.not(own.keysFor(other).place, a.place, 'another source: another place key');
  t.equal(shared.keysFor(other).phone, shared.keysFor(base()).phone, 'crossSource: the sources share keys');
  t.equal(shared.crossSource, true);
  t.equal(own.crossSource, false, 'off by default');
});

t.test('the repeat keys\' HMAC is HMAC-SHA256 for every kind of secret', async (t) => {
  const secrets = ['', 'k', 'ab'.repeat(32), 'x'.repeat(63), 'y'.repeat(65), '密钥-secret', '\u0000\u007f'];
  const messages = ['', 'place:bench-110|420204|湖北省黄石市下陆区杭州西路1号|consumer.refund', 'phone:*|dispute|13800000000', 'z'.repeat(200)];
  for (const secret of secrets) {
    const mac = hmacSha256(secret);
    for (const m of messages) t.equal(mac(m), createHmac('sha256', secret).update(m).digest('hex'), `secret of ${secret.length} chars`);
  }
});
