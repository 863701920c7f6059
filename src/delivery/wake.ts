import type { Redis } from 'ioredis';
import { bus } from '../events.js';
import { duplicateConnection } from '../redis/connect.js';
import { settledWithin } from '../bounded.js';

/**
 * Work enqueued in one process wakes the engines of the others at once, instead of at their next
 * look (`engine.pollMs`: 200 ms, 1 s on Redis Cluster). A follow-up added by an API process (a
 * cancel from 110, an urge for a repeat call, an operator's redelivery) reaches its platform as
 * soon as one added by the worker itself. First deliveries need none of this when the dispatcher
 * writes them (it runs in the worker and wakes its engine in-process); with write-through ingest
 * (`engine.ingestWriteThrough`) the ingest script publishes one message per call, naming the
 * platforms of its batch separated by spaces (src/ingest/script.ts).
 *
 * One Redis pub/sub message per job added (by platform id). A lost message costs only the delay
 * the poll already bounds: the work sets in Redis, not the message, say what is due.
 */
export function workChannel(prefix: string): string {
  return `${prefix}:work`;
}

/**
 * Publishes this process's `work.enqueued` events, one message per platform per event-loop turn
 * (a sweep that enqueues many jobs at once wakes each engine once); returns the function that
 * stops it.
 */
export function publishWork(redis: Redis, prefix: string): () => void {
  const channel = workChannel(prefix);
  const pending = new Set<string>();
  const flush = () => {
    for (const platformId of pending) redis.publish(channel, platformId).catch(() => 0);
    pending.clear();
  };
  return bus.onEvent('work.enqueued', ({ platformId }) => {
    if (pending.size === 0) setImmediate(flush);
    pending.add(platformId);
  });
}

/**
 * Calls `onWork(platformId)` for work published by any process (this one's included), on a
 * connection of its own (a subscribed connection runs no other command); ioredis subscribes
 * again after a reconnect or a failover. Waits at most `waitMs` for the subscription: with Redis
 * away it is made once Redis is back, and a start must not hang on it. A refusal (an ACL without
 * pub/sub) rejects.
 */
export async function subscribeWork(redis: Redis, prefix: string, onWork: (platformId: string) => void, waitMs = 2_000): Promise<{ close(): void }> {
  const sub = duplicateConnection(redis, { lazyConnect: false, enableOfflineQueue: true, maxRetriesPerRequest: null });
  sub.on('error', () => undefined);
  // one platform id, or several separated by spaces (the ingest script's one message per call)
  sub.on('message', (_channel: string, ids: string) => {
    for (const id of ids.split(' ')) onWork(id);
  });
  let refused: Error | undefined;
  const subscribed = sub.subscribe(workChannel(prefix)).catch((err: Error) => {
    refused = err;
  });
  await settledWithin(subscribed, waitMs);
  if (refused) {
    sub.disconnect();
    throw refused;
  }
  return { close: () => sub.disconnect() };
}
