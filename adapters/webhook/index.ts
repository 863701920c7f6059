/**
 * Generic webhook: an integrator connects a platform with config alone. The request body is
 * built by a small declarative mapping (synchronous and pure, unlike JSONata v2 which is async),
 * and the answer and callbacks are read through dotted paths.
 *
 * Mapping nodes: a plain object or array is copied with each value mapped; a scalar is a literal;
 * an object with one of these keys is a directive:
 *   {"path": "location.address"}                    value at a dotted path of the alert
 *   {"template": "{{summary}} @ {{location.address}}"} text with {{path}} placeholders
 *   {"const": <any JSON>}                             a literal, even an object that looks like a directive
 *   {"map": {"path": "category", "table": {...}, "default": ...}}  code table, keys may be `prefix.*`
 *   {"join": [node, ...], "separator": "\n"}         non-empty results joined
 *   {"each": "parties", "mapping": node}              one mapped item per array element (paths relative to it)
 * Paths starting with `$` read the delivery context: $delivery.id, $delivery.remoteTicketId,
 * $alertId, $now, $interveneBy, $platform.id. Inside `each`, `^` reads the whole alert.
 * Modifiers on any directive: "default", "maxLength", "when": path, "unless": path (the value
 * is left out when the path is falsy / truthy, e.g. "unless": "caller.confidential").
 * A value that resolves to undefined is left out, and so is an object all of whose values are.
 */
import {
  defineAdapter,
  getPath,
  lookupCategory,
  parseJson,
  statusInterpretation,
  truncate,
  type Alert,
  type HttpMethod,
  type JsonSchema,
  type OutboundRequest,
  type ReportedState,
  type StatusEvent,
  type TranslateContext,
} from '../sdk.js';
import { idString, isObject, normalizeTime, sampleAlerts, unreadable2xx } from '../common.js';

export type MappingNode = unknown;

export interface WebhookConfig {
  method?: Exclude<HttpMethod, 'GET' | 'DELETE'>;
  /** Joined to the platform URL; may hold {{placeholders}}, which are URL-encoded. */
  path: string;
  headers?: Record<string, string>;
  contentType?: 'application/json' | 'application/x-www-form-urlencoded';
  /** Absent: the canonical alert in an envelope {deliveryId, alertId, sentAt, alert}. */
  mapping?: MappingNode;
  response?: {
    /** Where the ticket id sits in a 2xx JSON answer. Absent: any 2xx counts as delivered. */
    ticketIdPath?: string;
    /** A 2xx whose value here is set (not null/false/0/"") is a business refusal. */
    errorPath?: string;
    /** Where the platform's error text sits, for reasons in the delivery log. */
    reasonPath?: string;
  };
  callback?: {
    /** Where the list of events sits when one callback carries several. */
    itemsPath?: string;
    statePath: string;
    stateMap: Record<string, ReportedState>;
    eventIdPath?: string;
    ticketIdPath?: string;
    deliveryIdPath?: string;
    atPath?: string;
    notePath?: string;
    handlerPath?: string;
  };
  /** JSON Schema the mapped body must satisfy; `{type: object}` when absent. */
  outputSchema?: JsonSchema;
}

const ID = 'webhook';
const DIRECTIVES = ['path', 'template', 'const', 'map', 'join', 'each'] as const;
const STATES: ReportedState[] = ['delivered', 'accepted', 'in_progress', 'resolved', 'closed', 'returned', 'rejected', 'reopened', 'cancelled'];
const PATH = { type: 'string', minLength: 1 };
const MODIFIERS = { default: {}, maxLength: { type: 'integer', minimum: 1 }, when: PATH, unless: PATH };

const configSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'webhook options',
  type: 'object',
  additionalProperties: false,
  required: ['path'],
  properties: {
    method: { enum: ['POST', 'PUT', 'PATCH'] },
    path: { type: 'string', pattern: '^/' },
    headers: { type: 'object', additionalProperties: { type: 'string' } },
    contentType: { enum: ['application/json', 'application/x-www-form-urlencoded'] },
    mapping: { $ref: '#/$defs/node' },
    response: {
      type: 'object',
      additionalProperties: false,
      properties: { ticketIdPath: PATH, errorPath: PATH, reasonPath: PATH },
    },
    callback: {
      type: 'object',
      additionalProperties: false,
      required: ['statePath', 'stateMap'],
      properties: {
        itemsPath: PATH,
        statePath: PATH,
        stateMap: { type: 'object', minProperties: 1, additionalProperties: { enum: STATES } },
        eventIdPath: PATH,
        ticketIdPath: PATH,
        deliveryIdPath: PATH,
        atPath: PATH,
        notePath: PATH,
        handlerPath: PATH,
      },
    },
    outputSchema: { type: 'object' },
  },
  $defs: {
    node: {
      anyOf: [
        { type: ['string', 'number', 'boolean', 'null'] },
        { type: 'array', items: { $ref: '#/$defs/node' } },
        {
          type: 'object',
          not: { anyOf: DIRECTIVES.map((d) => ({ required: [d] })) },
          additionalProperties: { $ref: '#/$defs/node' },
        },
        { type: 'object', required: ['path'], additionalProperties: false, properties: { path: PATH, ...MODIFIERS } },
        { type: 'object', required: ['template'], additionalProperties: false, properties: { template: { type: 'string' }, ...MODIFIERS } },
        { type: 'object', required: ['const'], additionalProperties: false, properties: { const: {} } },
        {
          type: 'object',
          required: ['map'],
          additionalProperties: false,
          properties: {
            map: {
              type: 'object',
              additionalProperties: false,
              required: ['path', 'table'],
              properties: { path: PATH, table: { type: 'object' }, default: {} },
            },
            ...MODIFIERS,
          },
        },
        {
          type: 'object',
          required: ['join'],
          additionalProperties: false,
          properties: { join: { type: 'array', items: { $ref: '#/$defs/node' } }, separator: { type: 'string' }, ...MODIFIERS },
        },
        {
          type: 'object',
          required: ['each', 'mapping'],
          additionalProperties: false,
          properties: { each: PATH, mapping: { $ref: '#/$defs/node' }, ...MODIFIERS },
        },
      ],
    },
  },
};

interface Scope {
  item: unknown;
  alert: Alert;
  ctx: Record<string, unknown>;
}

function read(path: string, s: Scope): unknown {
  if (path.startsWith('$')) return getPath(s.ctx, path.slice(1).replace(/^\./, ''));
  if (path.startsWith('^')) return getPath(s.alert, path.slice(1).replace(/^\./, ''));
  return getPath(s.item, path);
}

function text(v: unknown): string {
  if (v === undefined || v === null) return '';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

function render(template: string, s: Scope, encode = false): string {
  return template.replace(/\{\{\s*([^}\s]+)\s*\}\}/g, (_m, p: string) => {
    const v = text(read(p, s));
    return encode ? encodeURIComponent(v) : v;
  });
}

function directive(node: Record<string, unknown>): (typeof DIRECTIVES)[number] | undefined {
  return DIRECTIVES.find((d) => Object.prototype.hasOwnProperty.call(node, d));
}

/** Evaluates a mapping node; exported so integrators can unit-test a mapping on its own. */
export function evaluate(node: MappingNode, s: Scope): unknown {
  if (Array.isArray(node)) return node.map((n) => evaluate(n, s)).filter((v) => v !== undefined);
  if (!isObject(node)) return node;
  const kind = directive(node);
  if (!kind) {
    const out: Record<string, unknown> = {};
    const keys = Object.keys(node);
    for (const k of keys) {
      const v = evaluate(node[k], s);
      if (v !== undefined) out[k] = v;
    }
    return keys.length > 0 && Object.keys(out).length === 0 ? undefined : out;
  }
  if (kind === 'const') return node.const;
  if (typeof node.when === 'string' && !read(node.when, s)) return undefined;
  if (typeof node.unless === 'string' && read(node.unless, s)) return undefined;
  let v: unknown;
  switch (kind) {
    case 'path':
      v = read(String(node.path), s);
      break;
    case 'template':
      v = render(String(node.template), s);
      break;
    case 'map': {
      const m = isObject(node.map) ? node.map : {};
      const key = read(String(m.path), s);
      const table = isObject(m.table) ? m.table : {};
      v = key === undefined || key === null ? m.default : (lookupCategory(table, String(key)) ?? m.default);
      break;
    }
    case 'join': {
      const parts = (Array.isArray(node.join) ? node.join : []).map((n) => text(evaluate(n, s))).filter((t) => t !== '');
      v = parts.length ? parts.join(typeof node.separator === 'string' ? node.separator : '\n') : undefined;
      break;
    }
    case 'each': {
      const list = read(String(node.each), s);
      v = Array.isArray(list) ? list.map((item) => evaluate(node.mapping, { ...s, item })).filter((x) => x !== undefined) : undefined;
      break;
    }
  }
  if (v === undefined || v === null) v = node.default;
  if (typeof v === 'string' && typeof node.maxLength === 'number') v = truncate(v, node.maxLength);
  return v;
}

function scope(alert: Alert, ctx: TranslateContext<WebhookConfig>): Scope {
  // The platform config stays out of reach: it may hold secrets that must not end up in a body.
  return {
    item: alert,
    alert,
    ctx: { delivery: ctx.delivery, alertId: ctx.alertId, now: ctx.now, interveneBy: ctx.interveneBy, platform: { id: ctx.platform.id } },
  };
}

function body(alert: Alert, ctx: TranslateContext<WebhookConfig>): unknown {
  const m = ctx.platform.config.mapping;
  if (m === undefined) return { deliveryId: ctx.delivery.id, alertId: ctx.alertId, sentAt: ctx.now, alert };
  return evaluate(m, scope(alert, ctx)) ?? {};
}

const json = (status: number, b: unknown) => ({ status, headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) });

export default defineAdapter<WebhookConfig>({
  id: ID,
  version: '1.0.0',
  description: 'Generic JSON webhook, mapped declaratively from config',
  configSchema,
  outputSchema: { type: 'object' },
  outputSchemaFor(config) {
    return config.outputSchema ?? { type: 'object' };
  },
  exampleConfig: {
    method: 'POST',
    path: '/api/v1/jobs',
    headers: { 'x-source': 'fenliu' },
    mapping: {
      ref: { path: '$delivery.id' },
      alertNo: { path: 'source.alertId' },
      kind: { map: { path: 'category', table: { 'assist.unlock': 'UNLOCK', 'utility.*': 'REPAIR' }, default: 'OTHER' } },
      title: { template: '{{summary}} @ {{location.address}}', maxLength: 200 },
      text: { join: [{ path: 'summary' }, { path: 'description' }, { path: 'police.assessment' }], separator: '\n' },
      where: { address: { path: 'location.address' }, region: { path: 'location.regionCode' }, lat: { path: 'location.lat' }, lon: { path: 'location.lon' } },
      contact: { name: { path: 'caller.name', unless: 'caller.confidential' }, phone: { path: 'caller.phone', unless: 'caller.confidential' } },
      urgent: { map: { path: 'priority', table: { urgent: true }, default: false } },
      deadline: { path: '$interveneBy' },
      people: { each: 'parties', mapping: { role: { path: 'role' }, phone: { path: 'phone' } } },
      schema: { const: 'jobs/v1' },
    },
    response: { ticketIdPath: 'id', errorPath: 'error', reasonPath: 'error.message' },
    callback: {
      eventIdPath: 'eventId',
      statePath: 'state',
      ticketIdPath: 'jobId',
      deliveryIdPath: 'ref',
      atPath: 'at',
      notePath: 'note',
      stateMap: { ASSIGNED: 'accepted', ON_SITE: 'in_progress', DONE: 'resolved', CLOSED: 'closed', NOT_OURS: 'returned', DECLINED: 'rejected', REOPENED: 'reopened' },
    },
    outputSchema: {
      type: 'object',
      required: ['ref', 'alertNo', 'kind', 'title', 'where', 'urgent'],
      properties: {
        ref: { type: 'string' },
        kind: { enum: ['UNLOCK', 'REPAIR', 'OTHER'] },
        title: { type: 'string', maxLength: 200 },
        urgent: { type: 'boolean' },
        where: { type: 'object', required: ['address', 'region'] },
      },
    },
  },

  translate(alert, ctx): OutboundRequest {
    const cfg = ctx.platform.config;
    const req: OutboundRequest = {
      method: cfg.method ?? 'POST',
      path: render(cfg.path, scope(alert, ctx), true),
      contentType: cfg.contentType ?? 'application/json',
      body: body(alert, ctx),
    };
    if (cfg.headers) req.headers = { ...cfg.headers };
    return req;
  },

  interpretResponse(res, ctx) {
    const r = ctx.platform.config.response ?? {};
    const parsed = parseJson(res.body);
    const reasonAt = r.reasonPath ? getPath(parsed, r.reasonPath) : undefined;
    const generic = isObject(parsed) ? (parsed.message ?? parsed.error ?? parsed.msg) : undefined;
    const reason = idString(reasonAt) ?? (typeof generic === 'string' ? generic : undefined);
    const transport = statusInterpretation(res, reason, ctx.now);
    if (transport) return transport;
    if (r.errorPath) {
      const err = getPath(parsed, r.errorPath);
      if (err !== undefined && err !== null && err !== false && err !== 0 && err !== '') {
        return { outcome: 'reject', reason: reason ?? text(err) };
      }
    }
    if (!r.ticketIdPath) return { outcome: 'delivered' };
    const id = idString(getPath(parsed, r.ticketIdPath));
    return id ? { outcome: 'delivered', remoteTicketId: id } : unreadable2xx(res, `a ticket id at "${r.ticketIdPath}"`);
  },

  parseCallback(input, ctx): StatusEvent[] {
    const c = ctx.platform.config.callback;
    if (!c) throw new Error(`${ID}: platform ${ctx.platform.id} has no callback mapping (options.callback)`);
    const parsed = parseJson(input.body);
    if (parsed === undefined) throw new Error(`${ID}: callback body is not JSON`);
    const root = c.itemsPath ? getPath(parsed, c.itemsPath) : parsed;
    const items = Array.isArray(root) ? root : [root];
    return items.map((o) => {
      if (!isObject(o)) throw new Error(`${ID}: callback item is not an object`);
      const raw = idString(getPath(o, c.statePath));
      if (!raw) throw new Error(`${ID}: no state at "${c.statePath}"`);
      const state = Object.prototype.hasOwnProperty.call(c.stateMap, raw) ? c.stateMap[raw] : undefined;
      if (!state) throw new Error(`${ID}: state "${raw}" is not in options.callback.stateMap`);
      const ticket = c.ticketIdPath ? idString(getPath(o, c.ticketIdPath)) : undefined;
      const delivery = c.deliveryIdPath ? idString(getPath(o, c.deliveryIdPath)) : undefined;
      if (!ticket && !delivery) throw new Error(`${ID}: callback names neither a ticket id nor a delivery id`);
      const at = normalizeTime(c.atPath ? getPath(o, c.atPath) : undefined, ctx.now);
      const ev: StatusEvent = { eventId: (c.eventIdPath && idString(getPath(o, c.eventIdPath))) || `${ticket ?? delivery}:${raw}:${at}`, state, at };
      if (delivery) ev.deliveryId = delivery;
      if (ticket) ev.remoteTicketId = ticket;
      const note = c.notePath ? idString(getPath(o, c.notePath)) : undefined;
      if (note) ev.note = note;
      const handler = c.handlerPath ? idString(getPath(o, c.handlerPath)) : undefined;
      if (handler) ev.handler = handler;
      return ev;
    });
  },

  fixtures: [
    { name: 'noodle-shop-dispute', alert: sampleAlerts.noodleShop },
    { name: 'minimal', alert: sampleAlerts.minimal },
    { name: 'confidential-urgent-leak', alert: sampleAlerts.confidentialLeak },
    { name: 'envelope-without-mapping', alert: sampleAlerts.minimal, config: { path: '/alerts/{{$delivery.id}}', method: 'PUT' } },
  ],

  samples: {
    accepted: { response: json(201, { id: 'WH-000001', status: 'received' }), remoteTicketId: 'WH-000001' },
    validationError: json(400, { error: { message: 'kind must be one of UNLOCK, REPAIR, OTHER' } }),
    businessError: json(200, { error: { message: 'no locksmith on duty in this district' } }),
    callbacks: [
      { input: { headers: {}, body: JSON.stringify({ eventId: 'e1', jobId: 'WH-000001', ref: 'dlv_test_0001', state: 'ASSIGNED', at: '2026-11-29T02:20:00Z' }) }, states: ['accepted'] },
      {
        input: {
          headers: {},
          body: JSON.stringify([
            { eventId: 'e2', jobId: 'WH-000001', state: 'ON_SITE', at: '2026-11-29T02:40:00Z' },
            { eventId: 'e3', jobId: 'WH-000001', state: 'DONE', at: '2026-11-29T03:00:00Z', note: 'door opened, ID checked' },
          ]),
        },
        states: ['in_progress', 'resolved'],
      },
      { input: { headers: {}, body: JSON.stringify({ jobId: 'WH-2', state: 'NOT_OURS', at: '2026-11-29T03:00:00Z' }) }, states: ['returned'] },
    ],
  },
});
