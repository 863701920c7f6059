import type { FastifyInstance } from 'fastify';

export default async function healthRoutes(app: FastifyInstance) {
  const rt = app.fenliu;
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const checks: Record<string, unknown> = {};
    let ready = !rt.shuttingDown;
    try {
      await rt.redis.ping();
      checks.redis = 'ok';
    } catch (err) {
      checks.redis = `unreachable: ${(err as Error).message}`;
      ready = false;
    }
    checks.queues = rt.queues.queues.size;
    if (rt.shuttingDown) checks.shutdown = 'in progress';
    // Extra checks (engine, audit) may need Redis too: their failure makes the instance
    // unready; it never turns /readyz into an error response.
    try {
      const extra = await app.readinessExtras?.();
      if (extra) Object.assign(checks, extra);
    } catch (err) {
      checks.extras = `failed: ${(err as Error).message}`;
      ready = false;
    }
    reply.code(ready ? 200 : 503);
    return { status: ready ? 'ready' : 'unavailable', checks };
  });
}
