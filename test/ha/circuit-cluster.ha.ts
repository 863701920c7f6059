/**
 * The circuit breaker on Redis Cluster (3 masters, real processes), where the circuit is in
 * another slot than the attempt's record: a success still resets faults that another worker
 * process counted while it was in flight, as on a standalone Redis
 * (test/engine-circuit-429.test.ts).
 */
import t from 'tap';
import { startCluster } from '../helpers/cluster.js';
import { faultsDuringSuccess, startEngineEnv, until } from '../helpers/engine.js';

const c = await startCluster({ masters: 3, replicas: 0 });
t.teardown(() => c.stop());

t.test('Cluster: a success resets faults another process counted while it was in flight', async (t) => {
  const env = await startEngineEnv(t, {
    cluster: c.nodes,
    prefix: 'hcc',
    platforms: [{ id: 'p-12345', kind: 'hotline-12345', circuitBreaker: { failureThreshold: 3, cooldownMs: 60_000 }, retry: { delaysMs: [60_000], jitter: 'none' }, timeouts: { connectMs: 1000, headersMs: 2000, bodyMs: 5000 } }],
  });
  const sb = env.sandbox.get('p-12345');
  const circuitKey = 'hcc:circuit:p-12345';
  await faultsDuringSuccess(env, circuitKey);
  // The reset goes beside the record script, so it may land just after the state is seen.
  await until(async () => (await env.r.exists(circuitKey)) === 0, 5_000, 'the success to reset the count');
  t.pass('the success reset the count');

  // Counting goes on from zero.
  sb.setFault({ fault: '5xx', times: 1 });
  const failed = await env.submit();
  await until(async () => (await env.delivery(failed.deliveries['p-12345'])).lastError, 10_000, 'a failure');
  t.equal(await env.r.hget(circuitKey, 'failures'), '1', 'one failure counted');
});
