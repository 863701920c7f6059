/**
 * Repeat calls under concurrency on Redis Cluster (3 masters, real processes), two fenliu
 * instances: the claims go one script call per bucket (a slot each), the phone key in a second
 * round when its bucket differs from the place key's, and the same exactness holds as on one
 * Redis (test/repeat-concurrency.test.ts).
 */
import t from 'tap';
import { Cluster } from 'ioredis';
import { startCluster } from '../helpers/cluster.js';
import { KEYS, alert, api, startTestFenliu, testConfig, type TestFenliu } from '../helpers/fenliu.js';

const c = await startCluster({ masters: 3, replicas: 0 });
t.teardown(() => c.stop());

t.test('Cluster: 20 simultaneous calls over two instances open one case', async (t) => {
  const doc = testConfig({ redis: { prefix: 'hrc', cluster: c.nodes } });
  const one = await startTestFenliu({ cfg: doc });
  const two = await startTestFenliu({ cfg: doc });
  const r = new Cluster(c.nodes);
  t.teardown(async () => {
    await one.stop();
    await two.stop();
    r.disconnect();
  });
  const post = (i: number, body: Record<string, unknown>) => api((i % 2 ? two : one).url, KEYS.sourceA).post('/v1/alerts', body);
  const matcher = (f: TestFenliu) => f.rt.ingest['repeat']!;
  let n = 0;
  for (const [label, make, key] of [
    ['one place', () => alert(`HRC-${++n}`, { location: { address: '杭州西路9号', regionCode: '420204' } }), 'place+category'],
    ['one phone, many places', () => alert(`HRC-${++n}`, { location: { address: `黄石大道${n}号`, regionCode: '420204' }, caller: { phone: '13900000009' } }), 'phone+family'],
  ] as const) {
    const bodies = Array.from({ length: 20 }, make);
    const res = await Promise.all(bodies.map((b, i) => post(i, b)));
    t.same(res.map((x) => x.status).filter((s) => s !== 200 && s !== 202), [], `${label}: all answered`);
    const created = res.filter((x) => x.status === 202);
    t.equal(created.length, 1, `${label}: one case`);
    const caseId = created[0]?.body.id;
    t.same([...new Set(res.filter((x) => x.status === 200).map((x) => `${x.body.repeatOf} ${x.body.repeatMatch?.key}`))], [`${caseId} ${key}`], `${label}: 19 linked to it`);
    const k = matcher(one).keysFor(bodies[1] as any);
    t.equal(await r.get(key === 'phone+family' ? k.phone! : k.place), caseId, `${label}: the key names the case`);
  }
});
