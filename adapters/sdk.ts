/**
 * fenliu adapter SDK.
 *
 * An adapter turns a canonical alert into one receiving platform's request and reads that
 * platform's answers. It is a pure module: no network, no file system, no clock, no randomness.
 * Everything time- or identity-dependent arrives in the {@link TranslateContext}. Transport,
 * signing, timeouts, retries and data minimisation belong to the engine.
 *
 * Third-party adapters import only this file (and JSON Schemas), so it must stay dependency-free.
 */

/** JSON Schema (2020-12) as a plain object. */
export type JsonSchema = Record<string, unknown>;

export interface AlertSource {
  system: string;
  alertId: string;
  desk?: string;
}

export interface AlertLocation {
  address: string;
  regionCode: string;
  gridCode?: string;
  lat?: number;
  lon?: number;
  crs?: 'WGS84' | 'GCJ02';
}

export interface AlertPerson {
  name?: string;
  phone?: string;
}

export interface AlertCaller extends AlertPerson {
  confidential?: boolean;
}

export interface AlertParty extends AlertPerson {
  role: string;
  idNumber?: string;
}

export interface AlertPolice {
  unit?: string;
  officerId?: string;
  attendedAt?: string;
  sceneStatus?: 'controlled' | 'ongoing' | 'resolved';
  assessment?: string;
}

export interface AlertAttachment {
  url: string;
  mediaType: string;
  sha256?: string;
}

/**
 * Canonical alert, schemas/alert.v1.schema.json. What an adapter receives has already been
 * minimised for its platform: any field the platform may not see is absent.
 */
export interface Alert {
  source: AlertSource;
  reportedAt: string;
  category: string;
  summary: string;
  description?: string;
  location: AlertLocation;
  caller?: AlertCaller;
  parties?: AlertParty[];
  police?: AlertPolice;
  priority?: 'normal' | 'urgent';
  attachments?: AlertAttachment[];
  extensions?: Record<string, unknown>;
}

/** Everything an adapter may depend on besides the alert. Deterministic by construction. */
export interface TranslateContext<C = Record<string, unknown>> {
  platform: {
    id: string;
    /** The platform's `options` from fenliu's config, validated against the adapter's configSchema. */
    config: C;
  };
  delivery: {
    /** Stable id of this alert × platform delivery; also sent as the idempotency header. */
    id: string;
    alertId: string;
    /** Ticket id the platform gave for this delivery, when known (cancel, update, urge, poll). */
    remoteTicketId?: string;
  };
  /** ISO 8601 instant of this translation; use it instead of the clock. */
  now: string;
  /** The intervention deadline (办理时限) for this delivery, ISO 8601, when the route sets one. */
  interveneBy?: string;
  /** Alert id as fenliu knows it (e.g. "alt_…"). */
  alertId: string;
  /**
   * Set for notices about a case rather than the case itself: feedback to 110 (a delivery's
   * new state), escalations when a deadline passes.
   */
  event?: CaseEvent;
}

/** A fact about one delivery of a case, as feedback and escalations carry it. */
export interface CaseEvent {
  type: 'state' | 'overdue' | 'repeat';
  /** The delivery the event is about (not the feedback delivery itself). */
  deliveryId: string;
  platformId: string;
  platformName?: string;
  state?: ReportedState | 'failed' | 'queued' | 'sending';
  at: string;
  note?: string;
  remoteTicketId?: string;
  /** For overdue: which deadline (ack, intervene, resolve) and when it was due. */
  sla?: 'ack' | 'intervene' | 'resolve';
  dueAt?: string;
  /** The latest signed audit checkpoint when the event was queued (an anchor for the 110 system; docs/audit.md). */
  auditCheckpoint?: { size: number; root: string };
}

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/**
 * A request for the engine to send. `path` is joined to the platform's configured base URL.
 * `body` is serialised by the engine according to `contentType`:
 * `application/json` (default) → JSON.stringify; `application/x-www-form-urlencoded` → form
 * fields from a flat object; a string body is sent as is.
 */
export interface OutboundRequest {
  method: HttpMethod;
  path: string;
  headers?: Record<string, string>;
  contentType?: 'application/json' | 'application/x-www-form-urlencoded' | string;
  /** Query parameters, appended to `path`. */
  query?: Record<string, string>;
  body?: unknown;
}

/** What came back from the platform. Headers are lower-cased; the body is text, possibly cut. */
export interface InboundResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export type Outcome = 'delivered' | 'retry' | 'reject';

/**
 * The adapter's reading of a response. The engine's classifier has the last word on status
 * classes (5xx/408/425/429 are always retried, other 4xx never are); the adapter supplies the
 * business detail: the ticket id, a business-level rejection inside a 2xx, a reason.
 */
export interface Interpretation {
  outcome: Outcome;
  /** The platform's own id for the ticket (工单编号, service_request_id, event id). */
  remoteTicketId?: string;
  /** Batch platforms (Open311 `token`) accept now and give the ticket id later, through poll. */
  pendingToken?: string;
  retryAfterMs?: number;
  reason?: string;
}

/** Business states a platform may report. Mirrors the delivery lifecycle (docs/lifecycle.md). */
export type ReportedState =
  | 'delivered'
  | 'accepted'
  | 'in_progress'
  | 'resolved'
  | 'closed'
  | 'returned'
  | 'rejected'
  | 'reopened'
  | 'cancelled';

/** A canonical status event, produced from a platform callback or poll answer. */
export interface StatusEvent {
  /** The platform's event id, used to deduplicate. Derive one deterministically when absent. */
  eventId: string;
  state: ReportedState;
  /** ISO 8601 instant the platform says it happened. */
  at: string;
  /** Ties the event to a delivery: fenliu's delivery id if the platform echoes it ... */
  deliveryId?: string;
  /** ... or the platform's ticket id. */
  remoteTicketId?: string;
  /** Free text: result, reason for return, 回访 satisfaction. */
  note?: string;
  /** Handling department (承办单位) as the platform names it. */
  handler?: string;
  /** Satisfaction, when the platform reports 回访 results. */
  satisfaction?: string;
}

export interface CallbackInput {
  headers: Record<string, string>;
  /** Raw body text, already authenticated by the engine. */
  body: string;
  contentType?: string;
}

export interface CallbackContext<C = Record<string, unknown>> {
  platform: { id: string; config: C };
  now: string;
}

export interface PollContext<C = Record<string, unknown>> extends CallbackContext<C> {
  /** Deliveries not yet in a final state, with what the platform knows them by. */
  deliveries: { id: string; remoteTicketId?: string; pendingToken?: string }[];
}

export interface PollHook<C = Record<string, unknown>> {
  /** One or more requests that ask the platform for the state of `ctx.deliveries`. */
  requests(ctx: PollContext<C>): OutboundRequest[];
  /** Status events (and ticket ids for pending tokens) read from one poll answer. */
  parse(res: InboundResponse, ctx: PollContext<C>): StatusEvent[];
}

/** What a discovery check knows of the platform: its options and its configured base URL. */
export interface DiscoveryContext<C = Record<string, unknown>> {
  platform: { id: string; config: C; url: string };
}

/** One answer to a discovery request: the response, or why there is none (connection refused, ...). */
export type DiscoveryAnswer = { request: OutboundRequest; response?: InboundResponse; error?: string };

/** What a discovery check found. */
export interface DiscoveryReport<C = Record<string, unknown>> {
  /** Things an operator should fix or know (a configured service code the platform does not list). */
  warnings: string[];
  /** Facts found (formats offered, services listed). */
  info: string[];
  /**
   * Options the platform's own description decides where the config is silent (Open311: the
   * format its Service Discovery document offers). Never overrides what the config sets.
   */
  defaults?: Partial<C>;
}

/**
 * A look at the platform's self-description (Open311: Service Discovery and GET services), run by
 * `fenliu adapter test --url` and when fenliu starts. Pure like the rest: the engine sends the
 * requests and hands back the answers.
 */
export interface DiscoveryHook<C = Record<string, unknown>> {
  requests(ctx: DiscoveryContext<C>): OutboundRequest[];
  /**
   * Requests that depend on the first answers (Open311: GET services/{code} for each configured
   * service whose listing says metadata=true), sent after them; all answers then go to `read`.
   */
  followUp?(answers: DiscoveryAnswer[], ctx: DiscoveryContext<C>): OutboundRequest[];
  read(answers: DiscoveryAnswer[], ctx: DiscoveryContext<C>): DiscoveryReport<C>;
}

export interface AdapterFixture {
  /** Short name; golden files are `golden/<name>.json`. */
  name: string;
  alert: Alert;
  /** Platform options for this fixture; the adapter's `exampleConfig` when absent. */
  config?: Record<string, unknown>;
  /** Fixed context pieces; the conformance suite fills the rest deterministically. */
  context?: Partial<TranslateContext>;
}

/** Sample responses the conformance suite feeds to interpretResponse / parseCallback. */
export interface AdapterSamples {
  /** A 2xx answer that carries a ticket id, and the id expected from it. */
  accepted: { response: InboundResponse; remoteTicketId?: string; pendingToken?: string };
  /** A 4xx validation error in the platform's own error format. */
  validationError?: InboundResponse;
  /** A 2xx answer whose body says the business request failed, if the platform has them. */
  businessError?: InboundResponse;
  /** Callback bodies and the states expected from them. */
  callbacks?: { input: CallbackInput; states: ReportedState[] }[];
  /** Poll answers (for adapters with `poll`), the deliveries polled, and the states expected. */
  poll?: { deliveries: PollContext['deliveries']; response: InboundResponse; states: ReportedState[] }[];
}

export interface Adapter<C = Record<string, unknown>> {
  /** Stable id, kebab-case; used as `adapter:` in platform config. */
  id: string;
  /** Semantic version of the adapter's mapping; recorded with every translated payload. */
  version: string;
  description?: string;
  /** Schema of the platform `options` this adapter needs; validated at boot for each platform. */
  configSchema: JsonSchema;
  /** Schema of the `body` translate produces; checked before every send (a violation is a config bug). */
  outputSchema: JsonSchema;
  /**
   * Config-dependent output schema (e.g. the webhook adapter lets the integrator supply one).
   * When present, the engine and the conformance suite validate against its result instead of
   * `outputSchema`.
   */
  outputSchemaFor?(config: C): JsonSchema;
  /** A config that satisfies configSchema, for tests, scaffolds and `fenliu adapter test`. */
  exampleConfig: C;
  translate(alert: Alert, ctx: TranslateContext<C>): OutboundRequest;
  interpretResponse(res: InboundResponse, ctx: TranslateContext<C>): Interpretation;
  /** Turns a platform's push callback into canonical status events. */
  parseCallback?(input: CallbackInput, ctx: CallbackContext<C>): StatusEvent[];
  poll?: PollHook<C>;
  /** Checks the configured options against the platform's own description of its services. */
  discovery?: DiscoveryHook<C>;
  /** The 110 withdrew the alert (撤单). */
  translateCancel?(alert: Alert, ctx: TranslateContext<C>, reason: string): OutboundRequest;
  /** A new version of the same source alert (more details). */
  translateUpdate?(alert: Alert, ctx: TranslateContext<C>): OutboundRequest;
  /** A repeat call about an open case: urge (催办) the platform. */
  translateUrge?(alert: Alert, ctx: TranslateContext<C>, repeat: { alertId: string; reportedAt: string; summary: string }): OutboundRequest;
  fixtures?: AdapterFixture[];
  samples?: AdapterSamples;
}

/** Identity helper that gives adapter authors type inference for their config. */
export function defineAdapter<C>(adapter: Adapter<C>): Adapter<C> {
  return adapter;
}

/** Parses a body as JSON, or returns undefined; adapters use it instead of try/catch noise. */
export function parseJson(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
}

/** Adds hours to an ISO instant, deterministically (no clock). */
export function addHours(iso: string, hours: number): string {
  return new Date(Date.parse(iso) + hours * 3_600_000).toISOString();
}

/** Statuses the engine always retries; adapters agree so that both readings match. */
export function isRetryableStatus(status: number): boolean {
  return status >= 500 || status === 408 || status === 425 || status === 429;
}

/**
 * Reads Retry-After (delta-seconds or HTTP-date) as milliseconds. An HTTP-date needs `now`,
 * because adapters have no clock; without it, or when unreadable, the result is undefined.
 */
export function retryAfterMs(headers: Record<string, string>, now?: string): number | undefined {
  const raw = headers['retry-after']?.trim();
  if (!raw) return undefined;
  if (/^\d+$/.test(raw)) return Number(raw) * 1000;
  const at = Date.parse(raw);
  const from = now === undefined ? NaN : Date.parse(now);
  if (Number.isNaN(at) || Number.isNaN(from)) return undefined;
  return Math.max(0, at - from);
}

/**
 * The reading of a non-2xx answer shared by all adapters: retry on 5xx/408/425/429 (with
 * Retry-After), reject on other 4xx. `reason` is the platform's own error text when the adapter
 * could extract one. Returns undefined for 2xx, which only the adapter can read.
 */
export function statusInterpretation(res: InboundResponse, reason?: string, now?: string): Interpretation | undefined {
  if (res.status >= 200 && res.status < 300) return undefined;
  const why = reason ? `HTTP ${res.status}: ${reason}` : `HTTP ${res.status}`;
  if (isRetryableStatus(res.status)) {
    const after = retryAfterMs(res.headers, now);
    return after === undefined ? { outcome: 'retry', reason: why } : { outcome: 'retry', reason: why, retryAfterMs: after };
  }
  if (res.status >= 400) return { outcome: 'reject', reason: why };
  // 1xx/3xx never reach an adapter from a well-behaved client; treat as transient.
  return { outcome: 'retry', reason: `unexpected ${why}` };
}

/**
 * Looks a category up in a code table whose keys are exact codes or prefix patterns
 * (`dispute.*` matches `dispute.debt` and `dispute.family.x`). Exact match wins, then the
 * longest matching prefix, so tables can set a family default and override single codes.
 */
export function lookupCategory<T>(table: Record<string, T> | undefined, category: string): T | undefined {
  if (!table) return undefined;
  if (Object.prototype.hasOwnProperty.call(table, category)) return table[category];
  let best: { len: number; value: T } | undefined;
  for (const [key, value] of Object.entries(table)) {
    if (key === '*') {
      if (!best) best = { len: 0, value };
      continue;
    }
    if (!key.endsWith('.*')) continue;
    const prefix = key.slice(0, -1);
    if (category.startsWith(prefix) && (!best || prefix.length > best.len)) best = { len: prefix.length, value };
  }
  return best?.value;
}

/** Reads a dotted path (`a.b.0.c`) from parsed JSON; undefined when any step is missing. */
export function getPath(value: unknown, path: string): unknown {
  if (path === '' || path === '.') return value;
  let cur: unknown = value;
  for (const key of path.split('.')) {
    // Own properties only: a path from config must not reach __proto__ or constructor.
    if (cur === null || typeof cur !== 'object' || !Object.prototype.hasOwnProperty.call(cur, key)) return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

/** Cuts text to at most `max` characters without splitting a surrogate pair. */
export function truncate(text: string, max: number): string {
  const chars = Array.from(text);
  return chars.length <= max ? text : chars.slice(0, max).join('');
}
