/**
 * Test helper: look at what fenliu wrote to Redis, with our own connections (not fenliu's).
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { deliveryQueueName } from '../../src/store/keys.js';

export interface QueuedJob {
  id: string;
  name: string;
  data: { alertId: string; deliveryId: string; platformId: string; kind?: string };
  priority: number;
}

export class RedisInspector {
  readonly redis: Redis;
  private readonly queues = new Map<string, Queue>();

  constructor(
    readonly url: string,
    readonly prefix = 'fenliu',
  ) {
    this.redis = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: false });
    this.redis.on('error', () => undefined);
  }

  queue(platformId: string): Queue {
    let q = this.queues.get(platformId);
    if (!q) {
      q = new Queue(deliveryQueueName(platformId), { connection: { url: this.url, maxRetriesPerRequest: 1 } as any, prefix: `${this.prefix}:q` });
      q.on('error', () => undefined);
      this.queues.set(platformId, q);
    }
    return q;
  }

  /** Every job that is still waiting in a platform's queue (any waiting state). */
  async jobs(platformId: string): Promise<QueuedJob[]> {
    const list = await this.queue(platformId).getJobs(['waiting', 'prioritized', 'delayed', 'active', 'waiting-children'], 0, -1);
    return list.filter(Boolean).map((j) => ({ id: String(j.id), name: j.name, data: j.data, priority: j.priority }));
  }

  async job(platformId: string, id: string): Promise<QueuedJob | undefined> {
    const j = await this.queue(platformId).getJob(id);
    return j ? { id: String(j.id), name: j.name, data: j.data, priority: j.priority } : undefined;
  }

  async alertIds(): Promise<string[]> {
    const keys = await this.redis.keys(`${this.prefix}:alert:*`);
    return keys.map((k) => k.slice(`${this.prefix}:alert:`.length));
  }

  async alertRecord(id: string): Promise<any> {
    const raw = await this.redis.get(`${this.prefix}:alert:${id}`);
    return raw ? JSON.parse(raw) : undefined;
  }

  async delivery(id: string): Promise<Record<string, string>> {
    return this.redis.hgetall(`${this.prefix}:dlv:${id}`);
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => undefined)));
    this.redis.disconnect();
  }
}
