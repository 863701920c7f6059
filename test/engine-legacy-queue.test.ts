/**
 * A delivery job an earlier version put in its BullMQ queue after this version's worker started
 * (a rolling upgrade) is not stranded until the next start: the retention sweep moves it to the
 * work sets, and the engine delivers it.
 */
import t from 'tap';
import { Queue } from 'bullmq';
import { deliveryQueueName } from '../src/store/keys.js';
import { startEngineEnv } from './helpers/engine.js';

t.test('a BullMQ delivery job added after the start is moved by the retention sweep and delivered', async (t) => {
  const e = await startEngineEnv(t, {
    platforms: [{ id: 'p1', kind: 'hotline-12345' }],
    extra: { retention: { alertsDays: 180, sweepEveryMs: 1_000 } },
  });
  const sb = e.sandbox.get('p1');
  // A dead letter (a 4xx is never retried), put back to queued by hand: the delivery an old
  // version's job points at.
  sb.setFault('4xx');
  const { alertId, deliveries } = await e.submit();
  const id = deliveries.p1;
  await e.waitForState(id, 'failed', 10_000);
  sb.setFault('none');
  await e.r.hset(e.k.delivery(id), 'state', 'queued');

  const q = new Queue(deliveryQueueName('p1'), { connection: e.r, prefix: e.k.queuePrefixOf('p1') });
  await q.add('deliver', { alertId, deliveryId: id, platformId: 'p1', kind: 'deliver' }, { jobId: `${id}.old` });
  await q.close();

  const d = await e.waitForState(id, 'delivered', 15_000);
  t.match(d.remoteTicketId, /\S/, 'delivered, with a ticket');
  t.equal(sb.received.length, 2, 'the 4xx attempt, then the moved job');
  t.equal((await e.r.keys(`*${deliveryQueueName('p1')}*`)).length, 0, 'the old queue is gone');
});
