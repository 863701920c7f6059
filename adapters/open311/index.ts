/**
 * Open311 GeoReport v2 (open311/open311.github.io, GeoReport_v2/index.md): POST a form-encoded
 * service request to /requests.json; the answer is a service_request_id (realtime services) or
 * a token (batch services) to be resolved later through /tokens/{token}.json. Open311 has no
 * push callbacks in the spec, so status comes back by polling GET /requests.json.
 */
import {
  defineAdapter,
  lookupCategory,
  parseJson,
  statusInterpretation,
  truncate,
  type Alert,
  type InboundResponse,
  type OutboundRequest,
  type PollContext,
  type ReportedState,
  type StatusEvent,
  type TranslateContext,
} from '../sdk.js';
import { alertText, idString, isObject, normalizeTime, sampleAlerts } from '../common.js';

export interface Open311Config {
  apiKey: string;
  /** Only for endpoints that serve several jurisdictions. */
  jurisdictionId?: string;
  /** Our category (exact or `prefix.*`) → service_code from GET /services. */
  serviceCodes?: Record<string, string>;
  defaultServiceCode: string;
  /** How many service_request_ids one GET /requests.json asks for. */
  pollBatchSize?: number;
}

const ID = 'open311';
/** GeoReport v2: description "is free form text limited to 4,000 characters". */
export const DESCRIPTION_MAX = 4000;

const STATES: Record<string, ReportedState> = { open: 'accepted', closed: 'resolved' };

const configSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'open311 options',
  type: 'object',
  additionalProperties: false,
  required: ['apiKey', 'defaultServiceCode'],
  properties: {
    apiKey: { type: 'string', minLength: 1 },
    jurisdictionId: { type: 'string', minLength: 1 },
    serviceCodes: {
      type: 'object',
      propertyNames: { pattern: '^([a-z0-9-]+(\\.[a-z0-9-]+)*(\\.\\*)?|\\*)$' },
      additionalProperties: { type: 'string', minLength: 1 },
    },
    defaultServiceCode: { type: 'string', minLength: 1 },
    pollBatchSize: { type: 'integer', minimum: 1, maximum: 1000 },
  },
};

const field = { type: 'string' };

const outputSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'Open311 GeoReport v2 POST Service Request (form fields)',
  type: 'object',
  additionalProperties: false,
  required: ['api_key', 'service_code', 'description'],
  properties: {
    api_key: { type: 'string', minLength: 1 },
    jurisdiction_id: field,
    service_code: { type: 'string', minLength: 1 },
    lat: { type: 'string', pattern: '^-?\\d+(\\.\\d+)?$' },
    long: { type: 'string', pattern: '^-?\\d+(\\.\\d+)?$' },
    address_string: { type: 'string', minLength: 1 },
    first_name: field,
    last_name: field,
    phone: field,
    description: { type: 'string', minLength: 1, maxLength: DESCRIPTION_MAX },
    media_url: field,
  },
  // "A full location parameter must be submitted": lat & long together, or address_string.
  anyOf: [{ required: ['lat', 'long'] }, { required: ['address_string'] }],
  dependentRequired: { lat: ['long'], long: ['lat'] },
};

/** Western names split at the last space; CJK names without spaces put the first character as family name. */
export function splitName(name: string): { first_name?: string; last_name?: string } {
  const n = name.trim();
  if (!n) return {};
  const space = n.lastIndexOf(' ');
  if (space > 0) return { first_name: n.slice(0, space).trim(), last_name: n.slice(space + 1) };
  const chars = Array.from(n);
  if (chars.length > 1 && /\p{Script=Han}/u.test(chars[0])) return { last_name: chars[0], first_name: chars.slice(1).join('') };
  return { first_name: n };
}

function form(alert: Alert, ctx: TranslateContext<Open311Config>): Record<string, string> {
  const cfg = ctx.platform.config;
  const out: Record<string, string> = { api_key: cfg.apiKey };
  if (cfg.jurisdictionId) out.jurisdiction_id = cfg.jurisdictionId;
  out.service_code = lookupCategory(cfg.serviceCodes, alert.category) ?? cfg.defaultServiceCode;
  const loc = alert.location;
  // GeoReport lat/long are WGS84; GCJ-02 (China's obfuscated datum) is off by hundreds of metres,
  // and converting it is approximate, so such alerts are located by address instead.
  if (loc.lat !== undefined && loc.lon !== undefined && (loc.crs ?? 'WGS84') === 'WGS84') {
    out.lat = String(loc.lat);
    out.long = String(loc.lon);
  } else {
    out.address_string = loc.address;
  }
  const caller = alert.caller;
  if (caller && !caller.confidential) {
    if (caller.name) Object.assign(out, splitName(caller.name));
    if (caller.phone) out.phone = caller.phone;
  }
  out.description = truncate(alertText(alert, { assessment: 'Police assessment' }), DESCRIPTION_MAX);
  if (alert.attachments?.length) out.media_url = alert.attachments[0].url;
  return out;
}

function errorsReason(body: unknown): string | undefined {
  if (!Array.isArray(body)) return undefined;
  const errs = body.filter((e) => isObject(e) && (e.description !== undefined || e.code !== undefined)) as Record<string, unknown>[];
  if (!errs.length) return undefined;
  return errs.map((e) => [idString(e.code), idString(e.description)].filter(Boolean).join(': ')).join('; ');
}

function requestEvent(o: Record<string, unknown>, ctx: { now: string; deliveries?: PollContext['deliveries'] }): StatusEvent | undefined {
  const id = idString(o.service_request_id);
  const status = idString(o.status)?.toLowerCase();
  if (!id || !status) return undefined;
  const state = STATES[status];
  if (!state) throw new Error(`${ID}: unknown status "${status}" for service request ${id}`);
  const at = normalizeTime(o.updated_datetime ?? o.requested_datetime, ctx.now);
  const ev: StatusEvent = { eventId: `${id}:${status}:${at}`, state, at, remoteTicketId: id };
  const delivery = ctx.deliveries?.find((d) => d.remoteTicketId === id);
  if (delivery) ev.deliveryId = delivery.id;
  const note = idString(o.status_notes);
  if (note) ev.note = note;
  const handler = idString(o.agency_responsible);
  if (handler) ev.handler = handler;
  return ev;
}

const json = (status: number, body: unknown): InboundResponse => ({
  status,
  headers: { 'content-type': 'application/json; charset=utf-8' },
  body: JSON.stringify(body),
});

export default defineAdapter<Open311Config>({
  id: ID,
  version: '1.0.0',
  description: 'Open311 GeoReport v2 service requests, with token resolution and status polling',
  configSchema,
  outputSchema,
  exampleConfig: {
    apiKey: 'demo-open311-key',
    serviceCodes: { 'utility.water-leak': 'WATER-LEAK', 'nuisance.*': 'NOISE', 'dispute.*': 'MEDIATION', 'consumer.*': 'CONSUMER' },
    defaultServiceCode: 'GENERAL',
  },

  translate(alert, ctx): OutboundRequest {
    return { method: 'POST', path: '/requests.json', contentType: 'application/x-www-form-urlencoded', body: form(alert, ctx) };
  },

  interpretResponse(res, ctx) {
    const body = parseJson(res.body);
    const reason = errorsReason(body);
    const transport = statusInterpretation(res, reason, ctx.now);
    if (transport) return transport;
    const first = Array.isArray(body) ? body.find(isObject) : isObject(body) ? body : undefined;
    const id = first ? idString(first.service_request_id) : undefined;
    if (id) return { outcome: 'delivered', remoteTicketId: id };
    const token = first ? idString(first.token) : undefined;
    if (token) return { outcome: 'delivered', pendingToken: token };
    if (reason) return { outcome: 'reject', reason };
    return { outcome: 'retry', reason: `HTTP ${res.status} without service_request_id or token: ${res.body.slice(0, 80) || '(empty body)'}` };
  },

  poll: {
    requests(ctx) {
      const cfg = ctx.platform.config;
      const base: Record<string, string> = cfg.jurisdictionId ? { jurisdiction_id: cfg.jurisdictionId } : {};
      const ids = ctx.deliveries.map((d) => d.remoteTicketId).filter((x): x is string => !!x);
      const size = cfg.pollBatchSize ?? 50;
      const out: OutboundRequest[] = [];
      for (let i = 0; i < ids.length; i += size) {
        out.push({ method: 'GET', path: '/requests.json', query: { ...base, service_request_id: ids.slice(i, i + size).join(',') } });
      }
      for (const d of ctx.deliveries) {
        if (d.pendingToken && !d.remoteTicketId) {
          out.push({ method: 'GET', path: `/tokens/${encodeURIComponent(d.pendingToken)}.json`, ...(cfg.jurisdictionId ? { query: base } : {}) });
        }
      }
      return out;
    },
    parse(res, ctx) {
      if (res.status < 200 || res.status >= 300) return [];
      const body = parseJson(res.body);
      if (!Array.isArray(body)) throw new Error(`${ID}: poll answer is not a JSON array`);
      const events: StatusEvent[] = [];
      for (const o of body) {
        if (!isObject(o)) continue;
        const ev = requestEvent(o, ctx);
        if (ev) {
          events.push(ev);
          continue;
        }
        // Token answer: the batch service has created the request; learn its id.
        const token = idString(o.token);
        const id = idString(o.service_request_id);
        if (token && id) {
          const delivery = ctx.deliveries.find((d) => d.pendingToken === token);
          const ev2: StatusEvent = { eventId: `token:${token}:${id}`, state: 'delivered', at: ctx.now, remoteTicketId: id };
          if (delivery) ev2.deliveryId = delivery.id;
          events.push(ev2);
        }
      }
      return events;
    },
  },

  parseCallback(input, ctx) {
    const text = input.body.trim();
    const isForm = (input.contentType ?? input.headers['content-type'] ?? '').includes('x-www-form-urlencoded');
    let list: unknown[];
    if (isForm) {
      list = [Object.fromEntries(new URLSearchParams(text))];
    } else {
      const parsed = parseJson(text);
      list = Array.isArray(parsed) ? parsed : [parsed];
    }
    if (!list.length || !list.every(isObject)) throw new Error(`${ID}: callback is not a service request object`);
    return (list as Record<string, unknown>[]).map((o) => {
      const ev = requestEvent(o, ctx);
      if (!ev) throw new Error(`${ID}: callback needs service_request_id and status`);
      return ev;
    });
  },

  fixtures: [
    { name: 'noodle-shop-dispute', alert: sampleAlerts.noodleShop },
    { name: 'minimal', alert: sampleAlerts.minimal },
    { name: 'confidential-urgent-leak', alert: sampleAlerts.confidentialLeak, config: { apiKey: 'k2', jurisdictionId: 'huangshi.gov.cn', defaultServiceCode: 'GENERAL' } },
    {
      name: 'long-description',
      alert: { ...sampleAlerts.minimal, category: 'nuisance.noise', summary: 'Loud music every night', description: 'x'.repeat(5000) },
    },
  ],

  samples: {
    accepted: { response: json(200, [{ service_request_id: 293944, service_notice: 'The City will inspect within 24 hours', account_id: null }]), remoteTicketId: '293944' },
    validationError: json(400, [{ code: 400, description: 'service_code was not provided' }]),
    businessError: json(200, [{ code: 403, description: 'Invalid api_key' }]),
    callbacks: [
      {
        input: {
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ service_request_id: '638344', status: 'closed', status_notes: 'Leak repaired', updated_datetime: '2026-11-29T10:37:38+08:00' }),
        },
        states: ['resolved'],
      },
      {
        input: {
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: 'service_request_id=638349&status=open&status_notes=Crew+assigned&updated_datetime=2026-11-29T03%3A00%3A00Z',
        },
        states: ['accepted'],
      },
    ],
    poll: [
      {
        deliveries: [
          { id: 'dlv_a', remoteTicketId: '638344' },
          { id: 'dlv_b', remoteTicketId: '638349' },
        ],
        response: json(200, [
          { service_request_id: 638344, status: 'closed', status_notes: 'Duplicate request.', requested_datetime: '2010-04-14T06:37:38-08:00', updated_datetime: '2010-04-14T06:37:38-08:00' },
          { service_request_id: 638349, status: 'open', status_notes: null, requested_datetime: '2010-04-19T06:37:38-08:00', updated_datetime: '2010-04-19T06:37:38-08:00' },
        ]),
        states: ['resolved', 'accepted'],
      },
      { deliveries: [{ id: 'dlv_c', pendingToken: '12345' }], response: json(200, [{ service_request_id: 638344, token: 12345 }]), states: ['delivered'] },
    ],
  },
});
