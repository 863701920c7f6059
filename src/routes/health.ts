import { auditStreamKey } from '../audit/events.js';
import type { FastifyInstance } from 'fastify';
import { answerWithin } from '../bounded.js';

/**
 * How long /readyz waits for Redis (its PING and, beside it, the extra checks). A command to a Redis that
 * does not answer (hung, or mid-failover behind Sentinel, where the client holds commands until
 * it finds the new master) waits up to the 5 s command timeout; a probe must say "not ready" sooner.
 */
const READY_WAIT_MS = 1_000;

const bounded = <T>(work: Promise<T>): Promise<T> => answerWithin(work, READY_WAIT_MS);

export default async function healthRoutes(app: FastifyInstance) {
  const rt = app.fenliu;
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const checks: Record<string, unknown> = {};
    let ready = !rt.shuttingDown;
    // Side by side with the PING: with Redis not answering, the probe waits READY_WAIT_MS once.
    const extras = bounded(Promise.resolve().then(() => app.readinessExtras?.()));
    extras.catch(() => undefined); // awaited below; handled there
    try {
      await bounded(rt.redis.ping());
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
        const length = await bounded(rt.redis.xlen(auditStreamKey(rt.cfg.redis.prefix)));
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
      const extra = await extras;
      if (extra) Object.assign(checks, extra);
    } catch (err) {
      checks.extras = `failed: ${(err as Error).message}`;
      ready = false;
    }
    reply.code(ready ? 200 : 503);
    return { status: ready ? 'ready' : 'unavailable', checks };
  });
}
