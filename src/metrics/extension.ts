import type { Server } from 'node:http';
import type { ExtensionFactory } from '../extension-types.js';
import { servesApi } from '../roles.js';
import { createMetrics, metricsRoutes, startWorkerMetricsServer } from './metrics.js';

/**
 * Prometheus metrics in every role. API processes serve `/metrics`; worker-only processes serve
 * it on `127.0.0.1:$FENLIU_METRICS_PORT` when that is set (they have no API server).
 */
export const metricsExtension: ExtensionFactory = async (rt, role) => {
  const m = createMetrics(rt, role);
  let srv: Server | undefined;
  const port = Number(process.env.FENLIU_METRICS_PORT ?? '');
  if (!servesApi(role) && Number.isInteger(port) && port > 0) {
    srv = await startWorkerMetricsServer(m, port);
    rt.log.info({ port }, 'worker metrics on loopback');
  }
  return {
    name: 'metrics',
    routes: servesApi(role) ? [metricsRoutes(m)] : [],
    close: async () => {
      m.close();
      if (srv) await new Promise<void>((resolve) => srv!.close(() => resolve()));
    },
  };
};
