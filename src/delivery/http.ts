import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Agent, request, type Dispatcher } from 'undici';
import type { InboundResponse, OutboundRequest } from '../../adapters/sdk.js';
import { webhookKey } from './webhook-secret.js';

/** Outbound authentication of one platform (config `auth`). */
export type OutboundAuth =
  | { type: 'none' }
  | { type: 'hmac'; secret: string }
  | { type: 'bearer'; token: string }
  | { type: 'oauth2'; tokenUrl: string; clientId: string; clientSecret: string; scope?: string };

export interface TlsFiles {
  cert?: string;
  key?: string;
  ca?: string;
  /** Default true; only for test platforms with self-signed certificates. */
  rejectUnauthorized?: boolean;
}

export interface Timeouts {
  /** TCP + TLS connect. Default 5 s. */
  connectMs: number;
  /** Until the response headers arrive. Default 10 s. */
  headersMs: number;
  /** Between body chunks, and for the whole body. Default 10 s. */
  bodyMs: number;
}

export const DEFAULT_TIMEOUTS: Timeouts = { connectMs: 5_000, headersMs: 10_000, bodyMs: 10_000 };

/** Most a response body is read; more is drained and dropped, so a 10 MB answer cannot grow memory. */
export const MAX_RESPONSE_BYTES = 1024 * 1024;
/** What the attempt log keeps of a response body. */
export const RECORDED_RESPONSE_BYTES = 8 * 1024;

export interface SendResult {
  response: InboundResponse;
  durationMs: number;
  truncated: boolean;
}

export interface PreparedRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: string;
}

/** Serialises an adapter's request: the engine, not the adapter, decides bytes and headers. */
export function prepare(baseUrl: string, req: OutboundRequest): PreparedRequest {
  const url = new URL(req.path.replace(/^\//, ''), baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`);
  for (const [k, v] of Object.entries(req.query ?? {})) url.searchParams.set(k, v);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers ?? {})) headers[k.toLowerCase()] = v;
  let body: string | undefined;
  if (req.body !== undefined && req.method !== 'GET') {
    const ct = req.contentType ?? 'application/json';
    if (typeof req.body === 'string') body = req.body;
    else if (ct.startsWith('application/x-www-form-urlencoded')) {
      const form = new URLSearchParams();
      // An array value repeats its field (Open311 `attribute[CODE][]=a&attribute[CODE][]=b`).
      for (const [k, v] of Object.entries(req.body as Record<string, unknown>)) {
        for (const x of Array.isArray(v) ? v : [v]) if (x !== undefined && x !== null) form.append(k, String(x));
      }
      body = form.toString();
    } else body = JSON.stringify(req.body);
    headers['content-type'] ??= ct.includes('charset') || !ct.startsWith('application/json') ? ct : `${ct}; charset=utf-8`;
  }
  headers.accept ??= 'application/json';
  return { method: req.method, url: url.toString(), headers, body };
}

/**
 * Standard Webhooks signature: v1,base64(HMAC-SHA256(key, id.timestamp.body)), the key being the
 * base64-decoded part of a `whsec_` secret. A plain secret throws: the config check refuses it,
 * since no Standard Webhooks verifier would accept what it signs.
 */
export function standardWebhookSignature(secret: string, id: string, timestamp: number, body: string): string {
  const key = webhookKey(secret);
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

/**
 * One platform's HTTP client: shares the process-wide Agent (or has its own for mTLS or a custom
 * connect timeout), adds outbound auth and the idempotency header, bounds time and body size.
 */
export class PlatformClient {
  private token?: { value: string; expiresAt: number };
  private tokenRequest?: Promise<string>;

  constructor(
    readonly platformId: string,
    readonly baseUrl: string,
    readonly dispatcher: Dispatcher,
    readonly auth: OutboundAuth,
    readonly timeouts: Timeouts,
  ) {}

  /** Adds auth headers; returns the request as it goes on the wire (what the attempt log records, minus secrets). */
  async authorise(p: PreparedRequest, messageId: string, now = Date.now()): Promise<PreparedRequest> {
    const headers: Record<string, string> = { ...p.headers, 'idempotency-key': messageId, 'x-fenliu-delivery-id': messageId };
    switch (this.auth.type) {
      case 'hmac': {
        const ts = Math.floor(now / 1000);
        headers['webhook-id'] = messageId;
        headers['webhook-timestamp'] = String(ts);
        headers['webhook-signature'] = standardWebhookSignature(this.auth.secret, messageId, ts, p.body ?? '');
        break;
      }
      case 'bearer':
        headers.authorization = `Bearer ${this.auth.token}`;
        break;
      case 'oauth2':
        headers.authorization = `Bearer ${await this.oauthToken()}`;
        break;
    }
    return { ...p, headers };
  }

  /** Forgets the cached OAuth2 token (the platform said 401: revoked or expired early). */
  dropToken(): void {
    this.token = undefined;
  }

  /** Client-credentials token, cached until shortly before it expires; one fetch at a time. */
  private async oauthToken(): Promise<string> {
    if (this.auth.type !== 'oauth2') throw new Error('not oauth2');
    if (this.token && this.token.expiresAt > Date.now() + 30_000) return this.token.value;
    const auth = this.auth;
    this.tokenRequest ??= (async () => {
      try {
        const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: auth.clientId, client_secret: auth.clientSecret });
        if (auth.scope) form.set('scope', auth.scope);
        const res = await request(auth.tokenUrl, {
          method: 'POST',
          dispatcher: this.dispatcher,
          headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
          body: form.toString(),
          headersTimeout: this.timeouts.headersMs,
          bodyTimeout: this.timeouts.bodyMs,
        });
        const text = await res.body.text();
        let json: { access_token?: string; expires_in?: number } = {};
        try {
          json = JSON.parse(text) as typeof json;
        } catch {
          // reported below, with the status
        }
        if (res.statusCode >= 300 || !json.access_token) {
          throw Object.assign(new Error(`OAuth2 token endpoint answered ${res.statusCode}${json.access_token ? '' : ' without an access_token'}`), { code: 'OAUTH_TOKEN' });
        }
        this.token = { value: json.access_token, expiresAt: Date.now() + (json.expires_in ?? 300) * 1000 };
        return json.access_token;
      } finally {
        this.tokenRequest = undefined;
      }
    })();
    return this.tokenRequest;
  }

  /**
   * Sends one request; throws only for transport failures (classified by the policy).
   *
   * Straight on the dispatcher with a handler, not undici's `request()`: that wraps every
   * response in a Readable stream, read here through an async iterator, and the whole-exchange
   * bound needed an AbortController and its listener; per delivery those cost more CPU than
   * the rest of the HTTP exchange on the client side. Same bounds, same errors.
   */
  send(p: PreparedRequest): Promise<SendResult> {
    const started = performance.now();
    const url = new URL(p.url);
    const { bodyMs } = this.timeouts;
    return new Promise<SendResult>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let truncated = false;
      let status = 0;
      let headers: Record<string, string> = {};
      let abort: ((err: Error) => void) | null = null;
      let failed: Error | null = null;
      let settled = false;
      let deadline: NodeJS.Timeout | undefined;
      const finish = () => {
        settled = true;
        clearTimeout(total);
        clearTimeout(deadline);
      };
      const fail = (err: Error) => {
        if (settled) return;
        finish();
        failed = err;
        abort?.(err);
        reject(err);
      };
      // The bound on the whole exchange. Not AbortSignal.timeout: its timer lives on until it
      // fires (25 s), so at a thousand sends a second tens of thousands of them would pile up.
      const total = setTimeout(
        () => fail(new DOMException('The operation was aborted due to timeout', 'TimeoutError') as unknown as Error),
        this.timeouts.connectMs + this.timeouts.headersMs + bodyMs,
      );
      const handler = {
        onConnect(a: (err: Error) => void) {
          if (failed) a(failed);
          else abort = a;
        },
        onHeaders(statusCode: number, raw: Buffer[]) {
          if (statusCode < 200) return true; // 1xx: the answer is still to come
          status = statusCode;
          headers = responseHeaders(raw);
          // undici's bodyTimeout bounds the gap between chunks; a body trickled out in small
          // pieces would pass it forever, so the whole body gets the same bound from the headers on.
          deadline = setTimeout(
            () => fail(Object.assign(new Error(`response body not complete within ${bodyMs} ms`), { name: 'BodyTimeoutError', code: 'UND_ERR_BODY_TIMEOUT' })),
            bodyMs,
          );
          return true;
        },
        onData(chunk: Buffer) {
          if (size < MAX_RESPONSE_BYTES) {
            chunks.push(chunk.subarray(0, MAX_RESPONSE_BYTES - size));
            size += Math.min(chunk.length, MAX_RESPONSE_BYTES - size);
          } else truncated = true;
          return true;
        },
        onComplete() {
          if (settled) return;
          finish();
          resolve({
            response: { status, headers, body: chunks.length === 1 ? chunks[0].toString('utf8') : Buffer.concat(chunks).toString('utf8') },
            durationMs: Math.round(performance.now() - started),
            truncated,
          });
        },
        onError(err: Error) {
          fail(err);
        },
      };
      try {
        this.dispatcher.dispatch(
          {
            origin: url.origin,
            path: url.pathname + url.search,
            method: p.method as Dispatcher.HttpMethod,
            headers: p.headers,
            body: p.body,
            headersTimeout: this.timeouts.headersMs,
            bodyTimeout: bodyMs,
          },
          handler as unknown as Dispatcher.DispatchHandler,
        );
      } catch (err) {
        fail(err as Error);
      }
    });
  }
}

/** Response headers as adapters read them: names lower-cased, repeated headers joined with ", " (values latin1, as undici decodes them). */
function responseHeaders(raw: Buffer[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i].toString('latin1').toLowerCase();
    const v = raw[i + 1].toString('latin1');
    const had = Object.hasOwn(out, k) ? out[k] : undefined;
    if (k === '__proto__') Object.defineProperty(out, k, { value: had === undefined ? v : `${had}, ${v}`, enumerable: true, configurable: true, writable: true });
    else out[k] = had === undefined ? v : `${had}, ${v}`;
  }
  return out;
}

/** Headers as the attempt log records them: authorisation and signatures never stored. */
export function redactHeaders(h: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) out[k] = /authorization|signature|api[-_]?key|cookie|token/i.test(k) ? '[redacted]' : v;
  return out;
}

/** Body keys that carry credentials (Open311 `api_key`, ...): kept out of the audit trail. */
const SECRET_BODY_KEY = /^(api[-_]?key|apikey|access[-_]?token|client[-_]?secret|password|secret|token[-_]?secret)$/i;
/** Unanchored SECRET_BODY_KEY: matches wherever such a key name could appear in a body's text. */
const SECRET_BODY_TEXT = /api[-_]?key|apikey|access[-_]?token|client[-_]?secret|password|secret/i;

/**
 * The request body as the audit trail keeps it: credentials a protocol puts in the body (Open311
 * sends `api_key` as a form field) are replaced by "[redacted]"; everything else is kept as sent.
 * The audit event also carries the SHA-256 of the real bytes.
 */
export function redactBody(body: string, contentType = ''): string {
  if (contentType.startsWith('application/x-www-form-urlencoded')) {
    const form = new URLSearchParams(body);
    let hit = false;
    for (const k of [...form.keys()]) {
      if (SECRET_BODY_KEY.test(k)) {
        form.set(k, '[redacted]');
        hit = true;
      }
    }
    return hit ? form.toString() : body;
  }
  if (contentType.includes('json')) {
    // Parsing every body to find no secret is most of this function's cost: a key can only match
    // if its name is in the text, unless the text escapes letters (\u), which falls through.
    if (!SECRET_BODY_TEXT.test(body) && !body.includes('\\u')) return body;
    let hit = false;
    const walk = (v: unknown): unknown => {
      if (Array.isArray(v)) return v.map(walk);
      if (v === null || typeof v !== 'object') return v;
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) {
        if (SECRET_BODY_KEY.test(k) && x !== null && x !== undefined) {
          out[k] = '[redacted]';
          hit = true;
        } else out[k] = walk(x);
      }
      return out;
    };
    try {
      const redacted = walk(JSON.parse(body));
      return hit ? JSON.stringify(redacted) : body;
    } catch {
      return body;
    }
  }
  return body;
}

export function createAgent(timeouts: Timeouts, tls?: TlsFiles, baseDir = '.'): Agent {
  const read = (f?: string) => (f ? readFileSync(resolve(baseDir, f)) : undefined);
  return new Agent({
    connect: {
      timeout: timeouts.connectMs,
      ...(tls ? { cert: read(tls.cert), key: read(tls.key), ca: read(tls.ca), rejectUnauthorized: tls.rejectUnauthorized ?? true } : {}),
    },
    headersTimeout: timeouts.headersMs,
    bodyTimeout: timeouts.bodyMs,
    keepAliveTimeout: 10_000,
    connections: 64,
  });
}

export function newMessageId(): string {
  return `msg_${randomUUID()}`;
}
