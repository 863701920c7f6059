import t from 'tap';
import { Redis } from 'ioredis';
import { startSandbox } from '../src/sandbox/index.js';
import { startRedis } from './helpers/redis.js';
import { KEYS, alert, api, startTestFenliu, testConfig } from './helpers/fenliu.js';
import { until } from './helpers/engine.js';
import { bucketOf, keys } from '../src/store/keys.js';

t.test('retention removes old alerts, their deliveries and jobs from Redis', async (t) => {
  const redis = await startRedis();
  const sandbox = await startSandbox({ platforms: [{ id: 'p-12345', kind: 'hotline-12345' }] });
  const r = new Redis(redis.url);
  const doc = testConfig({
    platforms: [{ id: 'p-12345', adapter: 'hotline-12345', url: sandbox.get('p-12345').url, options: { defaultCategoryCode: '9999' } }],
    routes: [{ id: 'default', default: true, targets: ['p-12345'] }],
    // About one second: alerts older than that are swept every second.
    retention: { alertsDays: 1 / 86_400, sweepEveryMs: 1000 },
    // Deadlines far away, so no SLA job outlives the alert for another reason.
    sla: { ackBy: '1h', interveneBy: '12h', resolveBy: '3d' },
  });
  const f = await startTestFenliu({ redisUrl: redis.url, cfg: doc, role: 'all' });
  t.teardown(async () => {
    await sandbox.close();
    await f.stop();
    r.disconnect();
    await redis.stop();
  });
  const fk = keys('fenliu');
  const src = api(f.url, KEYS.sourceA);
  const res = await src.post('/v1/alerts', alert('RET-1'));
  t.equal(res.status, 202);
  const id = res.body.id as string;
  const dId = res.body.deliveries[0].id as string;
  await until(async () => (await r.hget(fk.delivery(dId), 'state')) === 'delivered', 10_000, 'delivered');
  await until(async () => !(await r.exists(fk.alert(id))), 15_000, 'alert swept');
  t.equal(await r.exists(fk.delivery(dId)), 0, 'delivery record gone');
  t.equal(await r.exists(fk.history(dId)), 0, 'history gone');
  t.equal(await r.zscore(fk.alerts(bucketOf(id)), id), null, 'index entry gone');
  const left = (await r.keys('*')).filter((key) => key.includes(id.slice(4)));
  t.same(left, [], 'no key mentions the alert any more');
  t.equal((await src.get(`/v1/alerts/${id}`)).status, 404, 'the API no longer knows it');
});
