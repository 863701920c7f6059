/**
 * Test helper: look at what fenliu wrote to Redis, with our own connections (not fenliu's).
 */
import { Redis } from 'ioredis';
import { listJobs, type QueuedJob } from '../../src/delivery/work.js';
import { keys } from '../../src/store/keys.js';

export type { QueuedJob };

export class RedisInspector {
  readonly redis: Redis;

  constructor(
    readonly url: string,
    readonly prefix = 'fenliu',
  ) {
    this.redis = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: false });
    this.redis.on('error', () => undefined);
  }

  /** Every job of a platform's work sets, waiting (due now or later) or being attempted. */
  async jobs(platformId: string): Promise<QueuedJob[]> {
    return listJobs(this.redis, keys(this.prefix), platformId);
  }

  async job(platformId: string, id: string): Promise<QueuedJob | undefined> {
    return (await this.jobs(platformId)).find((j) => j.id === id);
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
    this.redis.disconnect();
  }
}
