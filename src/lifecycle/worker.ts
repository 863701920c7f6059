import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Platform } from '../delivery/platforms.js';
import { prepare } from '../delivery/http.js';
import { getDeliveries } from '../store/records.js';
import { each, zByRank } from '../store/fanout.js';
import { bucketOf } from '../store/keys.js';
import type { Lifecycle, LifecycleJobData } from './service.js';
import { LIFECYCLE_QUEUE } from './service.js';
import { sweepRetention } from '../store/retention.js';
import { migrateDeliveryQueues } from '../store/migrate.js';
import { settledWithin } from '../bounded.js';
import { relayAllAudit } from '../store/audit-relay.js';

/** How many open deliveries one poll round asks a platform about. */
const POLL_BATCH = 200;

/**
 * Runs SLA sweeps, poll rounds and retention. Each is a BullMQ job scheduler (polls: one per
 * platform with a poll hook), so exactly one round runs per interval across all worker processes.
 */
export class LifecycleWorker {
  private worker?: Worker<LifecycleJobData>;
  /**
   * The jobs taken and not yet recorded as completed or failed (BullMQ's events, after its own
   * write of the outcome): a close waits for them, bounded.
   */
  private readonly active = new Set<string>();
  private onSettled?: () => void;

  constructor(
    private readonly lc: Lifecycle,
    private readonly platforms: Map<string, Platform>,
    private readonly connection: Redis,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    for (const p of this.platforms.values()) {
      if (!p.adapter.poll) continue;
      const every = (p.cfg as { poll?: { everyMs?: number } }).poll?.everyMs ?? 60_000;
      await this.lc.lifecycleQueue.upsertJobScheduler(`poll.${p.id}`, { every }, { name: 'poll', data: { kind: 'poll', platformId: p.id }, opts: { removeOnComplete: true, removeOnFail: { count: 100 } } });
    }
    // One sweep per interval across all worker processes finds the SLA deadlines that are due.
    await this.lc.lifecycleQueue.upsertJobScheduler('sla', { every: this.lc.cfg.engine?.slaSweepMs ?? 1_000 }, { name: 'sla-sweep', data: { kind: 'sla-sweep' }, opts: { removeOnComplete: true, removeOnFail: { count: 100 } } });
    const r = this.lc.cfg.retention;
    await this.lc.lifecycleQueue.upsertJobScheduler('retention', { every: r.sweepEveryMs }, { name: 'retention', data: { kind: 'retention' }, opts: { removeOnComplete: true, removeOnFail: { count: 10 } } });
    this.worker = new Worker<LifecycleJobData>(
      LIFECYCLE_QUEUE,
      (job) => {
        if (job.id) this.active.add(job.id);
        return this.process(job);
      },
      { connection: this.connection, prefix: this.lc.keys.queuePrefix, concurrency: 8 },
    );
    const settled = (job?: Job) => {
      if (job?.id && this.active.delete(job.id)) this.onSettled?.();
    };
    this.worker.on('completed', settled);
    this.worker.on('failed', settled);
    this.worker.on('error', (err) => this.log.warn({ err: { message: err.message } }, 'lifecycle worker error'));
    await this.worker.waitUntilReady();
  }

  /**
   * Stops taking jobs, lets those in hand finish and their outcome be written (bounded by
   * `timeoutMs`), then closes without BullMQ's own wait: with Redis gone that wait never ends (nor
   * its lock and stalled-check timers, which then keep the process alive). A job cut short by the
   * bound is one Redis could not be asked about anyway; BullMQ's stalled check runs it again.
   */
  async close(timeoutMs = 5_000): Promise<void> {
    const w = this.worker;
    if (!w) return;
    // No Redis call: no new job is started from here on.
    await settledWithin(w.pause(true), 1_000);
    const deadline = Date.now() + timeoutMs;
    while (this.active.size && Date.now() < deadline) {
      await settledWithin(new Promise<void>((res) => (this.onSettled = res)), deadline - Date.now());
    }
    this.onSettled = undefined;
    await settledWithin(w.close(true), 1_000);
  }

  private async process(job: Job<LifecycleJobData>): Promise<unknown> {
    const data = job.data;
    // Judge the deadline at the instant the timer was due, so a timer that fires a millisecond
    // early cannot re-arm itself under its own (still active) job id and be lost.
    if (data.kind === 'sla-sweep') {
      // Catch-all of the key layout, on the same schedule: audit events left in a bucket stream
      // (by a process that died between two steps).
      await relayAllAudit(this.lc.redis, this.lc.prefix).catch((err) => this.log.warn({ err: { message: (err as Error).message } }, 'audit relay failed'));
      return this.lc.sweepSla();
    }
    if (data.kind === 'sla') return this.lc.checkSla(data.deliveryId, Math.max(Date.now(), job.timestamp + (job.opts.delay ?? 0)));
    if (data.kind === 'retention') {
      // A worker's start moves an earlier version's BullMQ delivery jobs to the work sets; a job
      // such a version added after that (a rolling upgrade, against docs/scaling.md's advice)
      // would wait for the next start. This round moves it, so it waits one sweep at most.
      // Its own failure must not stop retention (Redis would grow).
      const moved = await migrateDeliveryQueues(this.lc.redis, this.lc.keys, [...this.platforms.keys()]).catch((err: Error) => {
        this.log.warn({ err: { message: err.message } }, 'moving an earlier version\'s delivery jobs failed; the next sweep tries again');
        return 0;
      });
      if (moved) this.log.warn({ jobs: moved }, 'moved delivery jobs an earlier version added to its BullMQ queues to the work sets');
      const res = await sweepRetention(this.lc.redis, this.lc.keys, this.lc.prefix, Date.now() - this.lc.cfg.retention.alertsDays * 86_400_000);
      if (res.alerts) this.log.info({ alerts: res.alerts }, 'retention: old alerts removed from Redis');
      return { ...res, moved };
    }
    if (data.kind === 'poll') {
      const p = this.platforms.get(data.platformId);
      if (p) return this.poll(p);
    }
    return undefined;
  }

  /** Asks a platform about its open deliveries and applies what it says. */
  async poll(p: Platform): Promise<number> {
    const hook = p.adapter.poll;
    if (!hook) return 0;
    const batch = (p.cfg as { poll?: { batchSize?: number } }).poll?.batchSize ?? POLL_BATCH;
    const openKeys = each(this.lc.keys.bucketList, (b) => this.lc.keys.open(b, p.id));
    const ids = await zByRank(this.lc.redis, openKeys, 0, batch - 1);
    if (!ids.length) return 0;
    const ds = await getDeliveries(this.lc.redis, this.lc.keys, ids);
    const ctx = {
      platform: { id: p.id, config: p.cfg.options },
      now: new Date().toISOString(),
      deliveries: ds.map((d) => ({ id: d.id, remoteTicketId: d.remoteTicketId, pendingToken: d.pendingToken })),
    };
    let applied = 0;
    for (const req of hook.requests(ctx)) {
      try {
        const sent = await p.client.authorise(prepare(p.cfg.url, req), `poll.${p.id}.${Date.now()}`);
        const res = await p.client.send(sent);
        if (res.response.status >= 300) {
          this.log.warn({ platform: p.id, status: res.response.status }, 'poll answered with an error');
          continue;
        }
        for (const ev of hook.parse(res.response, ctx)) {
          const r = await this.lc.handleEvent(p.id, ev, 'poll');
          if (r.applied) applied++;
        }
      } catch (err) {
        this.log.warn({ platform: p.id, err: { message: (err as Error).message } }, 'poll failed; next round will try again');
      }
    }
    // Rotate: the deliveries just asked about go to the back, so a platform with more open
    // deliveries than one batch gets each of them asked about in turn.
    // XX: only those still open (each in its bucket's index).
    const now = Date.now();
    await Promise.all(ids.map((id) => this.lc.redis.zadd(this.lc.keys.open(bucketOf(id), p.id), 'XX', now, id)));
    return applied;
  }
}
