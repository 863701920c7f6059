/**
 * The start-up durability check (src/redis/persistence.ts): warns loudly, or refuses with
 * redis.requirePersistence, when Redis would lose what a 202 promised; tolerates a Redis that
 * refuses CONFIG.
 */
import t from 'tap';
import { Redis } from 'ioredis';
import { startRedis } from '../helpers/redis.js';
import { LogCapture, startTestFenliu, testConfig } from '../helpers/fenliu.js';
import { createLogger } from '../../src/log.js';
import { checkPersistence, inspectPersistence, PersistenceError } from '../../src/redis/persistence.js';

t.test('no AOF: a warning, or a refusal with requirePersistence', async (t) => {
  const redis = await startRedis({ appendonly: false });
  // kill, not stop: after CONFIG SET appendonly yes a SHUTDOWN may wait on the AOF rewrite.
  t.teardown(() => redis.kill());
  const logs = new LogCapture();
  const f = await startTestFenliu({ redisUrl: redis.url, logStream: logs, logLevel: 'info' });
  await f.stop();
  t.match(logs.text, /WARNING: Redis persistence does not keep what a 202 promises: appendonly is \\"no\\"/, 'loud warning');
  await t.rejects(startTestFenliu({ redisUrl: redis.url, cfg: testConfig({ redis: { requirePersistence: true } }) }), PersistenceError, 'refuses to start');

  const r = new Redis(redis.url);
  t.teardown(() => r.disconnect());
  await r.config('SET', 'appendonly', 'yes');
  await r.config('SET', 'maxmemory-policy', 'allkeys-lru');
  const rep = await inspectPersistence(r);
  t.same(rep.problems.length, 1, 'eviction policy flagged');
  t.match(rep.problems[0], /maxmemory-policy is "allkeys-lru"/);
  await r.config('SET', 'appendfsync', 'no');
  await r.config('SET', 'maxmemory-policy', 'noeviction');
  t.match((await inspectPersistence(r)).problems, [/appendfsync is "no"/]);
  await r.config('SET', 'appendfsync', 'everysec');
  const ok = await checkPersistence(r, createLogger('silent'), { require: true });
  t.same(ok.problems, [], 'AOF everysec + noeviction passes even with requirePersistence');
});

t.test('CONFIG refused (ACL): checked=false, fenliu still starts', async (t) => {
  const redis = await startRedis({ appendonly: true });
  t.teardown(() => redis.stop());
  const admin = new Redis(redis.url);
  t.teardown(() => admin.disconnect());
  await admin.call('ACL', 'SETUSER', 'app', 'on', '>app-password', '~*', '&*', '+@all', '-config');
  const url = redis.url.replace('redis://', 'redis://app:app-password@');
  const r = new Redis(url);
  t.teardown(() => r.disconnect());
  const rep = await inspectPersistence(r);
  t.equal(rep.checked, false, 'CONFIG GET refused: not checked');
  const logs = new LogCapture();
  const f = await startTestFenliu({ redisUrl: url, cfg: testConfig({ redis: { requirePersistence: true } }), logStream: logs, logLevel: 'info' });
  await f.stop();
  t.match(logs.text, /refuses CONFIG GET/, 'says it could not check');
});
