import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { ExtensionFactory } from '../extension-types.js';
import { servesApi } from '../roles.js';
import { ProblemError } from '../errors.js';
import { hasScope } from '../plugins/app/auth.js';
import { sendProblem } from '../plugins/app/problems.js';
import type { Runtime } from '../runtime.js';
import { consoleRoutes } from './routes.js';
import { flowRoutes } from './flow.js';

export const QUEUES_PATH = '/admin/queues';

/**
 * bull-board at /admin/queues, admin only (admin key, or a console session of an admin key).
 * Read-only: retrying or removing jobs behind fenliu's back would bypass the delivery state
 * machine and its audit trail; dead letters are retried from the console or the API instead.
 */
export function queueBoardRoutes(rt: Runtime) {
  return async function routes(app: FastifyInstance): Promise<void> {
    await app.register(async (scope) => {
      // bull-board sets its own error handler, so refusals are sent here rather than thrown.
      scope.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
        if (!req.principal) return sendProblem(reply, req, new ProblemError('FENLIU_ERR_UNAUTHENTICATED', 'Sign in to the console with an admin key, or send an admin key', { headers: { 'www-authenticate': 'Bearer' } }));
        if (!hasScope(req.principal, 'admin')) return sendProblem(reply, req, new ProblemError('FENLIU_ERR_FORBIDDEN', 'The queue dashboard needs the admin scope'));
      });
      const serverAdapter = new FastifyAdapter();
      createBullBoard({
        // Deliveries are in fenliu's own work sets (the platforms page shows their counts); only the lifecycle queue is BullMQ's.
        queues: [new BullMQAdapter(rt.queues.lifecycle, { readOnlyMode: true })],
        serverAdapter,
        options: { uiConfig: { boardTitle: 'fenliu queues' } },
      });
      serverAdapter.setBasePath(QUEUES_PATH);
      await scope.register(serverAdapter.registerPlugin(), { prefix: QUEUES_PATH });
    });
  };
}

/** The operator console, its flow API and the queue dashboard: only processes that serve the API. */
export const consoleExtension: ExtensionFactory = async (rt, role) => {
  if (!servesApi(role)) return undefined;
  return { name: 'console', routes: [consoleRoutes, flowRoutes, queueBoardRoutes(rt)] };
};
