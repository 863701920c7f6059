/**
 * What each simulated platform answers, in its own wire format (see docs/adapters.md). These are
 * deliberately strict where real platforms are strict (required fields, idempotency by external
 * id) so the demo exercises the same failure paths as production.
 */

export type SandboxKind = 'hotline-12345' | 'grid-governance' | 'city-ops' | 'open311' | 'webhook' | 'feedback-110';

export const SANDBOX_KINDS: readonly SandboxKind[] = ['hotline-12345', 'grid-governance', 'city-ops', 'open311', 'webhook', 'feedback-110'];

export interface ProtocolRequest {
  method: string;
  pathname: string;
  query: URLSearchParams;
  headers: Record<string, string>;
  body: string;
  /** JSON or form fields, when the body is either. */
  parsed: unknown;
}

export interface ProtocolResponse {
  status: number;
  headers?: Record<string, string>;
  body: string;
}

export interface SandboxTicket {
  id: string;
  /** fenliu's delivery id (外部编号 / externalId / Idempotency-Key), when the request carried one. */
  externalId?: string;
  /** Open311 batch services hand out a token first. */
  token?: string;
  status: string;
  statusNotes?: string;
  createdAt: string;
  updatedAt: string;
  /** The parsed body of the creating request. */
  request: unknown;
  /** Follow-up operations received for this ticket (cancel, urge, supplement, ...). */
  operations: { op: string; at: string; body: unknown }[];
}

export interface ProtocolState {
  kind: SandboxKind;
  seq: number;
  tickets: Map<string, SandboxTicket>;
  byExternalId: Map<string, string>;
  byToken: Map<string, string>;
  /** Open311 only: answer POST /requests with a token (batch service) instead of an id. */
  open311Mode: 'realtime' | 'batch';
  /** Open311 only: the service codes GET services lists (and POST accepts). Default {@link OPEN311_SERVICES}. */
  open311Services?: readonly string[];
  /** Open311 only: service code → required attribute code → description (a service definition). */
  open311Required?: Readonly<Record<string, Readonly<Record<string, string>>>>;
  /** Injected for tests; wall clock otherwise (the sandbox is not an adapter and may read it). */
  clock: () => Date;
}

const JSON_TYPE = { 'content-type': 'application/json; charset=utf-8' };

function json(status: number, body: unknown, headers: Record<string, string> = {}): ProtocolResponse {
  return { status, headers: { ...JSON_TYPE, ...headers }, body: JSON.stringify(body) };
}

function obj(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function str(v: unknown): string | undefined {
  if (typeof v === 'string' && v.trim()) return v;
  if (typeof v === 'number') return String(v);
  return undefined;
}

/** The platform's way to say "you sent something invalid". */
export function validationError(kind: SandboxKind, field: string, message: string): ProtocolResponse {
  switch (kind) {
    case 'hotline-12345':
      return json(400, { code: 4001, msg: `${field}${message}` });
    case 'grid-governance':
      return json(400, { error: { code: 'VALIDATION', message, field } });
    case 'city-ops':
      return json(422, { errors: [{ field, message }] });
    case 'open311':
      return json(400, [{ code: 400, description: `${field} ${message}` }]);
    default:
      return json(400, { error: { message: `${field} ${message}`, field } });
  }
}

/** The platform's way to say "not now". */
export function unavailable(kind: SandboxKind, status = 503, headers: Record<string, string> = {}): ProtocolResponse {
  switch (kind) {
    case 'hotline-12345':
      return json(status, { code: 5000, msg: '系统繁忙，请稍后重试' }, headers);
    case 'grid-governance':
      return json(status, { error: { code: 'UNAVAILABLE', message: 'service temporarily unavailable' } }, headers);
    case 'city-ops':
      return json(status, { errors: [{ field: '', message: 'service temporarily unavailable' }] }, headers);
    case 'open311':
      return json(status, [{ code: status, description: 'service temporarily unavailable' }], headers);
    default:
      return json(status, { error: { message: 'service temporarily unavailable' } }, headers);
  }
}

function notFound(kind: SandboxKind, what: string): ProtocolResponse {
  switch (kind) {
    case 'hotline-12345':
      // 12345 platforms answer business errors with HTTP 200 and their own code.
      return json(200, { code: 2004, msg: `${what}不存在` });
    case 'grid-governance':
      return json(404, { error: { code: 'NOT_FOUND', message: `${what} not found` } });
    case 'city-ops':
      return json(404, { errors: [{ field: 'id', message: `${what} not found` }] });
    case 'open311':
      return json(404, [{ code: 404, description: `${what} not found` }]);
    default:
      return json(404, { error: { message: `${what} not found` } });
  }
}

function beijingDate(d: Date): string {
  return new Date(d.getTime() + 8 * 3_600_000).toISOString().slice(0, 10).replace(/-/g, '');
}

function nextTicketId(state: ProtocolState): string {
  const n = ++state.seq;
  const now = state.clock();
  switch (state.kind) {
    case 'hotline-12345':
      return `GD${beijingDate(now)}${String(n).padStart(4, '0')}`;
    case 'grid-governance':
      return `GE-${beijingDate(now)}-${String(n).padStart(4, '0')}`;
    case 'city-ops':
      return `CASE-${String(n).padStart(6, '0')}`;
    case 'open311':
      return String(638_000 + n);
    default:
      return `WH-${String(n).padStart(6, '0')}`;
  }
}

/** Creates a ticket, or returns the existing one for a repeated external id (idempotent create). */
function create(state: ProtocolState, externalId: string | undefined, request: unknown): { ticket: SandboxTicket; created: boolean } {
  const existing = externalId ? state.byExternalId.get(externalId) : undefined;
  if (existing) return { ticket: state.tickets.get(existing)!, created: false };
  const now = state.clock().toISOString();
  const ticket: SandboxTicket = { id: nextTicketId(state), status: 'open', createdAt: now, updatedAt: now, request, operations: [] };
  if (externalId) {
    ticket.externalId = externalId;
    state.byExternalId.set(externalId, ticket.id);
  }
  state.tickets.set(ticket.id, ticket);
  return { ticket, created: true };
}

function followUp(state: ProtocolState, id: string, op: string, body: unknown): SandboxTicket | undefined {
  const ticket = state.tickets.get(decodeURIComponent(id));
  if (!ticket) return undefined;
  ticket.operations.push({ op, at: state.clock().toISOString(), body });
  if (op === 'cancel' || op === 'revoke') ticket.status = 'cancelled';
  ticket.updatedAt = state.clock().toISOString();
  return ticket;
}

function missing(body: Record<string, unknown>, fields: string[]): string | undefined {
  return fields.find((f) => {
    const v = f.split('.').reduce<unknown>((o, k) => obj(o)[k], body);
    return v === undefined || v === null || v === '';
  });
}

function hotline(req: ProtocolRequest, state: ProtocolState): ProtocolResponse {
  const body = obj(req.parsed);
  if (req.method === 'POST' && req.pathname === '/api/workorders') {
    const miss = missing(body, ['外部编号', '关联警情号', '诉求类型', '诉求内容', '事发地址', '行政区划']);
    if (miss) return validationError(state.kind, miss, '不能为空');
    const { ticket } = create(state, str(body['外部编号']) ?? req.headers['idempotency-key'], body);
    return json(200, { code: 0, msg: '接收成功', data: { 工单编号: ticket.id } });
  }
  const m = /^\/api\/workorders\/([^/]+)\/(cancel|urge|supplement)$/.exec(req.pathname);
  if (req.method === 'POST' && m) {
    const t = followUp(state, m[1], m[2], body);
    return t ? json(200, { code: 0, msg: '成功', data: { 工单编号: t.id } }) : notFound(state.kind, '工单');
  }
  return notFound(state.kind, `接口 ${req.method} ${req.pathname} `);
}

function grid(req: ProtocolRequest, state: ProtocolState): ProtocolResponse {
  const body = obj(req.parsed);
  if (req.method === 'POST' && req.pathname === '/api/events') {
    const miss = missing(body, ['网格编码', '事件类型', '事件描述', '事发地点', '上报时间']);
    if (miss) return validationError(state.kind, miss, 'is required');
    const { ticket } = create(state, str(body['外部编号']) ?? req.headers['idempotency-key'], body);
    return json(201, { eventId: ticket.id });
  }
  const m = /^\/api\/events\/([^/]+)\/(revoke|urge)$/.exec(req.pathname);
  if (req.method === 'POST' && m) {
    const t = followUp(state, m[1], m[2], body);
    return t ? json(200, { eventId: t.id, result: 'OK' }) : notFound(state.kind, 'event');
  }
  return notFound(state.kind, `route ${req.method} ${req.pathname}`);
}

function cityOps(req: ProtocolRequest, state: ProtocolState): ProtocolResponse {
  const body = obj(req.parsed);
  if (req.method === 'POST' && req.pathname === '/cases') {
    const miss = missing(body, ['externalId', 'title', 'description', 'category', 'location.address', 'reportedAt']);
    if (miss) return validationError(state.kind, miss, 'is required');
    const { ticket } = create(state, str(body.externalId) ?? req.headers['idempotency-key'], body);
    return json(201, { caseId: ticket.id });
  }
  const m = /^\/cases\/([^/]+)(?:\/(cancel|comments))?$/.exec(req.pathname);
  if (m && ((req.method === 'PATCH' && !m[2]) || (req.method === 'POST' && m[2]))) {
    const t = followUp(state, m[1], m[2] ?? 'update', body);
    return t ? json(200, { caseId: t.id }) : notFound(state.kind, 'case');
  }
  return notFound(state.kind, `route ${req.method} ${req.pathname}`);
}

/** Service codes the simulated Open311 server offers unless told otherwise: the demo's and the adapter's examples. */
export const OPEN311_SERVICES: readonly string[] = ['GENERAL', '001', 'LOCK-01', 'WATER-LEAK', 'NOISE', 'MEDIATION', 'CONSUMER'];

function open311View(t: SandboxTicket): Record<string, unknown> {
  const r = obj(t.request);
  return {
    service_request_id: t.id,
    // open|closed as the spec has them; an extended status set by a test or the autopilot
    // (acknowledged, in_progress) is reported as is, as servers with richer workflows do.
    status: t.status === 'cancelled' ? 'closed' : t.status,
    status_notes: t.statusNotes ?? null,
    service_code: r.service_code ?? null,
    description: r.description ?? null,
    requested_datetime: t.createdAt,
    updated_datetime: t.updatedAt,
    address: r.address_string ?? null,
    lat: r.lat !== undefined ? Number(r.lat) : null,
    long: r.long !== undefined ? Number(r.long) : null,
  };
}

function xmlEscape(v: string): string {
  return v.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** GeoReport v2 XML: the root, one element per item, leaves as text, null as an empty element. */
function open311Xml(root: string, item: string, items: Record<string, unknown>[]): string {
  return `<?xml version="1.0" encoding="utf-8"?>\n<${root}>${open311Items(item, items)}</${root}>`;
}

/** One element per item, leaves as text, null as an empty element. */
function open311Items(item: string, items: Record<string, unknown>[]): string {
  const leaf = (k: string, v: unknown) => (v === null || v === undefined ? `<${k}/>` : `<${k}>${xmlEscape(String(v))}</${k}>`);
  return items.map((o) => `<${item}>${Object.entries(o).map(([k, v]) => leaf(k, v)).join('')}</${item}>`).join('');
}

/** One answer in the format the path asked for (`.xml`, the spec's required one, or `.json`). */
function open311Answer(fmt: string, status: number, root: string, item: string, items: Record<string, unknown>[]): ProtocolResponse {
  if (fmt === 'json') return json(status, items);
  return { status, headers: { 'content-type': 'text/xml; charset=utf-8' }, body: open311Xml(root, item, items) };
}

function open311Error(fmt: string, status: number, description: string): ProtocolResponse {
  return open311Answer(fmt, status, 'errors', 'error', [{ code: status, description }]);
}

function open311(req: ProtocolRequest, state: ProtocolState): ProtocolResponse {
  const m0 = /^(.*)\.(xml|json)$/.exec(req.pathname);
  const resource = m0?.[1] ?? req.pathname;
  const fmt = m0?.[2] ?? 'xml';
  const services = state.open311Services ?? OPEN311_SERVICES;
  const required = state.open311Required ?? {};
  if (req.method === 'POST' && resource === '/requests' && m0) {
    if (!(req.headers['content-type'] ?? '').includes('application/x-www-form-urlencoded')) {
      return open311Error(fmt, 400, 'Content-Type must be application/x-www-form-urlencoded');
    }
    const body = obj(req.parsed);
    const miss = missing(body, ['api_key', 'service_code']);
    if (miss) return open311Error(fmt, 400, `${miss} was not provided`);
    if (!services.includes(String(body.service_code))) return open311Error(fmt, 404, `service_code ${String(body.service_code)} was not found`);
    const absent = Object.keys(required[String(body.service_code)] ?? {}).find((c) => !(`attribute[${c}]` in body) && !(`attribute[${c}][]` in body));
    if (absent) return open311Error(fmt, 400, `attribute[${absent}] was not provided`);
    if (!(body.lat && body.long) && !body.address_string && !body.address_id) {
      return open311Error(fmt, 400, 'location (lat & long, address_string or address_id) was not provided');
    }
    if (Array.from(String(body.description ?? '')).length > 4000) return open311Error(fmt, 400, 'description is longer than 4000 characters');
    const { ticket, created } = create(state, req.headers['idempotency-key'], body);
    if (state.open311Mode === 'batch') {
      if (created) {
        ticket.token = `TK${ticket.id}`;
        state.byToken.set(ticket.token, ticket.id);
      }
      return open311Answer(fmt, 200, 'service_requests', 'request', [{ token: ticket.token }]);
    }
    return open311Answer(fmt, 200, 'service_requests', 'request', [{ service_request_id: ticket.id, service_notice: 'The request has been forwarded to the responsible department', account_id: null }]);
  }
  if (req.method !== 'GET' || !m0) return notFound(state.kind, `route ${req.method} ${req.pathname}`);
  if (resource === '/requests') {
    const ids = (req.query.get('service_request_id') ?? '').split(',').filter(Boolean);
    const list = ids.length ? ids.map((id) => state.tickets.get(id)).filter((t): t is SandboxTicket => !!t) : [...state.tickets.values()];
    return open311Answer(fmt, 200, 'service_requests', 'request', list.map(open311View));
  }
  let m = /^\/requests\/([^/]+)$/.exec(resource);
  if (m) {
    const t = state.tickets.get(decodeURIComponent(m[1]));
    return t ? open311Answer(fmt, 200, 'service_requests', 'request', [open311View(t)]) : open311Error(fmt, 404, 'service_request_id not found');
  }
  m = /^\/tokens\/([^/]+)$/.exec(resource);
  if (m) {
    const token = decodeURIComponent(m[1]);
    const id = state.byToken.get(token);
    return id ? open311Answer(fmt, 200, 'service_requests', 'request', [{ service_request_id: id, token }]) : open311Error(fmt, 404, 'token not found');
  }
  if (resource === '/services') {
    return open311Answer(
      fmt,
      200,
      'services',
      'service',
      services.map((code) => ({ service_code: code, service_name: `Service ${code}`, description: null, metadata: code in required, type: state.open311Mode, keywords: '', group: 'general' })),
    );
  }
  m = /^\/services\/([^/]+)$/.exec(resource);
  if (m) {
    const code = decodeURIComponent(m[1]);
    if (!services.includes(code)) return open311Error(fmt, 404, `service_code ${code} was not found`);
    // GeoReport v2 "GET Service Definition", in the spec's element order.
    const attrs = Object.entries(required[code] ?? {}).map(([c, description], i) => ({ variable: true, code: c, datatype: 'string', required: true, datatype_description: null, order: i + 1, description }));
    if (fmt === 'json') return json(200, { service_code: code, attributes: attrs });
    const body = `<service_definition><service_code>${xmlEscape(code)}</service_code><attributes>${open311Items('attribute', attrs)}</attributes></service_definition>`;
    return { status: 200, headers: { 'content-type': 'text/xml; charset=utf-8' }, body: `<?xml version="1.0" encoding="utf-8"?>\n${body}` };
  }
  if (resource === '/discovery') {
    // Service Discovery: this endpoint offers both formats.
    const endpoint = { specification: 'http://wiki.open311.org/GeoReport_v2', url: `http://${req.headers.host ?? 'sandbox'}`, changeset: '2026-11-29T00:00:00Z', type: 'test', formats: ['text/xml', 'application/json'] };
    if (fmt === 'json') return json(200, { changeset: endpoint.changeset, contact: 'sandbox', key_service: 'sandbox', endpoints: [endpoint] });
    const fmts = endpoint.formats.map((f) => `<format>${f}</format>`).join('');
    return {
      status: 200,
      headers: { 'content-type': 'text/xml; charset=utf-8' },
      body: `<?xml version="1.0" encoding="utf-8"?>\n<discovery><changeset>${endpoint.changeset}</changeset><contact>sandbox</contact><key_service>sandbox</key_service><endpoints><endpoint><specification>${endpoint.specification}</specification><url>${xmlEscape(endpoint.url)}</url><changeset>${endpoint.changeset}</changeset><type>test</type><formats>${fmts}</formats></endpoint></endpoints></discovery>`,
    };
  }
  return notFound(state.kind, `route ${req.method} ${req.pathname}`);
}

function webhook(req: ProtocolRequest, state: ProtocolState): ProtocolResponse {
  if (req.method === 'GET') return notFound(state.kind, `route ${req.method} ${req.pathname}`);
  if (req.parsed === undefined) return validationError(state.kind, 'body', 'must be JSON');
  const body = obj(req.parsed);
  const { ticket } = create(state, req.headers['idempotency-key'] ?? str(body.ref) ?? str(body.deliveryId), req.parsed);
  return json(201, { id: ticket.id, status: 'received' });
}

function feedback110(req: ProtocolRequest, state: ProtocolState): ProtocolResponse {
  if (req.method !== 'POST') return notFound(state.kind, `route ${req.method} ${req.pathname}`);
  if (req.parsed === undefined) return validationError(state.kind, 'body', 'must be JSON');
  return json(200, { code: 0, msg: 'ok' });
}

export function handle(req: ProtocolRequest, state: ProtocolState): ProtocolResponse {
  switch (state.kind) {
    case 'hotline-12345':
      return hotline(req, state);
    case 'grid-governance':
      return grid(req, state);
    case 'city-ops':
      return cityOps(req, state);
    case 'open311':
      return open311(req, state);
    case 'webhook':
      return webhook(req, state);
    case 'feedback-110':
      return feedback110(req, state);
  }
}
