import type { ExtensionFactory } from '../extension-types.js';
import { delivers } from '../roles.js';
import { deliveryRoutes } from '../routes/deliveries.js';
import { Circuit } from './circuit.js';
import { DeliveryEngine } from './engine.js';
import { loadPlatforms } from './platforms.js';
import { discoverPlatforms } from './discovery.js';
import { LifecycleWorker } from '../lifecycle/worker.js';
import { lifecycleRoutes } from '../routes/lifecycle.js';
import { workerConnection } from '../redis/connect.js';
import type { Redis } from 'ioredis';
import { migrateDeliveryQueues } from '../store/migrate.js';
import { publishWork } from './wake.js';

/** The delivery engine as a part of the process: workers in worker roles, routes in API roles. */
export const engineExtension: ExtensionFactory = async (rt, role) => {
  const platforms = await loadPlatforms(rt.cfg);
  // Every role changes states (an API process applies callbacks), so every role knows which platforms poll.
  rt.lifecycle.polls = (id) => platforms.get(id)?.adapter.poll !== undefined;
  let engine: DeliveryEngine | undefined;
  let lifecycleWorker: LifecycleWorker | undefined;
  let lwConnection: Redis | undefined;
  if (delivers(role)) {
    // Before the first translate: the platform's own description may set options (Open311 format).
    await discoverPlatforms(platforms, rt.log);
    // Jobs left in the BullMQ delivery queues (or outboxes) of an earlier version go to the work sets first.
    const moved = await migrateDeliveryQueues(rt.redis, rt.keys, rt.cfg.platforms.map((p) => p.id));
    if (moved) rt.log.warn({ jobs: moved }, 'moved pending delivery jobs from the BullMQ queues of an earlier version to the work sets');
    engine = new DeliveryEngine({
      redisTarget: rt.redisTarget,
      redis: rt.redis,
      keys: rt.keys,
      prefix: rt.cfg.redis.prefix,
      platforms,
      log: rt.log,
      lifecycle: rt.lifecycle,
      lockDurationMs: rt.cfg.engine?.lockDurationMs,
      stalledIntervalMs: rt.cfg.engine?.stalledIntervalMs,
      pollMs: rt.cfg.engine?.pollMs,
    });
    await engine.start();
    lwConnection = workerConnection(rt.redisTarget);
    lwConnection.on('error', () => undefined);
    lifecycleWorker = new LifecycleWorker(rt.lifecycle, platforms, lwConnection, rt.log);
    await lifecycleWorker.start();
  }
  const circuitsOf =
    engine?.circuits ?? new Map([...platforms.values()].map((p) => [p.id, new Circuit(rt.redis, rt.cfg.redis.prefix, p.id, p.settings.circuitBreaker)]));
  // Every role adds work (an API process a cancel, an urge, a redelivery): the engines hear of it.
  const stopPublishing = publishWork(rt.redis, rt.cfg.redis.prefix);
  return {
    name: 'engine',
    routes: [deliveryRoutes(engine), lifecycleRoutes(platforms)],
    readiness: async () => {
      // Circuits live in Redis, so an API-only process reports them too (with each platform's cool-down).
      const circuits: Record<string, string> = {};
      for (const [id, c] of circuitsOf) circuits[id] = (await c.state()).state;
      return engine ? { workers: engine.workers.size, circuits } : { circuits };
    },
    close: async (deadline) => {
      // Side by side, each until the stop's deadline: with Redis gone nothing in hand can end,
      // and the stop must still fit server.shutdownTimeoutMs.
      const left = Math.max(500, deadline - Date.now());
      stopPublishing();
      await Promise.all([lifecycleWorker?.close(left).then(() => lwConnection?.disconnect()), engine?.close(left)]);
    },
  };
};
