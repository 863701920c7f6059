/**
 * Test helper: look at what fenliu wrote to Redis, with our own connections (not fenliu's).
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { deliveryQueueName, keys } from '../../src/store/keys.js';

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
      q = new Queue(deliveryQueueName(platformId), { connection: { url: this.url, maxRetriesPerRequest: 1 } as any, prefix: keys(this.prefix).queuePrefixOf(platformId) });
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
    // Per-alert keys carry their bucket's hash tag: <prefix>:{b…}:alert:<id>[:suffix].
    const found = await this.redis.keys(`${this.prefix}:{*}:alert:*`);
    return found.map((k) => k.slice(k.indexOf(':alert:') + ':alert:'.length)).filter((id) => !id.includes(':'));
  }

  async alertRecord(id: string): Promise<any> {
    const raw = await this.redis.get(keys(this.prefix).alert(id));
    return raw ? JSON.parse(raw) : undefined;
  }

  async delivery(id: string): Promise<Record<string, string>> {
    return this.redis.hgetall(keys(this.prefix).delivery(id));
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => undefined)));
    this.redis.disconnect();
  }
}
