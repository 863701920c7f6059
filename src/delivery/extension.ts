import type { ExtensionFactory } from '../extensions.js';
import { deliveryRoutes } from '../routes/deliveries.js';
import { DeliveryEngine } from './engine.js';
import { loadPlatforms } from './platforms.js';

/** The delivery engine as a part of the process: workers in worker roles, routes in API roles. */
export const engineExtension: ExtensionFactory = async (rt, role) => {
  const platforms = await loadPlatforms(rt.cfg);
  let engine: DeliveryEngine | undefined;
  if (role !== 'api') {
    engine = new DeliveryEngine({
      redisUrl: rt.redisUrl,
      redis: rt.redis,
      keys: rt.keys,
      prefix: rt.cfg.redis.prefix,
      platforms,
      log: rt.log,
      lockDurationMs: (rt.cfg as { engine?: { lockDurationMs?: number } }).engine?.lockDurationMs,
      stalledIntervalMs: (rt.cfg as { engine?: { stalledIntervalMs?: number } }).engine?.stalledIntervalMs,
    });
    await engine.start();
  }
  return {
    name: 'engine',
    routes: [deliveryRoutes(engine)],
    readiness: async () => {
      const circuits: Record<string, string> = {};
      for (const [id, c] of engine?.circuits ?? []) circuits[id] = (await c.state()).state;
      return engine ? { workers: engine.workers.size, circuits } : {};
    },
    close: () => engine?.close() ?? Promise.resolve(),
  };
};
