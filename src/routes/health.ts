import { auditStreamKey } from '../audit/events.js';
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
    checks.queues = rt.queues.platforms.size;
    if (checks.redis === 'ok') {
      // The audit stream holds what the archiver has not moved to files yet; unbounded, it fills
      // Redis until ingest fails. Above the limit the instance says so before that happens.
      const limit = rt.cfg.audit.streamLimit;
      try {
        const length = await rt.redis.xlen(auditStreamKey(rt.cfg.redis.prefix));
        checks.auditStream = { length, limit, archiving: rt.cfg.audit.archive };
        if (length > limit) {
          checks.auditStream = { length, limit, archiving: rt.cfg.audit.archive, problem: 'over audit.streamLimit: run the archiver (audit.archive: true in a worker or archiver process)' };
          ready = false;
        }
      } catch (err) {
        checks.auditStream = `unknown: ${(err as Error).message}`;
      }
    }
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
