/**
 * Console sessions: an operator signs in once with an API key and gets an opaque, httpOnly,
 * SameSite=Strict cookie. The session lives in Redis under the SHA-256 of its id (a Redis dump
 * never yields a usable cookie) and holds the key's id and digest, never the key itself. Every
 * request re-derives the principal from the current config, so a removed or expired key ends its
 * sessions at once.
 *
 * CSRF: a state change made with the cookie (no Authorization header) must carry the session's
 * token in `x-csrf-token` (synchronizer token, returned at sign-in), and, when the browser sends
 * one, an Origin matching the Host. `/admin/queues` (bull-board, read-only) is the only
 * cookie-authenticated path that does not carry the token, and it answers no state changes.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import type { Config, KeyConfig, Scope } from '../config/types.js';
import { ProblemError } from '../errors.js';
import { hasScope, presentedKey, type Principal } from '../plugins/app/auth.js';

export const SESSION_COOKIE = 'fenliu_console';
export const CSRF_HEADER = 'x-csrf-token';

/** Idle timeout (sliding) and absolute lifetime of a console session. */
export interface SessionPolicy {
  idleMs: number;
  absoluteMs: number;
}

export const DEFAULT_SESSION_POLICY: SessionPolicy = { idleMs: 30 * 60_000, absoluteMs: 12 * 3600_000 };

/** What Redis holds for a session. */
interface StoredSession {
  keyId: string;
  /** SHA-256 (hex) of the API key, as the config holds it: identifies the config entry. */
  keySha256: string;
  csrf: string;
  createdAt: number;
  expiresAt: number;
}

export interface ConsoleSession {
  principal: Principal;
  csrf: string;
  createdAt: number;
  expiresAt: number;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set when the request was authenticated by a console session cookie (not by a key). */
    consoleSession: ConsoleSession | null;
  }
}

const sha256hex = (s: string) => createHash('sha256').update(s).digest('hex');

/** Config keys by digest, with the principal each one gives. */
function keyTable(cfg: Config): Map<string, { key: KeyConfig; principal: Principal }> {
  const m = new Map<string, { key: KeyConfig; principal: Principal }>();
  const add = (k: KeyConfig, kind: Principal['kind'], ownerId: string | undefined, n: number) =>
    m.set(k.sha256, { key: k, principal: { keyId: k.id ?? `${ownerId ?? 'operator'}#${n}`, kind, ownerId, scopes: new Set<Scope>(k.scopes) } });
  cfg.keys.forEach((k, i) => add(k, 'operator', undefined, i));
  for (const s of cfg.sources) s.keys.forEach((k, i) => add(k, 'source', s.id, i));
  for (const p of cfg.platforms) p.keys.forEach((k, i) => add(k, 'platform', p.id, i));
  return m;
}

export function parseCookies(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!header) return out;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    const name = part.slice(0, i).trim();
    if (!name || name in out) continue;
    try {
      out[name] = decodeURIComponent(part.slice(i + 1).trim());
    } catch {
      // a malformed value is ignored
    }
  }
  return out;
}

/** Sessions in Redis. */
export class SessionStore {
  private readonly keysByDigest: Map<string, { key: KeyConfig; principal: Principal }>;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    cfg: Config,
    readonly policy: SessionPolicy = DEFAULT_SESSION_POLICY,
  ) {
    this.keysByDigest = keyTable(cfg);
  }

  private redisKey(id: string): string {
    return `${this.prefix}:session:${sha256hex(id)}`;
  }

  /** The principal of a config key given by its digest, if the key still exists and has not expired. */
  private principalOf(keySha256: string, now: number): Principal | null {
    const e = this.keysByDigest.get(keySha256);
    if (!e) return null;
    if (e.key.expiresAt && Date.parse(e.key.expiresAt) <= now) return null;
    return e.principal;
  }

  /** Creates a session for a principal already authenticated by its key. Returns the cookie value. */
  async create(presentedKey: string, principal: Principal, now = Date.now()): Promise<{ id: string; session: ConsoleSession }> {
    const id = randomBytes(32).toString('base64url');
    const keySha256 = sha256hex(presentedKey);
    let expiresAt = now + this.policy.absoluteMs;
    const keyExp = this.keysByDigest.get(keySha256)?.key.expiresAt;
    if (keyExp) expiresAt = Math.min(expiresAt, Date.parse(keyExp));
    const stored: StoredSession = { keyId: principal.keyId, keySha256, csrf: randomBytes(24).toString('base64url'), createdAt: now, expiresAt };
    await this.redis.set(this.redisKey(id), JSON.stringify(stored), 'PX', Math.max(1, Math.min(this.policy.idleMs, expiresAt - now)));
    return { id, session: { principal, csrf: stored.csrf, createdAt: now, expiresAt } };
  }

  /** Looks a session up; slides its idle timeout. Null when unknown, expired or its key is gone. */
  async get(id: string, now = Date.now()): Promise<ConsoleSession | null> {
    if (!/^[A-Za-z0-9_-]{20,100}$/.test(id)) return null;
    const rk = this.redisKey(id);
    const raw = await this.redis.get(rk);
    if (!raw) return null;
    let s: StoredSession;
    try {
      s = JSON.parse(raw) as StoredSession;
    } catch {
      return null;
    }
    const principal = now < s.expiresAt ? this.principalOf(s.keySha256, now) : null;
    if (!principal) {
      await this.redis.del(rk);
      return null;
    }
    await this.redis.pexpire(rk, Math.max(1, Math.min(this.policy.idleMs, s.expiresAt - now)));
    return { principal, csrf: s.csrf, createdAt: s.createdAt, expiresAt: s.expiresAt };
  }

  async destroy(id: string): Promise<void> {
    await this.redis.del(this.redisKey(id));
  }
}

/** Is the request on TLS (directly or, with trustProxy, as the proxy says)? */
export function isHttps(req: FastifyRequest, cfg: Config): boolean {
  return req.protocol === 'https' || (cfg.server.publicUrl ?? '').startsWith('https:');
}

export function sessionCookie(req: FastifyRequest, cfg: Config, value: string, maxAgeMs: number): string {
  const parts = [`${SESSION_COOKIE}=${value}`, 'Path=/', 'HttpOnly', 'SameSite=Strict', `Max-Age=${Math.max(0, Math.floor(maxAgeMs / 1000))}`];
  if (isHttps(req, cfg)) parts.push('Secure');
  return parts.join('; ');
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Checks the CSRF token and Origin of a cookie-authenticated state change. */
export function checkCsrf(req: FastifyRequest, session: ConsoleSession): void {
  const origin = req.headers.origin;
  if (typeof origin === 'string' && origin !== 'null') {
    let host: string | undefined;
    try {
      host = new URL(origin).host;
    } catch {
      host = undefined;
    }
    if (host !== req.headers.host) throw new ProblemError('FENLIU_ERR_FORBIDDEN', 'Cross-origin request refused');
  } else if (origin === 'null') {
    throw new ProblemError('FENLIU_ERR_FORBIDDEN', 'Cross-origin request refused');
  }
  const token = req.headers[CSRF_HEADER];
  if (typeof token !== 'string' || !sameToken(token, session.csrf)) {
    throw new ProblemError('FENLIU_ERR_FORBIDDEN', `A console change needs the session's CSRF token in the ${CSRF_HEADER} header`);
  }
}

/** Personal data fields masked for viewers without audit:read or admin. */
const PERSONAL = ['name', 'phone', 'idNumber'] as const;

function maskPerson(p: unknown): unknown {
  if (!p || typeof p !== 'object' || Array.isArray(p)) return p;
  const o = { ...(p as Record<string, unknown>) };
  for (const f of PERSONAL) if (typeof o[f] === 'string' && o[f]) o[f] = mask(o[f] as string);
  return o;
}

function mask(s: string): string {
  if (s.length <= 2) return '*'.repeat(s.length);
  // Keep the first character (surname / leading digit) and, for phone-like strings, the last two.
  return /^\+?[0-9 -]+$/.test(s) ? `${s.slice(0, 3)}****${s.slice(-2)}` : `${s[0]}${'*'.repeat(Math.min(s.length - 1, 4))}`;
}

/** Masks caller and parties wherever they occur in a response body (alerts, lists, timelines). */
export function maskPersonalData(v: unknown, depth = 0): unknown {
  if (depth > 12 || !v || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map((x) => maskPersonalData(x, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if (k === 'caller') out[k] = maskPerson(x);
    else if (k === 'parties' && Array.isArray(x)) out[k] = x.map(maskPerson);
    else out[k] = maskPersonalData(x, depth + 1);
  }
  return out;
}

export function mayViewPersonalData(p: Principal | null): boolean {
  return hasScope(p, 'audit:read');
}

declare module 'fastify' {
  interface FastifyInstance {
    consoleSessions: SessionStore;
  }
}

/**
 * Root-level hooks, registered right after the auth plugin (src/app.ts), so they run for every
 * route: a valid session cookie sets `req.principal` when no key was presented; cookie-made
 * changes need the CSRF token; alert bodies are masked for console viewers without audit:read.
 */
export const consoleSessionPlugin = fp(
  async (app: FastifyInstance, opts: { policy?: SessionPolicy } = {}) => {
    const rt = app.fenliu;
    const store = new SessionStore(rt.redis, rt.cfg.redis.prefix, rt.cfg, opts.policy ?? sessionPolicyFromConfig(rt.cfg));
    app.decorate('consoleSessions', store);
    app.decorateRequest('consoleSession', null);
    // Callback hooks: they run on every request (alert ingest too), where a promise each costs CPU.
    app.addHook('onRequest', (req: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void) => {
      if (req.principal || presentedKey(req) !== undefined) return done();
      const id = parseCookies(req.headers.cookie)[SESSION_COOKIE];
      if (!id) return done();
      store.get(id).then((session) => {
        if (!session) return done();
        // Signing in again is the session route's business; every other change needs the token.
        const signIn = req.method === 'POST' && req.url.split('?')[0] === '/console/api/session';
        try {
          if (!SAFE_METHODS.has(req.method) && !signIn) checkCsrf(req, session);
        } catch (err) {
          return done(err as Error);
        }
        req.consoleSession = session;
        req.principal = session.principal;
        done();
      }, done);
    });
    app.addHook('preSerialization', (req: FastifyRequest, _reply: FastifyReply, payload: unknown, done: (err: Error | null, payload?: unknown) => void) => {
      // People are masked for whoever lacks audit:read in the console, and for duty officers'
      // operator keys through the API too. A 110 system's own API calls see what it sent.
      const p = req.principal;
      if (!p || mayViewPersonalData(p) || (!req.consoleSession && p.kind !== 'operator')) return done(null, payload);
      if (!req.url.startsWith('/v1/alerts') && !req.url.startsWith('/v1/deliveries')) return done(null, payload);
      let masked: unknown;
      try {
        masked = maskPersonalData(payload);
      } catch (err) {
        return done(err as Error);
      }
      done(null, masked);
    });
  },
  { name: 'fenliu-console-session', dependencies: ['fenliu-auth'] },
);

/** Optional `console.session` settings in the config (idleMinutes, absoluteHours). */
export function sessionPolicyFromConfig(cfg: Config): SessionPolicy {
  const c = (cfg as unknown as { console?: { session?: { idleMinutes?: number; absoluteHours?: number } } }).console?.session;
  return {
    idleMs: (c?.idleMinutes ?? DEFAULT_SESSION_POLICY.idleMs / 60_000) * 60_000,
    absoluteMs: (c?.absoluteHours ?? DEFAULT_SESSION_POLICY.absoluteMs / 3600_000) * 3600_000,
  };
}
