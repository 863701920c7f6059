import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import helmet from '@fastify/helmet';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ProblemError } from '../errors.js';
import { hasScope, type Principal } from '../plugins/app/auth.js';
import { categoryNames } from './categories.js';
import { checkCsrf, parseCookies, SESSION_COOKIE, sessionCookie, type ConsoleSession } from './session.js';

/** The package root: the nearest folder up from this file that holds package.json (works from src/ and dist/src/). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  return process.cwd();
}

/** Where `npm run build:console` puts the single-page app. */
export function consoleDist(): string {
  return join(packageRoot(), 'dist', 'console');
}

/**
 * The console's policy: only our own scripts, styles, images and API; no framing; no referrer.
 * The SPA has no inline script or style element (Vite emits files), so nothing needs 'unsafe-inline'.
 */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** The same policy as directives, for @fastify/helmet. */
const CONSOLE_CSP_DIRECTIVES: Record<string, string[]> = Object.fromEntries(
  CONSOLE_CSP.split('; ').map((d) => {
    const [name, ...values] = d.split(' ');
    return [name.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase()), values];
  }),
);

function whoami(rt: FastifyInstance['fenliu'], p: Principal, s: { csrf: string; expiresAt: number }) {
  return {
    keyId: p.keyId,
    kind: p.kind,
    ownerId: p.ownerId ?? null,
    scopes: [...p.scopes].sort(),
    csrfToken: s.csrf,
    expiresAt: new Date(s.expiresAt).toISOString(),
    sources: rt.cfg.sources.map((x) => ({ id: x.id, name: x.name ?? x.id })),
    platforms: rt.cfg.platforms.map((x) => ({ id: x.id, name: x.name ?? x.id })),
    // Names for ids and codes, so the console never shows a raw id where config has a name.
    routes: rt.cfg.routes.map((x) => ({ id: x.id, name: x.name ?? x.id })),
    categories: categoryNames(rt.cfg),
  };
}

/** `/console` (the built SPA) and `/console/api/session` (sign in, who am I, sign out). */
export async function consoleRoutes(app: FastifyInstance): Promise<void> {
  const rt = app.fenliu;
  const store = app.consoleSessions;
  if (!store) throw new Error('console: register consoleSessionPlugin (src/console/session.ts) after the auth plugin in src/app.ts');

  app.post<{ Body: { key: string } }>(
    '/console/api/session',
    {
      schema: {
        hide: true,
        body: { type: 'object', required: ['key'], additionalProperties: false, properties: { key: { type: 'string', minLength: 1, maxLength: 512 } } },
      },
      // Guessing keys through the sign-in form is as slow as through the API.
      config: { rateLimit: { max: 10, timeWindow: 60_000, keyGenerator: (req: FastifyRequest) => `console-signin:${req.ip}` } },
    },
    async (req, reply) => {
      const principal = app.keyIndex.resolve(req.body.key);
      if (!principal) throw new ProblemError('FENLIU_ERR_UNAUTHENTICATED', 'The API key is unknown or expired');
      // The console only reads and acts as an operator: a key that can read nothing has no use for it.
      if (!hasScope(principal, 'alerts:read', 'audit:read')) throw new ProblemError('FENLIU_ERR_FORBIDDEN', 'This key cannot use the console (it needs alerts:read, audit:read or admin)');
      const old = parseCookies(req.headers.cookie)[SESSION_COOKIE];
      if (old) await store.destroy(old);
      const { id, session } = await store.create(req.body.key, principal);
      rt.log.info({ key: principal.keyId }, 'console sign-in');
      reply.code(201).header('set-cookie', sessionCookie(req, rt.cfg, id, session.expiresAt - Date.now())).header('cache-control', 'no-store');
      return whoami(rt, principal, session);
    },
  );

  app.get('/console/api/session', { schema: { hide: true } }, async (req, reply) => {
    reply.header('cache-control', 'no-store');
    const s = req.consoleSession;
    if (!s) throw new ProblemError('FENLIU_ERR_UNAUTHENTICATED', 'Not signed in to the console');
    return whoami(rt, s.principal, s);
  });

  app.delete('/console/api/session', { schema: { hide: true } }, async (req, reply) => {
    const id = parseCookies(req.headers.cookie)[SESSION_COOKIE];
    const s: ConsoleSession | null = req.consoleSession;
    if (s) checkCsrf(req, s);
    if (id) await store.destroy(id);
    if (s) rt.log.info({ key: s.principal.keyId }, 'console sign-out');
    reply.header('set-cookie', sessionCookie(req, rt.cfg, '', 0)).code(204);
    return reply.send();
  });

  // The SPA: hash routing (#/flow, #/alerts/...), so only index.html and hashed assets exist.
  const dist = consoleDist();
  const built = existsSync(join(dist, 'index.html'));
  await app.register(async (scope) => {
    // Helmet's maintained header set, scoped to the console's pages; the CSP allows no inline script or style.
    await scope.register(helmet, {
      contentSecurityPolicy: { useDefaults: false, directives: CONSOLE_CSP_DIRECTIVES },
      frameguard: { action: 'deny' },
      referrerPolicy: { policy: 'no-referrer' },
      crossOriginEmbedderPolicy: false,
    });
    if (!built) {
      const missing = async (_req: FastifyRequest, reply: FastifyReply) =>
        reply.code(503).type('text/plain; charset=utf-8').send('The console is not built: run `npm run build:console` (or `npm run build`).\n');
      scope.get('/console', { schema: { hide: true } }, missing);
      scope.get('/console/', { schema: { hide: true } }, missing);
      return;
    }
    const index = readFileSync(join(dist, 'index.html'));
    const sendIndex = async (_req: FastifyRequest, reply: FastifyReply) => reply.header('cache-control', 'no-store').type('text/html; charset=utf-8').send(index);
    scope.get('/console', { schema: { hide: true } }, sendIndex);
    await scope.register(fastifyStatic, {
      root: dist,
      prefix: '/console/',
      decorateReply: false,
      index: false,
      wildcard: true,
      schemaHide: true,
      setHeaders: (res, path) => {
        // Vite names assets by content hash: cache them for good; everything else revalidates.
        if (path.includes(`${join('console', 'assets')}`)) res.header('cache-control', 'public, max-age=31536000, immutable');
        else res.header('cache-control', 'no-cache');
      },
    });
    scope.get('/console/', { schema: { hide: true } }, sendIndex);
  });
}
