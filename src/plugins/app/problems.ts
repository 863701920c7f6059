import fp from 'fastify-plugin';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ProblemError, toProblem } from '../../errors.js';

/**
 * Redis unreachable or not accepting writes: nothing stored, retry later. OOM: maxmemory reached
 * under noeviction (also inside EXECABORT of a MULTI). Redis Cluster during a failover: ioredis
 * wraps the last connection error in "Too many Cluster redirections" (its code lost), or has no
 * node left to ask.
 */
const UNAVAILABLE =
  /enableOfflineQueue|Connection is closed|Stream isn't writeable|Command timed out|Socket timeout|LOADING|READONLY|MISCONF|Reached the max retries|OOM command not allowed|NOREPLICAS|sentinels are unreachable|failed to connect to sentinel|CLUSTERDOWN|TRYAGAIN|Too many Cluster redirections|None of startup nodes is available|Cluster is disconnect|Node is disconnected|Failed to refresh slots cache|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE/i;

/** Redis or connection failures: the gateway cannot store, so it must not accept. */
export function isUnavailable(err: unknown): boolean {
  const e = err as { code?: string; name?: string; message?: string; previousErrors?: unknown[] };
  if (!e) return false;
  // ioredis: a MULTI refused at EXEC ("EXECABORT ... previous errors") carries the queued commands' errors.
  // One level only: the array can hold the EXECABORT error itself.
  if (Array.isArray(e.previousErrors) && e.previousErrors.some((p) => p !== err && UNAVAILABLE.test((p as Error)?.message ?? ''))) return true;
  if (e.name === 'MaxRetriesPerRequestError') return true;
  if (e.code && ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTCONN', 'EHOSTUNREACH'].includes(e.code)) return true;
  const m = e.message ?? '';
  return UNAVAILABLE.test(m);
}

/** Maps every error to RFC 9457 problem+json; a client's mistake is never a 500. */
export function toProblemError(err: FastifyError | Error): ProblemError {
  if (err instanceof ProblemError) return err;
  const fe = err as FastifyError;
  switch (fe.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ProblemError('FENLIU_ERR_UNSUPPORTED_MEDIA_TYPE', 'Send the alert as application/json');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ProblemError('FENLIU_ERR_PAYLOAD_TOO_LARGE', fe.message);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ProblemError('FENLIU_ERR_MALFORMED_JSON', fe.message);
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
    case 'FST_ERR_CTP_INVALID_TYPE':
      return new ProblemError('FENLIU_ERR_BAD_REQUEST', fe.message);
    case 'FST_ERR_VALIDATION': {
      const v = (fe as FastifyError & { validation?: { instancePath: string; message?: string; params?: Record<string, unknown> }[]; validationContext?: string }).validation ?? [];
      const ctx = (fe as { validationContext?: string }).validationContext ?? 'body';
      return new ProblemError('FENLIU_ERR_BAD_REQUEST', fe.message, {
        errors: v.map((e) => ({ pointer: `/${ctx}${e.instancePath}${e.params && 'missingProperty' in e.params ? `/${String(e.params.missingProperty)}` : ''}`, message: e.message ?? 'is invalid' })),
      });
    }
  }
  if (fe.statusCode === 429) return new ProblemError('FENLIU_ERR_RATE_LIMITED', fe.message);
  if (err instanceof SyntaxError || (fe.statusCode === 400 && /JSON/i.test(fe.message))) return new ProblemError('FENLIU_ERR_MALFORMED_JSON', fe.message);
  if (fe.statusCode === 413) return new ProblemError('FENLIU_ERR_PAYLOAD_TOO_LARGE', fe.message);
  if (fe.statusCode === 415) return new ProblemError('FENLIU_ERR_UNSUPPORTED_MEDIA_TYPE', fe.message);
  if (fe.statusCode === 404) return new ProblemError('FENLIU_ERR_NOT_FOUND', fe.message);
  if (isUnavailable(err)) return new ProblemError('FENLIU_ERR_UNAVAILABLE', 'Redis is unreachable; nothing was stored. Retry later.', { headers: { 'retry-after': '5' } });
  if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) return new ProblemError('FENLIU_ERR_BAD_REQUEST', fe.message);
  return new ProblemError('FENLIU_ERR_INTERNAL', 'Internal error');
}

export function sendProblem(reply: FastifyReply, req: FastifyRequest, p: ProblemError) {
  if (p.headers) reply.headers(p.headers);
  return reply.code(p.status).type('application/problem+json').send(toProblem(p, req.url));
}

export default fp(
  async (app) => {
    app.setErrorHandler((err: FastifyError, req, reply) => {
      const p = toProblemError(err);
      if (p.status >= 500 && p.code === 'FENLIU_ERR_INTERNAL') req.log.error({ err }, 'unhandled error');
      else if (p.status >= 500) req.log.warn({ err: { message: err.message, code: (err as FastifyError).code } }, p.code);
      return sendProblem(reply, req, p);
    });
    app.setNotFoundHandler((req, reply) => sendProblem(reply, req, new ProblemError('FENLIU_ERR_NOT_FOUND', `No route ${req.method} ${req.url.split('?')[0]}`)));
  },
  { name: 'fenliu-problems' },
);
