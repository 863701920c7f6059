import { Redis, type RedisOptions } from 'ioredis';

/**
 * Connection for request handlers: commands fail at once while Redis is away (the API answers
 * 503 instead of hanging), and the client keeps reconnecting so the API recovers by itself.
 */
export function apiConnection(url: string, extra: RedisOptions = {}): Redis {
  return new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 5_000,
    connectTimeout: 2_000,
    retryStrategy: (n) => Math.min(50 * 2 ** n, 1_000),
    lazyConnect: true,
    ...extra,
  });
}

/** Connection for BullMQ workers: blocking commands, retried forever (BullMQ's requirement). */
export function workerConnection(url: string, extra: RedisOptions = {}): Redis {
  return new Redis(url, {
    maxRetriesPerRequest: null,
    retryStrategy: (n) => Math.min(50 * 2 ** n, 1_000),
    ...extra,
  });
}

/** Resolves when the client is ready, or rejects with a clear message after `timeoutMs`. */
export async function waitReady(redis: Redis, url: string, timeoutMs = 5_000): Promise<void> {
  if (redis.status === 'ready') return;
  if (redis.status === 'wait') redis.connect().catch(() => undefined);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`Redis at ${redactUrl(url)} is unreachable (waited ${timeoutMs} ms)`));
    }, timeoutMs);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      redis.off('ready', onReady);
    };
    redis.on('ready', onReady);
  });
}

export function redactUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//***@');
}
