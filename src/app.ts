import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import rateLimit from '@fastify/rate-limit';
import { coalescingRedisStore } from './plugins/app/rate-limit-store.js';
import type { Logger } from 'pino';
import { LazyChildLogger } from './log.js';
import authPlugin from './plugins/app/auth.js';
import { consoleSessionPlugin } from './console/session.js';
import { requestMetricsPlugin } from './metrics/metrics.js';
import problemsPlugin, { sendProblem } from './plugins/app/problems.js';
import swaggerPlugin from './plugins/external/swagger.js';
import alertRoutes from './routes/alerts.js';
import healthRoutes from './routes/health.js';
import statsRoutes from './routes/stats.js';
import { ProblemError } from './errors.js';
import type { Runtime } from './runtime.js';

declare module 'fastify' {
  interface FastifyInstance {
    fenliu: Runtime;
    /** Extra readiness checks contributed by other parts (engine: circuit breakers). */
    readinessExtras?: () => Promise<Record<string, unknown>>;
  }
}

/** Probes, metrics and static pages are never rate-limited: orchestrators and browsers need them. */
const UNLIMITED = /^\/(healthz|readyz|metrics|openapi\.json|docs(\/.*)?|console(\/(?!api\/).*)?)$/;

/** Routes that may still be called while shutting down, so orchestrators see the state. */
const ALWAYS_OPEN = new Set(['/healthz', '/readyz']);

/** Root plugin: external plugins first, then app services, then routes. */
export const appPlugin = fp(
  async (app: FastifyInstance, opts: { rt: Runtime; extraRoutes?: ((app: FastifyInstance) => Promise<void>)[] }) => {
    const rt = opts.rt;
    app.decorate('fenliu', rt);
    await app.register(problemsPlugin);
    await app.register(authPlugin, { cfg: rt.cfg });
    await app.register(consoleSessionPlugin);
    await app.register(requestMetricsPlugin);
    app.addHook('onRequest', (req, reply, done) => {
      if (rt.shuttingDown && !ALWAYS_OPEN.has(req.url)) {
        reply.header('connection', 'close');
        sendProblem(reply, req, new ProblemError('FENLIU_ERR_SHUTTING_DOWN', 'The gateway is shutting down; retry against another instance', { headers: { 'retry-after': '5' } }));
        return;
      }
      done();
    });
    const perKey = rt.cfg.server.rateLimitPerKey ?? { max: 1000, perSeconds: 1 };
    await app.register(rateLimit, {
      // Every route gets a per-key budget; POST /v1/alerts replaces it with its per-source one.
      global: true,
      max: perKey.max,
      timeWindow: perKey.perSeconds * 1000,
      keyGenerator: (req) => (req.principal ? `key:${req.principal.keyId}` : `ip:${req.ip}`),
      allowList: (req) => req.method === 'GET' && UNLIMITED.test(req.url.split('?')[0]),
      // Counts live in Redis (shared by all API processes); one INCRBY per key per event-loop turn.
      store: coalescingRedisStore(rt.redis, `${rt.cfg.redis.prefix}:rl:`),
      skipOnError: true,
      errorResponseBuilder: (_req, ctx) => {
        const err = new ProblemError('FENLIU_ERR_RATE_LIMITED', `Rate limit of ${ctx.max} requests per ${ctx.after} exceeded`, { headers: { 'retry-after': String(Math.ceil(ctx.ttl / 1000)) } });
        (err as unknown as { statusCode: number }).statusCode = 429;
        return err;
      },
    });
    await app.register(swaggerPlugin);
    await app.register(healthRoutes);
    await app.register(alertRoutes);
    await app.register(statsRoutes);
    for (const r of opts.extraRoutes ?? []) await app.register(r);
  },
  { name: 'fenliu-app' },
);

export async function buildServer(rt: Runtime, logger: Logger, extraRoutes: ((app: FastifyInstance) => Promise<void>)[] = []): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: logger as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    // Made into a pino child only if something logs through req.log (src/log.ts).
    childLoggerFactory: (parent, bindings, opts) => new LazyChildLogger(parent as unknown as Logger, bindings, opts) as unknown as FastifyBaseLogger,
    bodyLimit: rt.cfg.server.bodyLimitBytes,
    requestTimeout: 30_000,
    connectionTimeout: 60_000,
    // Slow clients: headers must be complete within 10 s (Node's default is 60 s, above the
    // 30 s requestTimeout), and both limits are checked every 5 s instead of every 30 s, so a
    // slowloris connection lives at most ~15 s (headers) or ~35 s (body) (test/faults/slow-clients).
    http: { headersTimeout: 10_000, connectionsCheckingInterval: 5_000 },
    return503OnClosing: true,
    requestIdHeader: 'x-request-id',
    ajv: { customOptions: { allErrors: true, coerceTypes: true, removeAdditional: false } },
  });
  // One line per request, after the fact; never bodies. Written by the root logger with the
  // request id in it (what req.log, a child bound to it, would write), so no child is made for it.
  app.addHook('onResponse', (req, reply, done) => {
    logger.info({ reqId: req.id, method: req.method, url: req.url.split('?')[0], status: reply.statusCode, ms: Math.round(reply.elapsedTime), key: req.principal?.keyId }, 'request');
    done();
  });
  await app.register(appPlugin, { rt, extraRoutes });
  return app;
}
