/**
 * Which failures answer 503 (nothing stored, retry) rather than 500: the messages ioredis gives
 * during a Redis Cluster failover (seen in test/ha/cluster.ha.ts as rare 500s before they were
 * listed), and a real refused connection.
 */
import t from 'tap';
import { Redis } from 'ioredis';
import { isUnavailable, toProblemError } from '../src/plugins/app/problems.js';
import { freePort } from '../src/redis/embedded.js';

t.test('Cluster failover messages are 503s', async (t) => {
  for (const m of [
    'Too many Cluster redirections. Last error: Error: connect ECONNREFUSED 127.0.0.1:7001',
    'None of startup nodes is available',
    'Cluster is disconnected.',
    'Node is disconnected',
    'Failed to refresh slots cache.',
    "Socket timeout. Expecting data, but didn't receive any in 1000ms.",
    'CLUSTERDOWN The cluster is down',
    'TRYAGAIN Multiple keys request during rehashing of slot',
  ]) {
    t.ok(isUnavailable(new Error(m)), m);
    t.equal(toProblemError(new Error(m)).status, 503, `${m}: 503`);
  }
});

t.test('a real refused connection is a 503', async (t) => {
  const r = new Redis({ port: await freePort(), maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true });
  r.on('error', () => undefined);
  const err = await r.set('k', 'v').catch((e: Error) => e);
  r.disconnect();
  t.ok(err instanceof Error, `refused: ${(err as Error).message}`);
  t.equal(toProblemError(err as Error).status, 503);
});

t.test('a bug is still a 500', async (t) => {
  const err = new TypeError("Cannot read properties of undefined (reading 'id')");
  t.notOk(isUnavailable(err));
  t.equal(toProblemError(err).status, 500);
});
