/**
 * Open311 GeoReport v2 (open311/open311.github.io, GeoReport_v2/index.md): POST a form-encoded
 * service request (`Content-Type: application/x-www-form-urlencoded; charset=utf-8`, as the
 * spec's "Format Support" writes it) to /requests.<format>; the answer is a service_request_id
 * (realtime services) or a token (batch services) resolved later through /tokens/{token}.<format>.
 * XML is the spec's required format and the default; JSON only when the options or the server's
 * Service Discovery document say so. Open311 has no push callbacks in the spec, so status comes
 * back by polling GET /requests.<format>.
 */
import {
  defineAdapter,
  getPath,
  lookupCategory,
  parseJson,
  statusInterpretation,
  truncate,
  type Alert,
  type DiscoveryAnswer,
  type InboundResponse,
  type OutboundRequest,
  type PollContext,
  type ReportedState,
  type StatusEvent,
  type TranslateContext,
} from '../sdk.js';
import { alertText, idString, isObject, normalizeTime, sampleAlerts } from '../common.js';
import { list, parseXml } from '../../src/inbound/xml.js';

/** Where one attribute[CODE] value comes from: a dotted alert path, or a constant/mapped value. */
export type AttributeSource = string | { path?: string; value?: string; map?: Record<string, string>; default?: string };

export interface Open311Config {
  apiKey: string;
  /** Only for endpoints that serve several jurisdictions. */
  jurisdictionId?: string;
  /** Our category (exact or `prefix.*`) → service_code from GET /services. */
  serviceCodes?: Record<string, string>;
  defaultServiceCode: string;
  /** How many service_request_ids one GET /requests asks for. Default 50. */
  pollBatchSize?: number;
  /**
   * Wire format of requests and answers. Default: what the server's Service Discovery document
   * (`discoveryUrl`) offers, read at start; else `xml`, the format every GeoReport v2 server has.
   */
  format?: 'xml' | 'json';
  /** The Service Discovery document (absolute, or relative to the platform url), e.g. `discovery.xml`. */
  discoveryUrl?: string;
  /**
   * service_code → attribute code → where its value comes from (`attribute[CODE]=value`, for
   * services whose definition has required attributes). A string is a dotted alert path
   * (`location.regionCode`); `{value}` a constant; `{path, map, default}` a mapped field. An
   * array value is sent as `attribute[CODE][]` once per element (multivaluelist).
   */
  attributes?: Record<string, Record<string, AttributeSource>>;
  /**
   * Open311 status (lower-case) → fenliu state. Default `{open: delivered, closed: resolved}`:
   * an open request has been received (受理), not signed for (签收) by a department, so it does
   * not meet the intervention deadline. Servers with richer statuses map them here.
   */
  statusMap?: Record<string, ReportedState>;
}

const ID = 'open311';
/** GeoReport v2: description "is free form text limited to 4,000 characters". */
export const DESCRIPTION_MAX = 4000;
/** The spec's "POST Service Request" content type, charset included. */
export const FORM_CONTENT_TYPE = 'application/x-www-form-urlencoded; charset=utf-8';

export const DEFAULT_STATUS_MAP: Readonly<Record<string, ReportedState>> = { open: 'delivered', closed: 'resolved' };

const REPORTED_STATES = ['delivered', 'accepted', 'in_progress', 'resolved', 'closed', 'returned', 'rejected', 'reopened', 'cancelled'];

const attributeSource = {
  oneOf: [
    { type: 'string', minLength: 1 },
    {
      type: 'object',
      additionalProperties: false,
      minProperties: 1,
      properties: {
        path: { type: 'string', minLength: 1 },
        value: { type: 'string' },
        map: { type: 'object', additionalProperties: { type: 'string' } },
        default: { type: 'string' },
      },
    },
  ],
};

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
    format: { enum: ['xml', 'json'] },
    discoveryUrl: { type: 'string', minLength: 1 },
    attributes: {
      type: 'object',
      additionalProperties: { type: 'object', propertyNames: { pattern: '^[^\\[\\]]+$' }, additionalProperties: attributeSource },
    },
    statusMap: {
      type: 'object',
      propertyNames: { pattern: '^[a-z0-9_ -]+$' },
      additionalProperties: { enum: REPORTED_STATES },
    },
  },
};

const field = { type: 'string' };
const coordinate = { type: 'string', pattern: '^-?\\d+(\\.\\d+)?$' };

/**
 * The spec's POST Service Request arguments, every one of them (test/open311-spec.test.ts checks
 * this list against the spec's tables): nothing else may be sent.
 */
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
    lat: coordinate,
    long: coordinate,
    address_string: { type: 'string', minLength: 1 },
    address_id: field,
    email: field,
    device_id: field,
    account_id: field,
    first_name: field,
    last_name: field,
    phone: field,
    description: { type: 'string', minLength: 1, maxLength: DESCRIPTION_MAX },
    media_url: field,
  },
  patternProperties: {
    '^attribute\\[[^\\[\\]]+\\]$': { type: 'string' },
    '^attribute\\[[^\\[\\]]+\\]\\[\\]$': { type: 'array', items: { type: 'string' }, minItems: 1 },
  },
  // "A full location parameter must be submitted": lat & long together, or address_string, or address_id.
  anyOf: [{ required: ['lat', 'long'] }, { required: ['address_string'] }, { required: ['address_id'] }],
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

function scalar(v: unknown): string | undefined {
  if (typeof v === 'string') return v.trim() === '' ? undefined : v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return undefined;
}

/**
 * A dotted path into the alert where a step through an array applies to every element
 * (`parties.role` → every party's role); a numeric step picks one (`attachments.0.url`).
 */
function pathValue(value: unknown, path: string): unknown {
  const [head, ...rest] = path.split('.');
  if (Array.isArray(value) && !/^\d+$/.test(head)) return value.flatMap((v) => list(pathValue(v, path)));
  const next = getPath(value, head);
  return rest.length ? (next === undefined ? undefined : pathValue(next, rest.join('.'))) : next;
}

/** The value(s) of one attribute for this alert; undefined when the alert has none and there is no default. */
export function attributeValue(alert: Alert, src: AttributeSource): string | string[] | undefined {
  const spec = typeof src === 'string' ? { path: src } : src;
  if (spec.value !== undefined) return spec.value;
  const raw = spec.path ? pathValue(alert, spec.path) : undefined;
  const mapOne = (v: unknown): string | undefined => {
    const s = scalar(v);
    if (s === undefined) return undefined;
    if (!spec.map) return s;
    return Object.prototype.hasOwnProperty.call(spec.map, s) ? spec.map[s] : spec.default;
  };
  if (Array.isArray(raw)) {
    const vals = raw.map(mapOne).filter((x): x is string => x !== undefined);
    return vals.length ? vals : spec.default;
  }
  return mapOne(raw) ?? spec.default;
}

export function formatOf(cfg: Open311Config): 'xml' | 'json' {
  return cfg.format ?? 'xml';
}

function form(alert: Alert, ctx: TranslateContext<Open311Config>): Record<string, string | string[]> {
  const cfg = ctx.platform.config;
  const out: Record<string, string | string[]> = { api_key: cfg.apiKey };
  if (cfg.jurisdictionId) out.jurisdiction_id = cfg.jurisdictionId;
  const serviceCode = lookupCategory(cfg.serviceCodes, alert.category) ?? cfg.defaultServiceCode;
  out.service_code = serviceCode;
  const loc = alert.location;
  // GeoReport lat/long are WGS84; GCJ-02 (China's obfuscated datum) is off by hundreds of metres,
  // and converting it is approximate, so such coordinates are not sent. The address always is:
  // the spec's own example sends both, and a person reading the request needs the words.
  if (loc.lat !== undefined && loc.lon !== undefined && (loc.crs ?? 'WGS84') === 'WGS84') {
    out.lat = String(loc.lat);
    out.long = String(loc.lon);
  }
  if (loc.address?.trim()) out.address_string = loc.address.trim();
  const caller = alert.caller;
  if (caller && !caller.confidential) {
    if (caller.name) Object.assign(out, splitName(caller.name));
    if (caller.phone) out.phone = caller.phone;
  }
  out.description = truncate(alertText(alert, { assessment: 'Police assessment' }), DESCRIPTION_MAX);
  if (alert.attachments?.length) out.media_url = alert.attachments[0].url;
  for (const [code, src] of Object.entries(cfg.attributes?.[serviceCode] ?? {})) {
    const v = attributeValue(alert, src);
    if (v === undefined) continue;
    if (Array.isArray(v)) out[`attribute[${code}][]`] = v;
    else out[`attribute[${code}]`] = v;
  }
  return out;
}

/** XML answers of GeoReport v2, by root element, and the child that repeats. */
const XML_LISTS: Record<string, string> = { service_requests: 'request', errors: 'error', services: 'service' };
const XML_ARRAYS = new Set([
  'service_requests.request',
  'errors.error',
  'services.service',
  'discovery.endpoints.endpoint',
  'discovery.endpoints.endpoint.formats.format',
  'service_definition.attributes.attribute',
  'service_definition.attributes.attribute.values.value',
]);

/**
 * Reads a GeoReport v2 answer in either format into the JSON shape (the spec's JSON is a mapping
 * of its XML, "the Spark convention"): lists become arrays of flat objects. XML goes through
 * fenliu's hardened XML reader (no DTDs, bounded depth); unreadable text gives undefined.
 */
export function readBody(body: string): unknown {
  const text = body.trim();
  if (!text.startsWith('<')) return parseJson(text);
  let doc: Record<string, unknown>;
  try {
    doc = parseXml(text, { maxDepth: 16, arrays: XML_ARRAYS }, 'Open311 answer');
  } catch {
    return undefined;
  }
  for (const [root, child] of Object.entries(XML_LISTS)) {
    if (root in doc) {
      const el = doc[root];
      return isObject(el) ? list(el[child]).map(flatten) : [];
    }
  }
  if ('discovery' in doc) return doc.discovery;
  // A single <request> (GET service request) or <error>, not wrapped in its list.
  const only = Object.values(doc).find(isObject);
  return only ? [flatten(only)] : undefined;
}

/** XML leaves as strings, empty elements as null (JSON's `"account_id":null`). */
function flatten(v: unknown): Record<string, unknown> {
  if (!isObject(v)) return {};
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    if (k.startsWith('@_')) continue;
    out[k] = x === '' ? null : isObject(x) && '#text' in x ? x['#text'] : x;
  }
  return out;
}

/** GeoReport errors, `[{code, description}]` in JSON or `<errors><error>` in XML, as one line. */
function errorsReason(body: unknown): string | undefined {
  if (!Array.isArray(body)) return undefined;
  const errs = body.filter((e) => isObject(e) && (e.description !== undefined || e.code !== undefined) && e.service_request_id === undefined && e.token === undefined) as Record<string, unknown>[];
  if (!errs.length) return undefined;
  return errs.map((e) => [idString(e.code), idString(e.description)].filter(Boolean).join(': ')).join('; ');
}

function statusMap(cfg: Open311Config | undefined): Record<string, ReportedState> {
  return { ...DEFAULT_STATUS_MAP, ...(cfg?.statusMap ?? {}) };
}

function requestEvent(o: Record<string, unknown>, ctx: { now: string; platform: { config: Open311Config }; deliveries?: PollContext['deliveries'] }): StatusEvent | undefined {
  const id = idString(o.service_request_id);
  const status = idString(o.status)?.toLowerCase();
  if (!id || !status) return undefined;
  const state = statusMap(ctx.platform.config)[status];
  if (!state) throw new Error(`${ID}: unknown status "${status}" for service request ${id} (map it in options.statusMap)`);
  // The platform's time; the lifecycle refuses one that cannot be true (before the delivery, in the future).
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

const xml = (status: number, body: string): InboundResponse => ({
  status,
  headers: { 'content-type': 'text/xml; charset=utf-8' },
  body: `<?xml version="1.0" encoding="utf-8"?>\n${body}`,
});

const ACCEPT = { xml: 'text/xml', json: 'application/json' } as const;

/** A GET in the configured format, with jurisdiction_id when set. */
function get(cfg: Open311Config, resource: string, query: Record<string, string> = {}): OutboundRequest {
  const q = cfg.jurisdictionId ? { jurisdiction_id: cfg.jurisdictionId, ...query } : query;
  const fmt = formatOf(cfg);
  return { method: 'GET', path: `/${resource}.${fmt}`, headers: { accept: ACCEPT[fmt] }, ...(Object.keys(q).length ? { query: q } : {}) };
}

/** service codes this config can send: the default, the category table's, and those with attribute mappings. */
function configuredCodes(cfg: Open311Config): string[] {
  return [...new Set([cfg.defaultServiceCode, ...Object.values(cfg.serviceCodes ?? {}), ...Object.keys(cfg.attributes ?? {})])];
}

/** Formats a Service Discovery document offers for the GeoReport v2 endpoint at `url` (or any v2 endpoint). */
function discoveryFormats(doc: unknown, url: string): string[] | undefined {
  if (!isObject(doc)) return undefined;
  const eps = (isObject(doc.endpoints) ? list(doc.endpoints.endpoint) : list(doc.endpoints)).filter(isObject);
  const v2 = eps.filter((e) => /GeoReport_v2/i.test(String(e.specification ?? '')));
  const norm = (u: unknown) => String(u ?? '').replace(/\/+$/, '');
  const ep = v2.find((e) => norm(e.url) === norm(url)) ?? v2[0];
  if (!ep) return undefined;
  const f = ep.formats;
  return (isObject(f) ? list(f.format) : list(f)).map((x) => String(x).trim().toLowerCase());
}

/** `/services/{code}.<format>`: a GET Service Definition; the code, else undefined. */
function definitionCode(path: string): string | undefined {
  const m = /^\/services\/([^/]+)\.(?:xml|json)$/.exec(path);
  return m ? decodeURIComponent(m[1]) : undefined;
}

/** The services of a GET services answer, by code. */
function listedServices(answers: DiscoveryAnswer[]): Map<string, Record<string, unknown>> | undefined {
  const a = answers.find((x) => x.request.path.startsWith('/services.') && x.response && x.response.status >= 200 && x.response.status < 300);
  const body = a?.response ? readBody(a.response.body) : undefined;
  if (!Array.isArray(body)) return undefined;
  return new Map(body.filter(isObject).map((s) => [idString(s.service_code) ?? '', s]));
}

const isTrue = (v: unknown) => String(v ?? '').trim().toLowerCase() === 'true';

/**
 * What a GET Service Definition answer asks of the client: the attributes with `variable` and
 * `required` true, which a POST without them gets refused for. XML (`<service_definition>`) or
 * JSON (`{service_code, attributes: [...]}`); undefined when it is neither.
 */
export function requiredAttributes(body: unknown): { code: string; description?: string }[] | undefined {
  const def = Array.isArray(body) ? body.find(isObject) : body;
  if (!isObject(def)) return undefined;
  const attrs = isObject(def.attributes) ? list(def.attributes.attribute) : list(def.attributes);
  return attrs
    .filter(isObject)
    .filter((a) => isTrue(a.variable) && isTrue(a.required) && idString(a.code))
    .map((a) => ({ code: idString(a.code)!, ...(idString(a.description) ? { description: idString(a.description) } : {}) }));
}

function readDiscovery(answers: DiscoveryAnswer[], ctx: { platform: { config: Open311Config; url: string } }) {
  const cfg = ctx.platform.config;
  const warnings: string[] = [];
  const info: string[] = [];
  let defaults: Partial<Open311Config> | undefined;
  for (const a of answers) {
    const what = `GET ${a.request.path}`;
    if (!a.response) {
      warnings.push(`${what}: no answer (${a.error ?? 'unknown error'}); the service list was not checked`);
      continue;
    }
    if (a.response.status < 200 || a.response.status >= 300) {
      warnings.push(`${what}: HTTP ${a.response.status}${errorsReason(readBody(a.response.body)) ? ` (${errorsReason(readBody(a.response.body))})` : ''}`);
      continue;
    }
    const body = readBody(a.response.body);
    const defined = definitionCode(a.request.path);
    if (defined !== undefined) {
      const required = requiredAttributes(body);
      if (!required) {
        warnings.push(`${what}: the answer is not a GeoReport service definition; its required attributes were not checked`);
        continue;
      }
      const mapped = cfg.attributes?.[defined] ?? {};
      const missing = required.filter((r) => !(r.code in mapped));
      info.push(`${what}: ${required.length} required attribute(s)${required.length ? ` (${required.map((r) => r.code).join(', ')})` : ''}`);
      for (const r of missing) {
        warnings.push(
          `service_code "${defined}" requires attribute "${r.code}"${r.description ? ` (${r.description})` : ''}, which options.attributes["${defined}"] does not map: requests with it will be refused`,
        );
      }
      continue;
    }
    if (a.request.path.startsWith('/services.')) {
      if (!Array.isArray(body)) {
        warnings.push(`${what}: the answer is not a GeoReport service list`);
        continue;
      }
      const services = body.filter(isObject);
      const listed = new Map(services.map((s) => [idString(s.service_code) ?? '', s]));
      info.push(`${what}: ${listed.size} services (${[...listed.keys()].slice(0, 10).join(', ')}${listed.size > 10 ? ', ...' : ''})`);
      for (const code of configuredCodes(cfg)) {
        const s = listed.get(code);
        if (!s) {
          warnings.push(`service_code "${code}" is configured but the platform does not list it (GET services): requests with it will be refused`);
          continue;
        }
        // metadata=true: the service definition (GET services/{code}, a follow-up) says which attributes are required.
        if (String(s.type ?? '').toLowerCase() === 'blackbox') {
          warnings.push(`service_code "${code}" is a blackbox service: it returns no service_request_id, so fenliu cannot follow its status`);
        }
      }
    } else {
      const formats = discoveryFormats(body, ctx.platform.url);
      if (!formats) {
        warnings.push(`${what}: no GeoReport v2 endpoint in the Service Discovery document`);
        continue;
      }
      info.push(`${what}: formats ${formats.join(', ')}`);
      if (!cfg.format) defaults = { format: formats.includes('application/json') ? 'json' : 'xml' };
    }
  }
  return { warnings, info, ...(defaults ? { defaults } : {}) };
}

export default defineAdapter<Open311Config>({
  id: ID,
  version: '2.0.0',
  description: 'Open311 GeoReport v2 service requests (XML or JSON), with attributes, token resolution, status polling and a service-list check',
  configSchema,
  outputSchema,
  exampleConfig: {
    apiKey: 'demo-open311-key',
    serviceCodes: { 'utility.water-leak': 'WATER-LEAK', 'nuisance.*': 'NOISE', 'dispute.*': 'MEDIATION', 'consumer.*': 'CONSUMER' },
    defaultServiceCode: 'GENERAL',
  },

  translate(alert, ctx): OutboundRequest {
    const fmt = formatOf(ctx.platform.config);
    return { method: 'POST', path: `/requests.${fmt}`, headers: { accept: ACCEPT[fmt] }, contentType: FORM_CONTENT_TYPE, body: form(alert, ctx) };
  },

  interpretResponse(res, ctx) {
    const body = readBody(res.body);
    const reason = errorsReason(body);
    const transport = statusInterpretation(res, reason, ctx.now);
    if (transport) return transport;
    const first = Array.isArray(body) ? body.find(isObject) : isObject(body) ? body : undefined;
    const id = first ? idString(first.service_request_id) : undefined;
    if (id) return { outcome: 'delivered', remoteTicketId: id };
    const token = first ? idString(first.token) : undefined;
    if (token) return { outcome: 'delivered', pendingToken: token };
    if (reason) return { outcome: 'reject', reason };
    // A blackbox service answers the spec's request shape without id or token: the request was
    // taken, there is just nothing to follow. Sending it again would file it twice.
    if (first && ('service_notice' in first || 'account_id' in first)) return { outcome: 'delivered' };
    return { outcome: 'retry', reason: `HTTP ${res.status} without service_request_id or token: ${res.body.slice(0, 80) || '(empty body)'}` };
  },

  poll: {
    requests(ctx) {
      const cfg = ctx.platform.config;
      const ids = ctx.deliveries.map((d) => d.remoteTicketId).filter((x): x is string => !!x);
      const size = cfg.pollBatchSize ?? 50;
      const out: OutboundRequest[] = [];
      for (let i = 0; i < ids.length; i += size) out.push(get(cfg, 'requests', { service_request_id: ids.slice(i, i + size).join(',') }));
      for (const d of ctx.deliveries) {
        if (d.pendingToken && !d.remoteTicketId) out.push(get(cfg, `tokens/${encodeURIComponent(d.pendingToken)}`));
      }
      return out;
    },
    parse(res, ctx) {
      if (res.status < 200 || res.status >= 300) return [];
      const body = readBody(res.body);
      if (!Array.isArray(body)) throw new Error(`${ID}: poll answer is not a GeoReport list (JSON array or XML service_requests)`);
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

  discovery: {
    requests(ctx) {
      const cfg = ctx.platform.config;
      const out: OutboundRequest[] = [];
      if (cfg.discoveryUrl) out.push({ method: 'GET', path: cfg.discoveryUrl, headers: { accept: cfg.discoveryUrl.endsWith('.json') ? 'application/json' : 'text/xml' } });
      // XML is the format every server has; JSON only when configured.
      out.push(get(cfg, 'services'));
      return out;
    },
    followUp(answers, ctx) {
      const cfg = ctx.platform.config;
      const listed = listedServices(answers);
      if (!listed) return [];
      return configuredCodes(cfg)
        .filter((code) => isTrue(listed.get(code)?.metadata))
        .map((code) => get(cfg, `services/${encodeURIComponent(code)}`));
    },
    read: readDiscovery,
  },

  parseCallback(input, ctx) {
    const text = input.body.trim();
    const isForm = (input.contentType ?? input.headers['content-type'] ?? '').includes('x-www-form-urlencoded');
    let items: unknown[];
    if (isForm) {
      items = [Object.fromEntries(new URLSearchParams(text))];
    } else {
      const parsed = readBody(text);
      items = Array.isArray(parsed) ? parsed : [parsed];
    }
    if (!items.length || !items.every(isObject)) throw new Error(`${ID}: callback is not a service request object`);
    return (items as Record<string, unknown>[]).map((o) => {
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
      name: 'attributes-json',
      alert: sampleAlerts.confidentialLeak,
      config: {
        apiKey: 'k3',
        format: 'json',
        defaultServiceCode: 'GENERAL',
        serviceCodes: { 'utility.*': 'WATER-LEAK' },
        attributes: {
          'WATER-LEAK': {
            REGION: 'location.regionCode',
            URGENT: { path: 'priority', map: { urgent: 'Y', normal: 'N' }, default: 'N' },
            SOURCE: { value: '110' },
            MEDIA: 'attachments.0.mediaType',
          },
        },
      },
    },
    {
      name: 'long-description',
      alert: { ...sampleAlerts.minimal, category: 'nuisance.noise', summary: 'Loud music every night', description: 'x'.repeat(5000) },
    },
  ],

  samples: {
    // The spec's own XML example answer (GeoReport_v2 "POST Service Request").
    accepted: {
      response: xml(
        200,
        '<service_requests>\n  <request>\n    <service_request_id>293944</service_request_id>\n    <service_notice>\n      The City will inspect within 24 hours\n    </service_notice>\n    <account_id/>\n  </request>\n</service_requests>',
      ),
      remoteTicketId: '293944',
    },
    validationError: xml(400, '<errors>\n  <error>\n    <code>400</code>\n    <description>service_code was not provided</description>\n  </error>\n</errors>'),
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
        // open is received (受理), not signed for (签收).
        states: ['delivered'],
      },
      {
        input: {
          headers: { 'content-type': 'text/xml; charset=utf-8' },
          body: '<?xml version="1.0" encoding="utf-8"?><service_requests><request><service_request_id>638350</service_request_id><status>closed</status><status_notes>已修复</status_notes><updated_datetime>2026-11-29T05:00:00Z</updated_datetime></request></service_requests>',
        },
        states: ['resolved'],
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
        states: ['resolved', 'delivered'],
      },
      {
        deliveries: [{ id: 'dlv_d', remoteTicketId: '638344' }],
        response: xml(
          200,
          '<service_requests>\n  <request>\n    <service_request_id>638344</service_request_id>\n    <status>closed</status>\n    <status_notes>Duplicate request.</status_notes>\n    <service_name>Sidewalk and Curb Issues</service_name>\n    <service_code>006</service_code>\n    <description></description>\n    <agency_responsible></agency_responsible>\n    <requested_datetime>2010-04-14T06:37:38-08:00</requested_datetime>\n    <updated_datetime>2010-04-14T06:37:38-08:00</updated_datetime>\n    <address>8TH AVE and JUDAH ST</address>\n    <lat>37.762221815</lat>\n    <long>-122.4651145</long>\n  </request>\n</service_requests>',
        ),
        states: ['resolved'],
      },
      { deliveries: [{ id: 'dlv_c', pendingToken: '12345' }], response: json(200, [{ service_request_id: 638344, token: 12345 }]), states: ['delivered'] },
      {
        deliveries: [{ id: 'dlv_e', pendingToken: '12346' }],
        response: xml(200, '<service_requests><request><service_request_id>638345</service_request_id><token>12346</token></request></service_requests>'),
        states: ['delivered'],
      },
    ],
  },
});
