import { Queue, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { deliveryQueueName } from '../store/keys.js';

/** What every delivery job carries: enough to find the records, nothing else (no personal data in the queue). */
export interface DeliveryJobData {
  alertId: string;
  deliveryId: string;
  platformId: string;
  /** `deliver` (first send), or a follow-up kind added by the lifecycle (cancel, update, urge). */
  kind?: 'deliver' | 'cancel' | 'update' | 'urge' | 'redeliver';
  /** For cancel: why 110 withdrew the alert. */
  reason?: string;
  /** For urge: the repeat call that prompted it. */
  repeat?: { alertId: string; reportedAt: string; summary: string };
}

/** BullMQ priority: lower runs first. Every job gets one so urgent alerts overtake normal ones in order. */
export function jobPriority(priority: 'normal' | 'urgent' | undefined): number {
  return priority === 'urgent' ? 1 : 10;
}

export const DEFAULT_JOB_OPTIONS: JobsOptions = {
  // Retries are decided by the engine's classifier; BullMQ only carries them out.
  attempts: 1_000,
  backoff: { type: 'fenliu' },
  // The delivery record, its attempt log and the dead-letter store keep the history; the queue
  // need not. Removing at once (as the naive baseline does) spares BullMQ a trim on every finish.
  removeOnComplete: true,
  removeOnFail: { age: 7 * 24 * 3600 },
};

/** One BullMQ queue per platform, so a dead platform never delays the others. */
export class QueueRegistry {
  readonly queues = new Map<string, Queue<DeliveryJobData>>();
  /** SLA timers and poll rounds (src/lifecycle). */
  readonly lifecycle: Queue;

  constructor(
    readonly connection: Redis,
    readonly prefix: string,
    platformIds: string[],
    readonly jobOptions: (platformId: string) => JobsOptions = () => DEFAULT_JOB_OPTIONS,
  ) {
    this.lifecycle = new Queue('lifecycle', { connection, prefix });
    for (const id of platformIds) {
      this.queues.set(
        id,
        new Queue<DeliveryJobData>(deliveryQueueName(id), { connection, prefix, defaultJobOptions: jobOptions(id) }),
      );
    }
    // The shared connection's errors are the runtime's to report (once per state change); a
    // queue without a listener would print a stack trace per reconnect attempt (a failover).
    for (const q of [this.lifecycle, ...this.queues.values()]) q.on('error', () => undefined);
  }

  get(platformId: string): Queue<DeliveryJobData> {
    const q = this.queues.get(platformId);
    if (!q) throw new Error(`no queue for platform ${platformId}`);
    return q;
  }

  async waitUntilReady(): Promise<void> {
    await Promise.all([...this.queues.values(), this.lifecycle].map((q) => q.waitUntilReady()));
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values(), this.lifecycle].map((q) => q.close()));
  }
}
