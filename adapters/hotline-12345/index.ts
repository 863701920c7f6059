/**
 * 12345 government service hotline: the alert becomes a 工单 (work order, GB/T 33358-2016 terms)
 * with Chinese field names. The platform answers HTTP 200 with its own `code`; a non-zero code
 * is a business refusal even though the transport succeeded.
 */
import {
  defineAdapter,
  lookupCategory,
  parseJson,
  statusInterpretation,
  type Alert,
  type Interpretation,
  type OutboundRequest,
  type ReportedState,
  type StatusEvent,
  type TranslateContext,
} from '../sdk.js';
import {
  alertText,
  beijingTime,
  callbackObjects,
  idString,
  isObject,
  normalizeTime,
  requireTicket,
  sampleAlerts,
  unreadable2xx,
} from '../common.js';

export interface Hotline12345Config {
  /** Our category (exact or `prefix.*`) → 诉求类型 code (GB/T 39666-2020 classification). */
  categoryCodes?: Record<string, string>;
  defaultCategoryCode: string;
  /** 转办单位: who transfers the order; the 110 system id when absent. */
  transferUnit?: string;
  /** `iso8601` (default) or `beijing` ("YYYY-MM-DD HH:mm:ss", UTC+8) for time fields. */
  timeFormat?: 'iso8601' | 'beijing';
  /** Business codes inside a 200 answer that mean "busy, try again" rather than a refusal. */
  retryCodes?: number[];
}

const ID = 'hotline-12345';

const STATES: Record<string, ReportedState> = {
  签收: 'accepted',
  受理: 'accepted',
  办理中: 'in_progress',
  办结: 'resolved',
  回访: 'closed',
  归档: 'closed',
  退回: 'returned',
  退单: 'returned',
  不予受理: 'rejected',
  重新办理: 'reopened',
  撤单: 'cancelled',
};

/** Steps of the 12345 workflow with no canonical state (e.g. 派单); acknowledged, not an event. */
const IGNORED_STATES = new Set(['派单', '转办', '督办', '催办', '延期']);

const configSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'hotline-12345 options',
  type: 'object',
  additionalProperties: false,
  required: ['defaultCategoryCode'],
  properties: {
    categoryCodes: {
      type: 'object',
      propertyNames: { pattern: '^([a-z0-9-]+(\\.[a-z0-9-]+)*(\\.\\*)?|\\*)$' },
      additionalProperties: { type: 'string', minLength: 1 },
    },
    defaultCategoryCode: { type: 'string', minLength: 1 },
    transferUnit: { type: 'string', minLength: 1 },
    timeFormat: { enum: ['iso8601', 'beijing'] },
    retryCodes: { type: 'array', items: { type: 'integer' } },
  },
};

const timeField = { type: 'string', minLength: 10 };

const outputSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: '12345 工单',
  type: 'object',
  additionalProperties: false,
  required: ['外部编号', '关联警情号', '受理时间', '是否保密', '诉求类型', '诉求内容', '事发地址', '行政区划', '紧急程度', '转办单位'],
  properties: {
    外部编号: { type: 'string', minLength: 1 },
    关联警情号: { type: 'string', minLength: 1 },
    受理时间: timeField,
    来电人: { type: 'string' },
    联系电话: { type: 'string' },
    是否保密: { enum: ['是', '否'] },
    诉求类型: { type: 'string', minLength: 1 },
    诉求内容: { type: 'string', minLength: 1 },
    事发地址: { type: 'string', minLength: 1 },
    行政区划: { type: 'string', pattern: '^(\\d{6}|\\d{9}|\\d{12})$' },
    经度: { type: 'number' },
    纬度: { type: 'number' },
    坐标系: { enum: ['WGS84', 'GCJ02'] },
    紧急程度: { enum: ['紧急', '一般'] },
    转办单位: { type: 'string', minLength: 1 },
    办理时限: timeField,
    附件: {
      type: 'array',
      items: {
        type: 'object',
        required: ['地址', '类型'],
        properties: { 地址: { type: 'string' }, 类型: { type: 'string' }, 摘要: { type: 'string' } },
      },
    },
  },
  // A confidential caller's identity must never reach the handling department.
  if: { properties: { 是否保密: { const: '是' } } },
  then: { not: { anyOf: [{ required: ['来电人'] }, { required: ['联系电话'] }] } },
};

function time(iso: string, cfg: Hotline12345Config): string {
  return cfg.timeFormat === 'beijing' ? beijingTime(iso) : iso;
}

function workOrder(alert: Alert, ctx: TranslateContext<Hotline12345Config>): Record<string, unknown> {
  const cfg = ctx.platform.config;
  const confidential = alert.caller?.confidential === true;
  const order: Record<string, unknown> = {
    外部编号: ctx.delivery.id,
    关联警情号: alert.source.alertId,
    受理时间: time(ctx.now, cfg),
  };
  if (!confidential && alert.caller?.name) order.来电人 = alert.caller.name;
  if (!confidential && alert.caller?.phone) order.联系电话 = alert.caller.phone;
  order.是否保密 = confidential ? '是' : '否';
  order.诉求类型 = lookupCategory(cfg.categoryCodes, alert.category) ?? cfg.defaultCategoryCode;
  order.诉求内容 = alertText(alert);
  order.事发地址 = alert.location.address;
  order.行政区划 = alert.location.regionCode;
  if (alert.location.lat !== undefined && alert.location.lon !== undefined) {
    order.经度 = alert.location.lon;
    order.纬度 = alert.location.lat;
    order.坐标系 = alert.location.crs ?? 'WGS84';
  }
  order.紧急程度 = alert.priority === 'urgent' ? '紧急' : '一般';
  order.转办单位 = cfg.transferUnit ?? alert.source.system;
  if (ctx.interveneBy) order.办理时限 = time(ctx.interveneBy, cfg);
  if (alert.attachments?.length) {
    order.附件 = alert.attachments.map((a) => ({ 地址: a.url, 类型: a.mediaType, ...(a.sha256 ? { 摘要: a.sha256 } : {}) }));
  }
  return order;
}

function ticketPath(ctx: TranslateContext<Hotline12345Config>, op: string): string {
  return `/api/workorders/${encodeURIComponent(requireTicket(ctx, ID, op))}/${op}`;
}

function interpret(res: { status: number; headers: Record<string, string>; body: string }, cfg: Hotline12345Config, now: string): Interpretation {
  const body = parseJson(res.body);
  const msg = isObject(body) ? idString(body.msg) : undefined;
  const code = isObject(body) && typeof body.code === 'number' ? body.code : undefined;
  const transport = statusInterpretation(res, code !== undefined ? `${code} ${msg ?? ''}`.trim() : msg, now);
  if (transport) return transport;
  if (!isObject(body) || code === undefined) return unreadable2xx(res, 'a 12345 answer');
  if (code !== 0) {
    const reason = `12345 code ${code}: ${msg ?? '(no msg)'}`;
    return (cfg.retryCodes ?? []).includes(code) ? { outcome: 'retry', reason } : { outcome: 'reject', reason };
  }
  const ticket = isObject(body.data) ? idString(body.data['工单编号']) : undefined;
  if (!ticket) return unreadable2xx(res, '工单编号');
  return { outcome: 'delivered', remoteTicketId: ticket };
}

const ok = (body: unknown) => ({ status: 200, headers: { 'content-type': 'application/json; charset=utf-8' }, body: JSON.stringify(body) });

export default defineAdapter<Hotline12345Config>({
  id: ID,
  version: '1.0.0',
  description: '12345 government service hotline work order (工单), Chinese field names',
  configSchema,
  outputSchema,
  exampleConfig: {
    categoryCodes: {
      'dispute.*': '0301',
      'dispute.debt': '0305',
      'labor.wage-arrears': '0702',
      'consumer.*': '0501',
      'assist.unlock': '1201',
      'utility.water-leak': '0903',
      'nuisance.noise': '1105',
    },
    defaultCategoryCode: '9999',
    transferUnit: '黄石市公安局110指挥中心',
  },

  translate(alert, ctx): OutboundRequest {
    return { method: 'POST', path: '/api/workorders', contentType: 'application/json', body: workOrder(alert, ctx) };
  },

  interpretResponse(res, ctx) {
    return interpret(res, ctx.platform.config, ctx.now);
  },

  translateCancel(alert, ctx, reason) {
    return {
      method: 'POST',
      path: ticketPath(ctx, 'cancel'),
      contentType: 'application/json',
      body: { 外部编号: ctx.delivery.id, 关联警情号: alert.source.alertId, 撤单原因: reason, 撤单时间: time(ctx.now, ctx.platform.config) },
    };
  },

  translateUpdate(alert, ctx) {
    const order = workOrder(alert, ctx);
    return {
      method: 'POST',
      path: ticketPath(ctx, 'supplement'),
      contentType: 'application/json',
      body: { ...order, 补充时间: order.受理时间 },
    };
  },

  translateUrge(alert, ctx, repeat) {
    return {
      method: 'POST',
      path: ticketPath(ctx, 'urge'),
      contentType: 'application/json',
      body: {
        外部编号: ctx.delivery.id,
        关联警情号: alert.source.alertId,
        催办时间: time(ctx.now, ctx.platform.config),
        催办原因: '群众重复报警，诉求尚未解决',
        重复警情号: repeat.alertId,
        重复报警时间: repeat.reportedAt,
        重复诉求: repeat.summary,
      },
    };
  },

  parseCallback(input, ctx): StatusEvent[] {
    const events: StatusEvent[] = [];
    for (const o of callbackObjects(input, ID)) {
      const status = idString(o['工单状态']);
      const ticket = idString(o['工单编号']);
      const external = idString(o['外部编号']);
      if (!status) throw new Error(`${ID}: callback without 工单状态`);
      if (!ticket && !external) throw new Error(`${ID}: callback names neither 工单编号 nor 外部编号`);
      if (IGNORED_STATES.has(status)) continue;
      const state = STATES[status];
      if (!state) throw new Error(`${ID}: unknown 工单状态 "${status}"`);
      const at = normalizeTime(o['时间'], ctx.now);
      const ev: StatusEvent = { eventId: idString(o.eventId) ?? `${ticket ?? external}:${status}:${at}`, state, at };
      if (external) ev.deliveryId = external;
      if (ticket) ev.remoteTicketId = ticket;
      const note = idString(o['处理意见']);
      if (note) ev.note = note;
      const handler = idString(o['承办单位']);
      if (handler) ev.handler = handler;
      const satisfaction = idString(o['满意度']);
      if (satisfaction) ev.satisfaction = satisfaction;
      events.push(ev);
    }
    return events;
  },

  fixtures: [
    { name: 'noodle-shop-dispute', alert: sampleAlerts.noodleShop },
    { name: 'minimal', alert: sampleAlerts.minimal },
    { name: 'confidential-urgent-leak', alert: sampleAlerts.confidentialLeak, config: { defaultCategoryCode: '9999', timeFormat: 'beijing' } },
  ],

  samples: {
    accepted: { response: ok({ code: 0, msg: '接收成功', data: { 工单编号: 'GD202611290001' } }), remoteTicketId: 'GD202611290001' },
    validationError: {
      status: 400,
      headers: { 'content-type': 'application/json; charset=utf-8' },
      body: JSON.stringify({ code: 4001, msg: '行政区划不能为空' }),
    },
    businessError: ok({ code: 2001, msg: '该警情已转办，请勿重复提交' }),
    callbacks: [
      {
        input: {
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            eventId: 'CB0001',
            工单编号: 'GD202611290001',
            外部编号: 'dlv_test_0001',
            工单状态: '签收',
            时间: '2026-11-29 10:05:00',
            承办单位: '下陆区市场监督管理局',
          }),
        },
        states: ['accepted'],
      },
      {
        input: {
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify([
            { eventId: 'CB0002', 工单编号: 'GD202611290001', 工单状态: '办理中', 时间: '2026-11-29T03:00:00Z' },
            { eventId: 'CB0003', 工单编号: 'GD202611290001', 工单状态: '办结', 时间: '2026-11-29 16:30:00', 处理意见: '双方达成调解协议，店主退款' },
            { eventId: 'CB0004', 工单编号: 'GD202611290001', 工单状态: '回访', 时间: '2026-11-30 09:00:00', 满意度: '满意' },
          ]),
        },
        states: ['in_progress', 'resolved', 'closed'],
      },
      {
        input: {
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ 工单编号: 'GD202611290002', 工单状态: '退单', 时间: '2026-11-29 11:00:00', 处理意见: '非本单位职责' }),
        },
        states: ['returned'],
      },
      {
        input: { headers: {}, body: JSON.stringify({ 工单编号: 'GD202611290003', 工单状态: '不予受理', 时间: '2026-11-29 11:00:00' }) },
        states: ['rejected'],
      },
      {
        input: { headers: {}, body: JSON.stringify({ 工单编号: 'GD202611290001', 工单状态: '重新办理', 时间: '2026-12-01 08:00:00' }) },
        states: ['reopened'],
      },
    ],
  },
});
