/**
 * `redis.waitReplicas`, the Redis target a config describes, and the safe audit default, on real
 * redis-servers (a master from test/helpers/redis.ts, a replica started as `--replicaof`).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Redis } from 'ioredis';
import { auditStreamKey } from '../src/audit/events.js';
import { describeTarget, redisTarget, sentinelOptions } from '../src/redis/connect.js';
import { useRedis } from './helpers/redis.js';
import { startReplica } from './helpers/sentinel.js';
import { KEYS, LogCapture, alert, api, logged, materialise, startTestFenliu, testConfig, validConfig } from './helpers/fenliu.js';
import { each, zcardAll, zMembersByScore } from '../src/store/fanout.js';

t.test('the config names the target: url, then Sentinel, then Cluster, then REDIS_URL, else embedded', async (t) => {
  const sentinels = [{ host: '10.0.0.11', port: 26379 }];
  const cfg = (redis: Record<string, unknown>) => validConfig(testConfig({ redis })).redis;
  t.same(redisTarget(cfg({ url: 'redis://a:6379', sentinels }), {}), { kind: 'url', url: 'redis://a:6379' }, 'url wins');
  const s = redisTarget(cfg({ sentinels, sentinelPassword: 'sp', password: 'p' }), { REDIS_URL: 'redis://env:6379' });
  t.match(s, { kind: 'sentinel', sentinels, name: 'mymaster', password: 'p', sentinelPassword: 'sp' }, 'Sentinel before REDIS_URL; name defaults to mymaster');
  t.match(sentinelOptions(s as never), { role: 'master', failoverDetector: true, name: 'mymaster' }, 'connections follow +switch-master and insist on the master role');
  t.equal(describeTarget(s!), 'sentinel master "mymaster" via 10.0.0.11:26379', 'described without passwords');
  t.same(redisTarget(cfg({}), { REDIS_URL: 'redis://env:6379' }), { kind: 'url', url: 'redis://env:6379' });
  t.equal(redisTarget(cfg({}), {}), undefined, 'nothing set: the embedded redis-server');
  t.same(redisTarget(cfg({ sentinels }), {}, 'redis://override:1'), { kind: 'url', url: 'redis://override:1' }, 'the start option overrides');
  t.throws(() => validConfig(testConfig({ redis: { sentinels: [{ host: 'x' }] } })), /sentinels\/0\/port/, 'a sentinel needs a port');
  t.equal(validConfig(testConfig()).redis.waitReplicas, 0, 'waitReplicas defaults to 0');
  const dir = mkdtempSync(join(tmpdir(), 'fenliu-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'ca.pem'), 'PEM');
  const tls = sentinelOptions({ kind: 'sentinel', sentinels, name: 'm', tls: { ca: join(dir, 'ca.pem'), servername: 'redis.example' } });
  t.match(tls, { enableTLSForSentinelMode: true, tls: { servername: 'redis.example', rejectUnauthorized: true }, sentinelTLS: { servername: 'redis.example' } }, 'tls reaches the data nodes and the sentinels');
  t.equal(String((tls.tls as { ca: Buffer }).ca), 'PEM', 'the CA is read from its file');
  t.equal(validConfig(testConfig({ audit: {} })).audit.archive, true, 'audit.archive defaults to true');
});

t.test('waitReplicas: 503 NOT_REPLICATED until a replica has the alert; the retry is then answered for the stored alert', async (t) => {
  const redis = await useRedis(t);
  const f = await startTestFenliu({ redisUrl: redis.url, cfg: testConfig({ redis: { prefix: 'wr', waitReplicas: 1, waitTimeoutMs: 1000 } }) });
  // 1 s (the default), not less: under a loaded CI a replica's WAIT ack can take a few hundred ms.
  t.teardown(() => f.stop());
  const src = api(f.url, KEYS.sourceA);
  const first = await src.post('/v1/alerts', alert('WAIT-1'));
  t.equal(first.status, 503, 'no replica: not acknowledged');
  t.equal(first.body.code, 'FENLIU_ERR_NOT_REPLICATED');
  t.equal(first.headers['retry-after'], '1', 'with Retry-After');
  const r = new Redis(redis.url);
  t.teardown(() => r.disconnect());
  const stored = await zMembersByScore(r, each(f.rt.keys.bucketList, f.rt.keys.alerts), '-inf', '+inf');
  t.equal(stored.length, 1, 'the alert is stored on the master (the 503 says "not replicated", not "not stored")');
  const again = await src.post('/v1/alerts', alert('WAIT-1'));
  t.equal(again.status, 503, 'the retry too, while no replica has it');

  const replica = await startReplica(redis.port);
  t.teardown(() => replica.stop());
  // The master counts the replica once it is online after the full sync.
  for (const end = Date.now() + 10_000; !/slave0:.*state=online/.test(await r.info('replication')); ) {
    if (Date.now() > end) throw new Error('the replica never came online');
    await new Promise((res) => setTimeout(res, 50));
  }
  const retry = await src.post('/v1/alerts', alert('WAIT-1'));
  t.same([retry.status, retry.body.id, retry.headers['idempotent-replayed']], [200, stored[0], 'true'], 'with a replica, the retry is answered for the stored alert');
  const onReplica = new Redis({ port: replica.port, host: '127.0.0.1' });
  t.teardown(() => onReplica.disconnect());
  t.ok(await onReplica.exists(f.rt.keys.alert(stored[0])), 'and the replica has it');
  const next = await src.post('/v1/alerts', alert('WAIT-2'));
  t.equal(next.status, 202, 'new alerts are acknowledged once replicated');
  t.equal(await zcardAll(r, each(f.rt.keys.bucketList, f.rt.keys.alerts)), 2, 'nothing stored twice');
});

t.test('audit.archive: false warns at start; /readyz reports the stream against audit.streamLimit', async (t) => {
  const redis = await useRedis(t);
  const logs = new LogCapture();
  const f = await startTestFenliu({ redisUrl: redis.url, cfg: testConfig({ redis: { prefix: 'as' }, audit: { archive: false, streamLimit: 3 } }), logStream: logs, logLevel: 'warn' });
  t.teardown(() => f.stop());
  t.match(logs.text, /WARNING: audit\.archive is false/, 'a warning at start');
  let ready = await api(f.url).get('/readyz');
  t.equal(ready.status, 200);
  t.same(ready.body.checks.auditStream, { length: 0, limit: 3, archiving: false }, 'the stream length against the limit');
  // Four alerts: at least one event each (alert.received), so more than the limit of 3.
  for (const id of ['AS-1', 'AS-2', 'AS-3', 'AS-4']) t.equal((await api(f.url, KEYS.sourceA).post('/v1/alerts', alert(id))).status, 202);
  // Log-first ingest: the alerts' events are written when a dispatcher materialises them.
  t.equal(await materialise(f), logged(f, 4), 'all four alerts materialised (or written through)');
  const r = new Redis(redis.url);
  t.teardown(() => r.disconnect());
  const len = await r.xlen(auditStreamKey('as'));
  ready = await api(f.url).get('/readyz');
  t.equal(ready.status, 503, `over the limit (${len} entries > 3): not ready`);
  t.match(ready.body.checks.auditStream, { length: len, limit: 3, problem: /archiver/ });
});

t.test('audit.archive on (the default): no warning', async (t) => {
  const redis = await useRedis(t);
  const logs = new LogCapture();
  const dir = mkdtempSync(join(tmpdir(), 'fenliu-audit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const f = await startTestFenliu({ redisUrl: redis.url, cfg: testConfig({ redis: { prefix: 'ao' }, audit: { dir } }), logStream: logs, logLevel: 'warn' });
  t.teardown(() => f.stop());
  t.notMatch(logs.text, /audit\.archive is false/);
  t.match((await api(f.url).get('/readyz')).body.checks.auditStream, { archiving: true });
});
