/**
 * The engines' wake-up (src/delivery/wake.ts) on Redis Cluster (3 masters, real processes): a
 * subscription through the cluster client hears what another cluster client publishes, whichever
 * node each uses.
 */
import t from 'tap';
import { Cluster, type Redis } from 'ioredis';
import { startCluster } from '../helpers/cluster.js';
import { until } from '../helpers/engine.js';
import { publishWork, subscribeWork } from '../../src/delivery/wake.js';
import { bus } from '../../src/events.js';

const c = await startCluster({ masters: 3, replicas: 0 });
t.teardown(() => c.stop());

t.test('Cluster: work published by one client wakes a subscriber on another', async (t) => {
  const a = new Cluster(c.nodes) as unknown as Redis;
  const b = new Cluster(c.nodes) as unknown as Redis;
  t.teardown(() => {
    a.disconnect();
    b.disconnect();
  });
  const heard: string[] = [];
  const w = await subscribeWork(b, 'hwc', (p) => heard.push(p));
  t.teardown(() => w.close());
  const stop = publishWork(a, 'hwc');
  t.teardown(stop);
  bus.emitEvent('work.enqueued', { platformId: 'p-12345' });
  await until(() => heard.includes('p-12345'), 10_000, 'the wake-up heard across the cluster');
  t.same(heard, ['p-12345']);
});
