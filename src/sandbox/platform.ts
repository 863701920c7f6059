/**
 * One simulated receiving platform: a real node:http server on loopback that speaks one
 * adapter's protocol, records everything it receives, and misbehaves on request.
 */
import { EventEmitter, once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import {
  handle,
  unavailable,
  validationError,
  type ProtocolResponse,
  type ProtocolState,
  type SandboxKind,
  type SandboxTicket,
} from './protocols.js';

export type FaultName = 'none' | '5xx' | '429' | 'hang' | 'reset' | 'slow-body' | 'malformed-2xx' | '4xx';

export const FAULTS: readonly FaultName[] = ['none', '5xx', '429', 'hang', 'reset', 'slow-body', 'malformed-2xx', '4xx'];

export interface FaultSpec {
  fault: FaultName;
  /** Apply to the next n requests only, then back to `none`. Absent: until changed. */
  times?: number;
  /** 429: the Retry-After value. Default 1. */
  retryAfterSeconds?: number;
  /** slow-body: how long the body takes to trickle out. Default 2000. */
  slowBodyMs?: number;
  /** 5xx: which status. Default 503. */
  status?: number;
}

export interface ReceivedRequest {
  method: string;
  /** Path with query string, as sent. */
  path: string;
  headers: Record<string, string>;
  /** Raw body text. */
  body: string;
  /** JSON or form fields, when the body is either. */
  parsed?: unknown;
  /** ISO instant of arrival (sandbox wall clock). */
  at: string;
  /** The fault applied to this request. */
  fault: FaultName;
}

export interface SandboxPlatformOptions {
  id: string;
  kind: SandboxKind;
  /** 0 or absent: a random free port. */
  port?: number;
  /** Open311 only: `batch` answers POST /requests.<format> with a token. */
  open311Mode?: 'realtime' | 'batch';
  /** Open311 only: the service codes GET services lists and POST accepts. */
  open311Services?: string[];
  /**
   * Open311 only: service code → its required attributes (code → description). Such services
   * are listed with metadata=true, answer GET services/{code} with their definition, and refuse
   * a POST that lacks one of the attributes.
   */
  open311Required?: Record<string, Record<string, string>>;
}

const BODY_LIMIT = 1024 * 1024;

function headerMap(h: IncomingMessage['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}

function parseBody(text: string, contentType: string): unknown {
  if (contentType.includes('application/x-www-form-urlencoded')) return Object.fromEntries(new URLSearchParams(text));
  if (!text) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

export interface SandboxPlatform {
  on(event: 'request', listener: (r: ReceivedRequest) => void): this;
  once(event: 'request', listener: (r: ReceivedRequest) => void): this;
  off(event: 'request', listener: (r: ReceivedRequest) => void): this;
}

export class SandboxPlatform extends EventEmitter {
  readonly id: string;
  readonly kind: SandboxKind;
  /** Base URL, e.g. http://127.0.0.1:41234 — the platform `url` in fenliu's config. */
  url = '';
  readonly received: ReceivedRequest[] = [];
  private fault: FaultSpec = { fault: 'none' };
  private readonly state: ProtocolState;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly opts: SandboxPlatformOptions,
    private readonly host: string,
  ) {
    super();
    this.id = opts.id;
    this.kind = opts.kind;
    this.state = {
      kind: opts.kind,
      seq: 0,
      tickets: new Map(),
      byExternalId: new Map(),
      byToken: new Map(),
      open311Mode: opts.open311Mode ?? 'realtime',
      ...(opts.open311Services ? { open311Services: opts.open311Services } : {}),
      ...(opts.open311Required ? { open311Required: opts.open311Required } : {}),
      clock: () => new Date(),
    };
    this.server = createServer((req, res) => void this.onRequest(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  async listen(): Promise<void> {
    this.server.listen(this.opts.port ?? 0, this.host);
    await once(this.server, 'listening');
    const { port } = this.server.address() as AddressInfo;
    const h = this.host.includes(':') ? `[${this.host}]` : this.host;
    this.url = `http://${h}:${port}`;
  }

  /** Tickets issued so far, by platform ticket id. */
  get tickets(): ReadonlyMap<string, SandboxTicket> {
    return this.state.tickets;
  }

  get currentFault(): Readonly<FaultSpec> {
    return { ...this.fault };
  }

  setFault(fault: FaultName | FaultSpec): void {
    const spec = typeof fault === 'string' ? { fault } : { ...fault };
    if (!FAULTS.includes(spec.fault)) throw new Error(`sandbox ${this.id}: unknown fault "${String(spec.fault)}" (one of ${FAULTS.join(', ')})`);
    if (spec.times !== undefined && (!Number.isInteger(spec.times) || spec.times < 1)) throw new Error(`sandbox ${this.id}: times must be a positive integer`);
    this.fault = spec;
  }

  /** Sets a ticket's status as the platform would (Open311 polling reads it back). */
  setTicketStatus(ticketId: string, status: string, notes?: string): void {
    const t = this.state.tickets.get(ticketId);
    if (!t) throw new Error(`sandbox ${this.id}: no ticket ${ticketId}`);
    t.status = status;
    t.statusNotes = notes;
    t.updatedAt = this.state.clock().toISOString();
  }

  /**
   * The platform's own clock (ticket and status times it reports); wall clock by default. Tests
   * set a wrong one to see what fenliu makes of a platform answering with 2010 dates.
   */
  setClock(clock: () => Date = () => new Date()): void {
    this.state.clock = clock;
  }

  /** Forgets received requests and clears the fault; tickets stay (they are the platform's data). */
  reset(): void {
    this.received.length = 0;
    this.fault = { fault: 'none' };
  }

  /** Resolves once at least `n` requests have arrived in total; rejects after `timeoutMs`. */
  waitFor(n: number, timeoutMs = 5000): Promise<ReceivedRequest[]> {
    if (this.received.length >= n) return Promise.resolve(this.received.slice());
    return new Promise((resolve, reject) => {
      const onRequest = () => {
        if (this.received.length < n) return;
        cleanup();
        resolve(this.received.slice());
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`sandbox ${this.id}: ${this.received.length} of ${n} requests after ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off('request', onRequest);
      };
      this.on('request', onRequest);
    });
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const closed = once(this.server, 'close');
    this.server.close();
    // Hanging and keep-alive connections would hold close() open forever.
    for (const s of this.sockets) s.destroy();
    this.server.closeAllConnections();
    await closed;
  }

  private later(fn: () => void, ms: number): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private takeFault(): FaultSpec {
    const f = this.fault;
    if (f.fault !== 'none' && f.times !== undefined) {
      const left = f.times - 1;
      this.fault = left > 0 ? { ...f, times: left } : { fault: 'none' };
    }
    return f;
  }

  private async readBody(req: IncomingMessage): Promise<string | undefined> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > BODY_LIMIT) return undefined;
      chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  private send(res: ServerResponse, r: ProtocolResponse): void {
    const body = Buffer.from(r.body, 'utf8');
    res.writeHead(r.status, { ...r.headers, 'content-length': String(body.length) });
    res.end(body);
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://sandbox');
    const headers = headerMap(req.headers);
    let text: string | undefined;
    try {
      text = await this.readBody(req);
    } catch {
      return; // client went away mid-body
    }
    if (text === undefined) return this.send(res, { status: 413, headers: { 'content-type': 'text/plain' }, body: 'too large' });
    const parsed = parseBody(text, headers['content-type'] ?? '');

    if (url.pathname.startsWith('/_sandbox/')) return this.control(req.method ?? 'GET', url.pathname, parsed, res);

    const fault = this.takeFault();
    const record: ReceivedRequest = { method: req.method ?? 'GET', path: req.url ?? '/', headers, body: text, at: new Date().toISOString(), fault: fault.fault };
    if (parsed !== undefined) record.parsed = parsed;
    this.received.push(record);
    this.emit('request', record);

    switch (fault.fault) {
      case 'hang':
        return; // never answer; close() destroys the socket
      case 'reset': {
        const s = req.socket as Socket & { resetAndDestroy?: () => void };
        if (typeof s.resetAndDestroy === 'function') s.resetAndDestroy();
        else s.destroy();
        return;
      }
      case '5xx':
        return this.send(res, unavailable(this.kind, fault.status ?? 503));
      case '429':
        return this.send(res, unavailable(this.kind, 429, { 'retry-after': String(fault.retryAfterSeconds ?? 1) }));
      case '4xx':
        return this.send(res, validationError(this.kind, this.kind === 'hotline-12345' ? '诉求内容' : 'description', this.kind === 'hotline-12345' ? '不能为空（模拟故障）' : 'rejected by simulated fault'));
      case 'malformed-2xx':
        return this.send(res, { status: 200, headers: { 'content-type': 'text/html' }, body: '<html>oops</html>' });
      default:
        break;
    }
    const answer = handle({ method: record.method, pathname: url.pathname, query: url.searchParams, headers, body: text, parsed }, this.state);
    if (fault.fault === 'slow-body') return this.trickle(res, answer, fault.slowBodyMs ?? 2000);
    this.send(res, answer);
  }

  /** Sends headers at once, then the body a few bytes at a time over `ms`. */
  private trickle(res: ServerResponse, r: ProtocolResponse, ms: number): void {
    const body = Buffer.from(r.body, 'utf8');
    res.writeHead(r.status, { ...r.headers, 'content-length': String(body.length) });
    res.flushHeaders();
    const pieces = Math.max(2, Math.min(body.length, 10));
    const size = Math.ceil(body.length / pieces);
    let i = 0;
    const step = () => {
      if (res.destroyed) return;
      const chunk = body.subarray(i * size, (i + 1) * size);
      i++;
      if (i * size >= body.length) {
        res.end(chunk);
        return;
      }
      res.write(chunk);
      this.later(step, ms / pieces);
    };
    this.later(step, ms / pieces);
  }

  private control(method: string, pathname: string, parsed: unknown, res: ServerResponse): void {
    const reply = (status: number, body: unknown) => this.send(res, { status, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (method === 'POST' && pathname === '/_sandbox/fault') {
      try {
        this.setFault(parsed as FaultSpec);
        return reply(200, { id: this.id, fault: this.fault });
      } catch (err) {
        return reply(400, { error: (err as Error).message, faults: FAULTS });
      }
    }
    if (method === 'GET' && pathname === '/_sandbox/received') return reply(200, this.received);
    if (method === 'GET' && pathname === '/_sandbox/tickets') return reply(200, [...this.state.tickets.values()]);
    if (method === 'POST' && pathname === '/_sandbox/reset') {
      this.reset();
      return reply(200, { id: this.id, fault: this.fault });
    }
    return reply(404, { error: `unknown control route ${method} ${pathname}` });
  }
}
