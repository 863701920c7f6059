/**
 * Feedback to the originating 110 system (反馈): one small JSON notice per fact about a diverted
 * case — signed for, returned, resolved, overdue... It travels the engine like any delivery, so
 * it is retried, isolated and audited; this adapter only shapes it.
 */
import { defineAdapter, parseJson, statusInterpretation, type Alert, type OutboundRequest, type TranslateContext } from '../sdk.js';
import { idString, isObject, sampleAlerts } from '../common.js';

export interface Feedback110Config {
  /** Path of the 110 system's feedback endpoint, relative to its URL. Default `/feedback`. */
  path?: string;
}

const ID = 'feedback-110';

const configSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'feedback-110 options',
  type: 'object',
  additionalProperties: false,
  properties: { path: { type: 'string', pattern: '^/', default: '/feedback' } },
};

const outputSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'feedback-110 notice',
  type: 'object',
  required: ['noticeId', 'alertId', 'caseId', 'type', 'platformId', 'at'],
  properties: {
    noticeId: { type: 'string' },
    alertId: { type: 'string', description: '警情编号 in the 110 system' },
    caseId: { type: 'string', description: 'fenliu alert id' },
    type: { enum: ['state', 'overdue', 'repeat'] },
    platformId: { type: 'string' },
    platformName: { type: 'string' },
    state: { type: 'string' },
    remoteTicketId: { type: 'string' },
    note: { type: 'string' },
    sla: { enum: ['ack', 'intervene', 'resolve'] },
    dueAt: { type: 'string' },
    at: { type: 'string' },
    auditCheckpoint: {
      type: 'object',
      description: 'latest signed audit checkpoint: tree size and base64 root (keep it; fenliu audit verify --since proves later logs extend it)',
      properties: { size: { type: 'integer' }, root: { type: 'string' } },
    },
  },
};

function notice(alert: Alert, ctx: TranslateContext<Feedback110Config>) {
  const ev = ctx.event;
  if (!ev) throw new Error('feedback-110 translates case events only (ctx.event is missing)');
  const body: Record<string, unknown> = {
    noticeId: ctx.delivery.id,
    alertId: alert.source.alertId,
    caseId: ctx.alertId,
    type: ev.type,
    platformId: ev.platformId,
    at: ev.at,
  };
  for (const [k, v] of Object.entries({ platformName: ev.platformName, state: ev.state, remoteTicketId: ev.remoteTicketId, note: ev.note, sla: ev.sla, dueAt: ev.dueAt, auditCheckpoint: ev.auditCheckpoint })) {
    if (v !== undefined) body[k] = v;
  }
  return body;
}

export default defineAdapter<Feedback110Config>({
  id: ID,
  version: '1.0.0',
  description: 'Status feedback to the originating 110 system',
  configSchema,
  outputSchema,
  exampleConfig: { path: '/feedback' },

  translate(alert, ctx): OutboundRequest {
    return { method: 'POST', path: ctx.platform.config.path ?? '/feedback', contentType: 'application/json', body: notice(alert, ctx) };
  },

  interpretResponse(res, ctx) {
    const status = statusInterpretation(res);
    if (status) return status;
    // 110 systems answer with an empty 2xx or an acknowledgement id; either is enough.
    const body = parseJson(res.body);
    const ack = isObject(body) ? (idString(body.id) ?? idString(body.ackId)) : undefined;
    if (res.body.trim() && body === undefined) return { outcome: 'retry', reason: 'unreadable 2xx body' };
    return { outcome: 'delivered', remoteTicketId: ack ?? ctx.delivery.id };
  },

  fixtures: [
    {
      name: 'accepted',
      alert: sampleAlerts.noodleShop,
      context: { event: { type: 'state', deliveryId: 'dlv_test_0001', platformId: 'huangshi-12345', state: 'accepted', at: '2026-11-29T02:30:00.000Z', remoteTicketId: 'GD202611290001', note: '下陆区市场监督管理局已签收' } },
    },
    {
      name: 'overdue',
      alert: sampleAlerts.minimal,
      context: { event: { type: 'overdue', deliveryId: 'dlv_test_0001', platformId: 'huangshi-grid', sla: 'intervene', dueAt: '2026-11-29T14:00:00.000Z', at: '2026-11-29T14:00:01.000Z' } },
    },
  ],
  samples: {
    accepted: { response: { status: 200, headers: { 'content-type': 'application/json' }, body: '{"id":"ACK-1"}' }, remoteTicketId: 'ACK-1' },
    validationError: { status: 400, headers: { 'content-type': 'application/json' }, body: '{"error":"unknown alertId"}' },
  },
});
