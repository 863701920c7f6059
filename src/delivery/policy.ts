import type { Interpretation, InboundResponse } from '../../adapters/sdk.js';

/**
 * The one place that decides retry vs give-up. Adapters read bodies; this module decides what a
 * status class or a transport error means, and when to stop.
 */

export type ErrorClass =
  | 'connection'
  | 'dns'
  | 'timeout'
  | 'tls'
  | 'http-5xx'
  | 'http-retryable'
  | 'http-4xx'
  | 'unreadable'
  | 'business-reject'
  | 'output-schema'
  | 'translate'
  | 'circuit-open';

export interface Decision {
  outcome: 'delivered' | 'retry' | 'reject';
  errorClass?: ErrorClass;
  reason?: string;
  remoteTicketId?: string;
  pendingToken?: string;
  retryAfterMs?: number;
}

const DNS_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME']);
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT', 'ABORT_ERR', 'UND_ERR_ABORTED']);
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'ECONNABORTED', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH']);

/** A transport failure: always retried, whatever it is, because the platform may simply be down. */
export function classifyTransportError(err: unknown): Decision {
  const e = err as { code?: string; name?: string; message?: string; cause?: { code?: string } };
  const code = e?.code ?? e?.cause?.code ?? '';
  let errorClass: ErrorClass = 'connection';
  if (DNS_CODES.has(code)) errorClass = 'dns';
  else if (TIMEOUT_CODES.has(code) || e?.name === 'TimeoutError' || e?.name === 'AbortError') errorClass = 'timeout';
  else if (/CERT|SSL|TLS|ERR_TLS/i.test(code)) errorClass = 'tls';
  else if (!CONNECTION_CODES.has(code) && code) errorClass = 'connection';
  return { outcome: 'retry', errorClass, reason: `${errorClass}: ${code || e?.name || 'error'}${e?.message ? ` (${e.message})` : ''}` };
}

/** Status classes decide first; the adapter's reading supplies ids and business detail. */
export function classifyResponse(res: InboundResponse, read: () => Interpretation): Decision {
  const s = res.status;
  let interp: Interpretation | undefined;
  let readError: string | undefined;
  try {
    interp = read();
  } catch (err) {
    readError = (err as Error).message;
  }
  const retryAfterMs = interp?.retryAfterMs ?? parseRetryAfter(res.headers['retry-after']);
  // Adapters built on statusInterpretation already start their reason with "HTTP <status>".
  const why = interp?.reason ? (interp.reason.startsWith(`HTTP ${s}`) ? interp.reason : `HTTP ${s}: ${interp.reason}`) : `HTTP ${s}`;
  if (s >= 500 || s === 408 || s === 425 || s === 429) {
    return { outcome: 'retry', errorClass: s >= 500 ? 'http-5xx' : 'http-retryable', reason: why, retryAfterMs };
  }
  if (s >= 400) return { outcome: 'reject', errorClass: 'http-4xx', reason: why };
  if (s < 200 || s >= 300) return { outcome: 'retry', errorClass: 'unreadable', reason: `unexpected HTTP ${s}` };
  if (!interp) return { outcome: 'retry', errorClass: 'unreadable', reason: `HTTP ${s} with a body the adapter cannot read${readError ? `: ${readError}` : ''}` };
  if (interp.outcome === 'reject') return { outcome: 'reject', errorClass: 'business-reject', reason: interp.reason ?? `HTTP ${s}, refused by the platform` };
  if (interp.outcome === 'retry') return { outcome: 'retry', errorClass: 'unreadable', reason: interp.reason ?? `HTTP ${s}, not accepted yet`, retryAfterMs };
  // An adapter that needs a ticket id says so (retry "unreadable"); one that returns delivered
  // without an id means it (a webhook with no response.ticketIdPath: any 2xx is delivery).
  return { outcome: 'delivered', remoteTicketId: interp.remoteTicketId, pendingToken: interp.pendingToken, reason: interp.reason };
}

export function parseRetryAfter(v: string | undefined, now = Date.now()): number | undefined {
  if (!v) return undefined;
  if (/^\s*\d+\s*$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

/** Retry policy of one platform (config `retry`). */
export interface RetryPolicy {
  /** Delays before each retry, in ms. Default: 10 s, 1 min, 5 min, 30 min, 2 h, 6 h. */
  delaysMs: number[];
  /** `full` (default): uniform in [0, delay]; `equal`: uniform in [delay/2, delay]; `none`. */
  jitter: 'full' | 'equal' | 'none';
  /** Longest Retry-After honoured; longer ones are cut to this. Default 1 h. */
  maxRetryAfterMs: number;
  /** Shortest wait even when Retry-After asks for less. Default 0. */
  minDelayMs: number;
}

/** Stops before the 12-hour intervention deadline is lost: 10 s + 1 min + 5 min + 30 min + 2 h + 6 h ≈ 8 h 36 min. */
export const DEFAULT_RETRY: RetryPolicy = {
  delaysMs: [10_000, 60_000, 300_000, 1_800_000, 7_200_000, 21_600_000],
  jitter: 'full',
  maxRetryAfterMs: 3_600_000,
  minDelayMs: 0,
};

/** Total attempts a delivery gets: the first plus one per configured delay. */
export function maxAttempts(p: RetryPolicy): number {
  return p.delaysMs.length + 1;
}

/**
 * Delay before retry number `attemptsMade` (1 = after the first attempt). Retry-After, when the
 * platform sends one, replaces the schedule's delay within bounds.
 */
export function retryDelay(p: RetryPolicy, attemptsMade: number, retryAfterMs?: number, random: () => number = Math.random): number {
  if (retryAfterMs !== undefined) return Math.max(p.minDelayMs, Math.min(retryAfterMs, p.maxRetryAfterMs));
  const base = p.delaysMs[Math.min(attemptsMade - 1, p.delaysMs.length - 1)] ?? 0;
  const d = p.jitter === 'full' ? random() * base : p.jitter === 'equal' ? base / 2 + random() * (base / 2) : base;
  return Math.max(p.minDelayMs, Math.round(d));
}
