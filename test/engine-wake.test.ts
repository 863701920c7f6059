/**
 * Work an API process adds wakes the engine of a worker process at once (src/delivery/wake.ts),
 * not at its next look: with `engine.pollMs` at 30 s, a cancel from 110 still reaches the
 * platform within seconds. The worker is a child process, so nothing in-process (the event bus)
 * can carry the wake-up.
 */
import t from 'tap';
import { Redis } from 'ioredis';
import { startRedis } from './helpers/redis.js';
import { startEngineEnv, until, workerChildren } from './helpers/engine.js';
import { publishWork, subscribeWork, workChannel } from '../src/delivery/wake.js';
import { bus } from '../src/events.js';
import { logEntriesAdded } from './helpers/ingest-log.js';

const redis = await startRedis();
t.teardown(() => redis.stop());

/** A publishing and a subscribing connection to the file's Redis, closed with the test. */
function clients(t: { teardown(fn: () => unknown): void }): { pub: Redis; sub: Redis } {
  const pub = new Redis(redis.url);
  const sub = new Redis(redis.url);
  t.teardown(() => {
    pub.disconnect();
    sub.disconnect();
  });
  return { pub, sub };
}

t.test('a cancel added by the API reaches the platform long before the worker would look again', async (t) => {
  const e = await startEngineEnv(t, { redis, role: 'api', engine: { pollMs: 30_000 }, platforms: [{ id: 'p1', kind: 'hotline-12345' }] });
  const startWorker = workerChildren(t, e.doc, redis.url);
  await startWorker();
  const { alertId, deliveries } = await e.submit();
  const d = await e.waitForState(deliveries.p1, 'delivered', 15_000);
  // The worker's loop has nothing due now: it sleeps for pollMs (30 s) unless woken.
  const sb = e.sandbox.get('p1');
  const asked = Date.now();
  const res = await e.source.post(`/v1/alerts/${alertId}/cancel`, { reason: '报警人已自行解决' });
  t.equal(res.status, 200);
  const cancel = await until(() => sb.received.find((r) => r.path === `/api/workorders/${d.remoteTicketId}/cancel`), 10_000, 'the cancel at the platform');
  t.ok(cancel, 'the platform got the cancel');
  t.ok(Date.now() - asked < 10_000, `sent ${Date.now() - asked} ms after the API added it (the worker's poll is 30 s)`);
});

t.test('write-through ingest (engine.ingestWriteThrough): the ingest script itself wakes the worker, with no ingest log', async (t) => {
  const e = await startEngineEnv(t, { redis, role: 'api', prefix: 'wt', engine: { pollMs: 30_000, ingestWriteThrough: true }, platforms: [{ id: 'p1', kind: 'hotline-12345' }, { id: 'p2', kind: 'hotline-12345' }] });
  const startWorker = workerChildren(t, e.doc, redis.url);
  await startWorker();
  // the worker's first look is over: from now on only a wake-up brings it before 30 s
  await e.waitForState((await e.submit()).deliveries.p1, 'delivered', 15_000);
  const sent = Date.now();
  const { deliveries } = await e.submit();
  for (const p of ['p1', 'p2']) await e.waitForState(deliveries[p], 'delivered', 10_000);
  t.ok(Date.now() - sent < 10_000, `both delivered ${Date.now() - sent} ms after the POST (the worker's poll is 30 s)`);
  t.equal(await logEntriesAdded(e.r, e.k), 0, 'nothing went through the ingest log');
});

t.test('a wake-up message may name several platforms, separated by spaces', async (t) => {
  const { pub, sub } = clients(t);
  const heard: string[] = [];
  const w = await subscribeWork(sub, 'many', (p) => heard.push(p));
  t.teardown(() => w.close());
  await pub.publish(workChannel('many'), 'p-a p-b');
  await until(() => heard.length === 2, 5_000, 'both heard');
  t.same(heard, ['p-a', 'p-b']);
});

t.test('subscribeWork hears what any connection publishes, and unsubscribes when closed', async (t) => {
  const { pub, sub } = clients(t);
  const heard: string[] = [];
  const w = await subscribeWork(sub, 'wk', (p) => heard.push(p));
  t.equal(await pub.publish(workChannel('wk'), 'p-grid'), 1, 'one subscriber');
  await until(() => heard.length > 0, 5_000, 'the message heard');
  t.same(heard, ['p-grid']);
  t.equal(await pub.publish(workChannel('other'), 'p-x'), 0, 'another installation prefix is another channel');
  w.close();
  await until(async () => ((await pub.pubsub('NUMSUB', workChannel('wk'))) as [string, number])[1] === 0, 5_000, 'the subscription gone');
  t.pass('closed: no subscriber left on the channel');
});

t.test('with Redis away, subscribing does not hold the start: it waits waitMs, and subscribes once Redis is back', async (t) => {
  const own = await startRedis();
  const client = new Redis(own.url, { lazyConnect: true, enableOfflineQueue: true, maxRetriesPerRequest: null, retryStrategy: () => 100 });
  client.on('error', () => undefined);
  t.teardown(() => client.disconnect());
  await own.stop();
  const heard: string[] = [];
  const started = Date.now();
  const w = await subscribeWork(client, 'away', (p) => heard.push(p), 300);
  t.teardown(() => w.close());
  t.ok(Date.now() - started < 2_000, `returned after ${Date.now() - started} ms with Redis away`);
  await own.restart();
  const pub = new Redis(own.url);
  t.teardown(() => pub.disconnect());
  await until(async () => (await pub.publish(workChannel('away'), 'p-back')) === 1, 10_000, 'subscribed after Redis came back');
  await until(() => heard.includes('p-back'), 5_000, 'the message heard');
  t.pass('heard once Redis was back');
  await own.stop();
});

t.test('publishWork sends one message per platform per event-loop turn', async (t) => {
  const { pub, sub } = clients(t);
  const heard: string[] = [];
  const w = await subscribeWork(sub, 'burst', (p) => heard.push(p));
  t.teardown(() => w.close());
  const stop = publishWork(pub, 'burst');
  t.teardown(stop);
  // A burst in one turn: 50 jobs for p1, 1 for p2.
  for (let i = 0; i < 50; i++) bus.emitEvent('work.enqueued', { platformId: 'p1' });
  bus.emitEvent('work.enqueued', { platformId: 'p2' });
  await until(() => heard.length >= 2, 5_000, 'the burst heard');
  // A marker published after the burst's messages: once it is heard, nothing of the burst is still on its way.
  await pub.publish(workChannel('burst'), 'marker');
  await until(() => heard.includes('marker'), 5_000, 'the marker heard');
  t.same(heard.sort(), ['marker', 'p1', 'p2'], 'one message per platform');
  stop();
  bus.emitEvent('work.enqueued', { platformId: 'p3' });
  await pub.publish(workChannel('burst'), 'marker2');
  await until(() => heard.includes('marker2'), 5_000, 'the second marker heard');
  t.notOk(heard.includes('p3'), 'nothing published once stopped');
});
