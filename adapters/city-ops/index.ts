/**
 * City operations platform (城运平台): a generic English case JSON. Many city-ops vendors accept
 * this shape directly or with a thin facade, so it is also the template for new platforms.
 */
import {
  defineAdapter,
  lookupCategory,
  parseJson,
  statusInterpretation,
  type Alert,
  type OutboundRequest,
  type ReportedState,
  type StatusEvent,
  type TranslateContext,
} from '../sdk.js';
import { alertText, callbackObjects, idString, isObject, normalizeTime, requireTicket, sampleAlerts, unreadable2xx } from '../common.js';

export interface CityOpsConfig {
  /** Our category (exact or `prefix.*`) → the platform's category; passed through when unmapped. */
  categories?: Record<string, string>;
  /** Platform priorities for our normal/urgent. */
  priorities?: { normal?: string; urgent?: string };
}

const ID = 'city-ops';

const STATES: Record<string, ReportedState> = {
  acknowledged: 'accepted',
  in_progress: 'in_progress',
  resolved: 'resolved',
  closed: 'closed',
  returned: 'returned',
  rejected: 'rejected',
  reopened: 'reopened',
  cancelled: 'cancelled',
};

const configSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'city-ops options',
  type: 'object',
  additionalProperties: false,
  properties: {
    categories: {
      type: 'object',
      propertyNames: { pattern: '^([a-z0-9-]+(\\.[a-z0-9-]+)*(\\.\\*)?|\\*)$' },
      additionalProperties: { type: 'string', minLength: 1 },
    },
    priorities: {
      type: 'object',
      additionalProperties: false,
      properties: { normal: { type: 'string', minLength: 1 }, urgent: { type: 'string', minLength: 1 } },
    },
  },
};

const outputSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'city-ops case',
  type: 'object',
  additionalProperties: false,
  required: ['externalId', 'title', 'description', 'category', 'location', 'reportedAt', 'priority', 'reference'],
  properties: {
    externalId: { type: 'string', minLength: 1 },
    title: { type: 'string', minLength: 1 },
    description: { type: 'string', minLength: 1 },
    category: { type: 'string', minLength: 1 },
    location: {
      type: 'object',
      additionalProperties: false,
      required: ['address', 'regionCode'],
      properties: {
        address: { type: 'string', minLength: 1 },
        regionCode: { type: 'string' },
        gridCode: { type: 'string' },
        lat: { type: 'number' },
        lon: { type: 'number' },
        crs: { enum: ['WGS84', 'GCJ02'] },
      },
    },
    reportedAt: { type: 'string', format: 'date-time' },
    dueAt: { type: 'string', format: 'date-time' },
    priority: { type: 'string', minLength: 1 },
    contact: {
      type: 'object',
      additionalProperties: false,
      minProperties: 1,
      properties: { name: { type: 'string' }, phone: { type: 'string' } },
    },
    reference: {
      type: 'object',
      additionalProperties: false,
      required: ['system', 'alertId'],
      properties: { system: { type: 'string' }, alertId: { type: 'string' }, policeUnit: { type: 'string' } },
    },
    attachments: {
      type: 'array',
      items: { type: 'object', required: ['url', 'mediaType'], properties: { url: { type: 'string' }, mediaType: { type: 'string' }, sha256: { type: 'string' } } },
    },
  },
};

function caseBody(alert: Alert, ctx: TranslateContext<CityOpsConfig>): Record<string, unknown> {
  const cfg = ctx.platform.config;
  const loc = alert.location;
  const location: Record<string, unknown> = { address: loc.address, regionCode: loc.regionCode };
  if (loc.gridCode) location.gridCode = loc.gridCode;
  if (loc.lat !== undefined && loc.lon !== undefined) {
    location.lat = loc.lat;
    location.lon = loc.lon;
    location.crs = loc.crs ?? 'WGS84';
  }
  const priority = alert.priority ?? 'normal';
  const out: Record<string, unknown> = {
    externalId: ctx.delivery.id,
    title: alert.summary,
    description: alertText(alert, { assessment: 'Police assessment' }),
    category: lookupCategory(cfg.categories, alert.category) ?? alert.category,
    location,
    reportedAt: alert.reportedAt,
    priority: cfg.priorities?.[priority] ?? priority,
  };
  if (ctx.interveneBy) out.dueAt = ctx.interveneBy;
  // 是否保密: a confidential caller is not a contact for the handling department.
  if (alert.caller && !alert.caller.confidential && (alert.caller.name || alert.caller.phone)) {
    const contact: Record<string, string> = {};
    if (alert.caller.name) contact.name = alert.caller.name;
    if (alert.caller.phone) contact.phone = alert.caller.phone;
    out.contact = contact;
  }
  const reference: Record<string, string> = { system: alert.source.system, alertId: alert.source.alertId };
  if (alert.police?.unit) reference.policeUnit = alert.police.unit;
  out.reference = reference;
  if (alert.attachments?.length) out.attachments = alert.attachments.map((a) => ({ ...a }));
  return out;
}

function casePath(ctx: TranslateContext<CityOpsConfig>, suffix = ''): string {
  return `/cases/${encodeURIComponent(requireTicket(ctx, ID, suffix || 'update'))}${suffix ? `/${suffix}` : ''}`;
}

const json = (status: number, body: unknown) => ({ status, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

export default defineAdapter<CityOpsConfig>({
  id: ID,
  version: '1.0.0',
  description: 'Generic city operations platform (城运平台) case JSON',
  configSchema,
  outputSchema,
  exampleConfig: {
    categories: { 'utility.*': 'public-utilities', 'nuisance.*': 'environment', 'assist.*': 'public-assistance' },
    priorities: { normal: 'P3', urgent: 'P1' },
  },

  translate(alert, ctx): OutboundRequest {
    return { method: 'POST', path: '/cases', contentType: 'application/json', body: caseBody(alert, ctx) };
  },

  interpretResponse(res, ctx) {
    const body = parseJson(res.body);
    const errors = isObject(body) && Array.isArray(body.errors) ? body.errors.filter(isObject) : undefined;
    const reason = errors?.length
      ? errors.map((e) => [idString(e.field), idString(e.message)].filter(Boolean).join(': ')).join('; ')
      : undefined;
    const transport = statusInterpretation(res, reason, ctx.now);
    if (transport) return transport;
    if (errors?.length) return { outcome: 'reject', reason: reason || 'errors in a 2xx answer' };
    const id = isObject(body) ? idString(body.caseId) : undefined;
    return id ? { outcome: 'delivered', remoteTicketId: id } : unreadable2xx(res, 'caseId');
  },

  translateCancel(alert, ctx, reason) {
    return { method: 'POST', path: casePath(ctx, 'cancel'), contentType: 'application/json', body: { externalId: ctx.delivery.id, reason, at: ctx.now } };
  },

  translateUpdate(alert, ctx) {
    return { method: 'PATCH', path: casePath(ctx), contentType: 'application/json', body: { ...caseBody(alert, ctx), updatedAt: ctx.now } };
  },

  translateUrge(alert, ctx, repeat) {
    return {
      method: 'POST',
      path: casePath(ctx, 'comments'),
      contentType: 'application/json',
      body: {
        externalId: ctx.delivery.id,
        type: 'reminder',
        at: ctx.now,
        text: `Repeat call ${repeat.alertId} at ${repeat.reportedAt}: ${repeat.summary}`,
        repeat,
      },
    };
  },

  parseCallback(input, ctx): StatusEvent[] {
    return callbackObjects(input, ID).map((o) => {
      const status = idString(o.status)?.toLowerCase();
      const ticket = idString(o.caseId);
      const external = idString(o.externalId);
      if (!status) throw new Error(`${ID}: callback without status`);
      if (!ticket && !external) throw new Error(`${ID}: callback names neither caseId nor externalId`);
      const state = STATES[status];
      if (!state) throw new Error(`${ID}: unknown status "${status}"`);
      const at = normalizeTime(o.at, ctx.now);
      const ev: StatusEvent = { eventId: idString(o.eventId) ?? `${ticket ?? external}:${status}:${at}`, state, at };
      if (external) ev.deliveryId = external;
      if (ticket) ev.remoteTicketId = ticket;
      const note = idString(o.comment);
      if (note) ev.note = note;
      const handler = idString(o.department);
      if (handler) ev.handler = handler;
      return ev;
    });
  },

  fixtures: [
    { name: 'noodle-shop-dispute', alert: sampleAlerts.noodleShop },
    { name: 'minimal', alert: sampleAlerts.minimal, config: {} },
    { name: 'confidential-urgent-leak', alert: sampleAlerts.confidentialLeak },
  ],

  samples: {
    accepted: { response: json(201, { caseId: 'CASE-000001' }), remoteTicketId: 'CASE-000001' },
    validationError: json(422, { errors: [{ field: 'location.regionCode', message: 'unknown region' }] }),
    businessError: json(200, { errors: [{ field: 'externalId', message: 'duplicate case' }] }),
    callbacks: [
      {
        input: { headers: {}, body: JSON.stringify({ eventId: 'ev-1', caseId: 'CASE-000001', externalId: 'dlv_test_0001', status: 'acknowledged', at: '2026-11-29T02:10:00Z' }) },
        states: ['accepted'],
      },
      {
        input: {
          headers: {},
          body: JSON.stringify([
            { eventId: 'ev-2', caseId: 'CASE-000001', status: 'in_progress', at: '2026-11-29T03:00:00Z' },
            { eventId: 'ev-3', caseId: 'CASE-000001', status: 'resolved', at: '2026-11-29T08:00:00Z', comment: 'Pipe repaired' },
            { eventId: 'ev-4', caseId: 'CASE-000001', status: 'closed', at: '2026-11-30T01:00:00Z' },
          ]),
        },
        states: ['in_progress', 'resolved', 'closed'],
      },
      { input: { headers: {}, body: JSON.stringify({ eventId: 'ev-5', caseId: 'CASE-2', status: 'returned', at: '2026-11-29T03:00:00Z', comment: 'not ours' }) }, states: ['returned'] },
      { input: { headers: {}, body: JSON.stringify({ eventId: 'ev-6', caseId: 'CASE-3', status: 'rejected', at: '2026-11-29T03:00:00Z' }) }, states: ['rejected'] },
      { input: { headers: {}, body: JSON.stringify({ eventId: 'ev-7', caseId: 'CASE-1', status: 'reopened', at: '2026-12-01T03:00:00Z' }) }, states: ['reopened'] },
    ],
  },
});
