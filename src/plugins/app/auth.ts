import { hash, timingSafeEqual } from 'node:crypto';
import fp from 'fastify-plugin';
import type { FastifyReply, FastifyRequest, preValidationHookHandler } from 'fastify';
import type { Config, KeyConfig, Scope } from '../../config/types.js';
import { ProblemError } from '../../errors.js';

/** Who is calling: resolved from the API key, never from anything the caller says about itself. */
export interface Principal {
  keyId: string;
  kind: 'source' | 'platform' | 'operator';
  /** Source or platform id the key is bound to; absent for operator keys. */
  ownerId?: string;
  scopes: ReadonlySet<Scope>;
}

interface KeyEntry {
  /** Built once per key: every request with this key shares it (read-only). */
  principal: Readonly<Principal>;
  digest: Buffer;
  expiresAt?: number;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyInstance {
    /** preValidation hook (auth before the body is validated: a caller without the right key learns nothing from a 400) that requires a key with any of the given scopes (admin passes every check). */
    requireScope(...scopes: Scope[]): preValidationHookHandler;
    keyIndex: KeyIndex;
  }
}

export function sha256(text: string): Buffer {
  return hash('sha256', text, 'buffer');
}

/** Looks keys up by their SHA-256; several keys per owner may be valid at once (rotation). */
export class KeyIndex {
  private readonly byDigest = new Map<string, KeyEntry>();

  constructor(cfg: Config) {
    const add = (k: KeyConfig, kind: Principal['kind'], ownerId: string | undefined, n: number) => {
      this.byDigest.set(k.sha256, {
        principal: Object.freeze({ keyId: k.id ?? `${ownerId ?? 'operator'}#${n}`, kind, ownerId, scopes: new Set(k.scopes) }),
        digest: Buffer.from(k.sha256, 'hex'),
        expiresAt: k.expiresAt ? Date.parse(k.expiresAt) : undefined,
      });
    };
    cfg.keys.forEach((k, i) => add(k, 'operator', undefined, i));
    for (const s of cfg.sources) s.keys.forEach((k, i) => add(k, 'source', s.id, i));
    for (const p of cfg.platforms) p.keys.forEach((k, i) => add(k, 'platform', p.id, i));
  }

  resolve(presented: string, now = Date.now()): Principal | null {
    const digest = sha256(presented);
    const entry = this.byDigest.get(digest.toString('hex'));
    // The map lookup finds the candidate; the constant-time compare is what admits it.
    if (!entry || !timingSafeEqual(entry.digest, digest)) return null;
    if (entry.expiresAt !== undefined && entry.expiresAt <= now) return null;
    return entry.principal;
  }
}

export function presentedKey(req: FastifyRequest): string | undefined {
  const auth = req.headers.authorization;
  if (auth) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    return m ? m[1] : undefined;
  }
  const k = req.headers['x-api-key'];
  return typeof k === 'string' ? k : undefined;
}

export function hasScope(p: Principal | null, ...scopes: Scope[]): boolean {
  if (!p) return false;
  return p.scopes.has('admin') || scopes.some((s) => p.scopes.has(s));
}

export default fp(
  async (app, opts: { cfg: Config }) => {
    const index = new KeyIndex(opts.cfg);
    app.decorate('keyIndex', index);
    app.decorateRequest('principal', null);
    // Callback hooks, not async ones: they run on every request, and need no promise.
    app.addHook('onRequest', (req, _reply, done) => {
      const key = presentedKey(req);
      req.principal = key ? index.resolve(key) : null;
      done();
    });
    app.decorate('requireScope', (...scopes: Scope[]) => {
      return (req: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void) => {
        if (!req.principal) return done(new ProblemError('FENLIU_ERR_UNAUTHENTICATED', presentedKey(req) ? 'The API key is unknown or expired' : 'Send the API key as "Authorization: Bearer <key>"', { headers: { 'www-authenticate': 'Bearer' } }));
        if (!hasScope(req.principal, ...scopes)) return done(new ProblemError('FENLIU_ERR_FORBIDDEN', `This route needs the scope ${scopes.join(' or ')}`));
        done();
      };
    });
  },
  { name: 'fenliu-auth' },
);
