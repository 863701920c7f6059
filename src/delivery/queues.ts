import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { bus } from '../events.js';
import type { Keys } from '../store/keys.js';
import { counts, enqueue, listJobs, oldest, type DeliveryJobData, type QueueCounts, type QueuedJob } from './work.js';

export { jobPriority, type DeliveryJobData, type QueuedJob } from './work.js';

export interface AddOptions {
  /** Idempotency: a job id waiting or being attempted is not added again. It starts with the delivery id. */
  jobId: string;
  /** jobPriority(): 1 urgent, anything else normal. */
  priority: number;
  /** Due this long from now. */
  delayMs?: number;
}

/**
 * The delivery queues: fenliu's own per-bucket, per-platform work sets (src/delivery/work.ts),
 * taken by the engine (src/delivery/engine.ts); one set per platform, so a dead platform never
 * delays the others. Only the lifecycle queue (SLA sweeps, poll rounds, job schedulers) is a
 * BullMQ queue: it is not per alert.
 */
export class QueueRegistry {
  readonly platforms: Set<string>;
  /** SLA sweeps, poll rounds and retention (src/lifecycle). */
  readonly lifecycle: Queue;

  constructor(
    readonly connection: Redis,
    readonly keys: Keys,
    platformIds: string[],
  ) {
    this.platforms = new Set(platformIds);
    this.lifecycle = new Queue('lifecycle', { connection, prefix: keys.queuePrefix });
    // The shared connection's errors are the runtime's to report (once per state change); a
    // queue without a listener would print a stack trace per reconnect attempt (a failover).
    this.lifecycle.on('error', () => undefined);
  }

  has(platformId: string): boolean {
    return this.platforms.has(platformId);
  }

  /** Enqueues a job (idempotent by job id) and wakes this process's engine; true when it was added. */
  async add(data: DeliveryJobData, o: AddOptions): Promise<boolean> {
    if (!this.has(data.platformId)) throw new Error(`no queue for platform ${data.platformId}`);
    const added = await enqueue(this.connection, this.keys, { jobId: o.jobId, data, urgent: o.priority <= 1, delayMs: o.delayMs });
    if (added) bus.emitEvent('work.enqueued', { platformId: data.platformId });
    return added;
  }

  counts(platformId: string): Promise<QueueCounts> {
    return counts(this.connection, this.keys, platformId);
  }

  oldest(platformId: string): Promise<number | undefined> {
    return oldest(this.connection, this.keys, platformId);
  }

  jobs(platformId: string): Promise<QueuedJob[]> {
    return listJobs(this.connection, this.keys, platformId);
  }

  async job(platformId: string, id: string): Promise<QueuedJob | undefined> {
    return (await this.jobs(platformId)).find((j) => j.id === id);
  }

  async waitUntilReady(): Promise<void> {
    await this.lifecycle.waitUntilReady();
  }

  async close(): Promise<void> {
    await this.lifecycle.close();
  }
}
