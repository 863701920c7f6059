import type { ExtensionFactory } from '../extension-types.js';
import { delivers } from '../roles.js';
import { Dispatcher } from './dispatcher.js';

/**
 * The ingest dispatcher as a part of the process: in every process with the worker role (`worker`
 * and the all-in-one `all`), never in `api` (src/ingest/dispatcher.ts).
 */
export const dispatcherExtension: ExtensionFactory = async (rt, role) => {
  if (!delivers(role)) return undefined;
  const d = new Dispatcher(rt.redis, rt.keys, rt.cfg.redis.prefix, rt.materialiser, rt.log, { claimIdleMs: rt.cfg.engine.ingestClaimIdleMs });
  await d.start();
  return { name: 'dispatcher', close: () => d.stop() };
};
