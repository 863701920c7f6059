/**
 * District comprehensive-governance grid platform (综治网格化平台): the alert becomes a 矛盾纠纷
 * event (GB/T 31000-2015 data items) addressed to a grid cell, so the grid worker of that cell
 * gets it. The platform answers 201 with its event id; errors carry the offending field.
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

export interface GridGovernanceConfig {
  /** 网格编码 used when the alert carries none (usually the district centre's own cell). */
  defaultGridCode: string;
  /** Our category (exact or `prefix.*`) → 事件类型 / 纠纷类型 code of the platform. */
  eventTypes?: Record<string, string>;
  defaultEventType: string;
  /** 上报单位 when the alert names no police unit. */
  reportingUnit?: string;
  /** Party roles as the platform spells them, e.g. {"merchant": "商户"}. */
  roleNames?: Record<string, string>;
}

const ID = 'grid-governance';

const STATES: Record<string, ReportedState> = {
  ACCEPTED: 'accepted',
  HANDLING: 'in_progress',
  FINISHED: 'resolved',
  ARCHIVED: 'closed',
  RETURNED: 'returned',
  REJECTED: 'rejected',
  REOPENED: 'reopened',
  CANCELLED: 'cancelled',
};

const configSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'grid-governance options',
  type: 'object',
  additionalProperties: false,
  required: ['defaultGridCode', 'defaultEventType'],
  properties: {
    defaultGridCode: { type: 'string', minLength: 1, maxLength: 64 },
    eventTypes: {
      type: 'object',
      propertyNames: { pattern: '^([a-z0-9-]+(\\.[a-z0-9-]+)*(\\.\\*)?|\\*)$' },
      additionalProperties: { type: 'string', minLength: 1 },
    },
    defaultEventType: { type: 'string', minLength: 1 },
    reportingUnit: { type: 'string', minLength: 1 },
    roleNames: { type: 'object', additionalProperties: { type: 'string' } },
  },
};

const outputSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: '综治网格 矛盾纠纷事件',
  type: 'object',
  additionalProperties: false,
  required: ['外部编号', '关联警情号', '网格编码', '事件类型', '事件标题', '事件描述', '事发地点', '行政区划', '上报时间', '上报单位', '当事人', '紧急程度'],
  properties: {
    外部编号: { type: 'string', minLength: 1 },
    关联警情号: { type: 'string', minLength: 1 },
    网格编码: { type: 'string', minLength: 1 },
    事件类型: { type: 'string', minLength: 1 },
    事件标题: { type: 'string', minLength: 1 },
    事件描述: { type: 'string', minLength: 1 },
    事发地点: { type: 'string', minLength: 1 },
    行政区划: { type: 'string', pattern: '^(\\d{6}|\\d{9}|\\d{12})$' },
    经度: { type: 'number' },
    纬度: { type: 'number' },
    坐标系: { enum: ['WGS84', 'GCJ02'] },
    上报时间: { type: 'string', format: 'date-time' },
    上报单位: { type: 'string', minLength: 1 },
    现场状态: { enum: ['已控制', '处置中', '已化解'] },
    紧急程度: { enum: ['紧急', '一般'] },
    办理时限: { type: 'string', format: 'date-time' },
    当事人: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['角色'],
        properties: { 角色: { type: 'string' }, 姓名: { type: 'string' }, 联系电话: { type: 'string' } },
      },
    },
  },
};

const SCENE: Record<string, string> = { controlled: '已控制', ongoing: '处置中', resolved: '已化解' };

function event(alert: Alert, ctx: TranslateContext<GridGovernanceConfig>): Record<string, unknown> {
  const cfg = ctx.platform.config;
  const out: Record<string, unknown> = {
    外部编号: ctx.delivery.id,
    关联警情号: alert.source.alertId,
    网格编码: alert.location.gridCode ?? cfg.defaultGridCode,
    事件类型: lookupCategory(cfg.eventTypes, alert.category) ?? cfg.defaultEventType,
    事件标题: alert.summary,
    事件描述: alertText(alert),
    事发地点: alert.location.address,
    行政区划: alert.location.regionCode,
  };
  if (alert.location.lat !== undefined && alert.location.lon !== undefined) {
    out.经度 = alert.location.lon;
    out.纬度 = alert.location.lat;
    out.坐标系 = alert.location.crs ?? 'WGS84';
  }
  out.上报时间 = alert.reportedAt;
  out.上报单位 = alert.police?.unit ?? cfg.reportingUnit ?? alert.source.system;
  if (alert.police?.sceneStatus) out.现场状态 = SCENE[alert.police.sceneStatus];
  out.紧急程度 = alert.priority === 'urgent' ? '紧急' : '一般';
  if (ctx.interveneBy) out.办理时限 = ctx.interveneBy;
  // Identity fields stay out unless minimisation let them through; id numbers never go to the grid.
  // A confidential caller who is also a party keeps the role but loses name and phone.
  const caller = alert.caller?.confidential ? alert.caller : undefined;
  out.当事人 = (alert.parties ?? []).map((p) => {
    const party: Record<string, string> = { 角色: cfg.roleNames?.[p.role] ?? p.role };
    const isCaller = !!caller && ((!!p.phone && p.phone === caller.phone) || (!!p.name && p.name === caller.name));
    if (p.name && !isCaller) party.姓名 = p.name;
    if (p.phone && !isCaller) party.联系电话 = p.phone;
    return party;
  });
  return out;
}

function eventPath(ctx: TranslateContext<GridGovernanceConfig>, op: string): string {
  return `/api/events/${encodeURIComponent(requireTicket(ctx, ID, op))}/${op}`;
}

const json = (status: number, body: unknown) => ({ status, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

export default defineAdapter<GridGovernanceConfig>({
  id: ID,
  version: '1.0.0',
  description: '综治网格化平台 矛盾纠纷 event, addressed by 网格编码',
  configSchema,
  outputSchema,
  exampleConfig: {
    defaultGridCode: '420204000000',
    eventTypes: { 'dispute.*': 'MDJF-99', 'dispute.neighbor': 'MDJF-01', 'dispute.family': 'MDJF-02', 'consumer.*': 'MDJF-05', 'labor.wage-arrears': 'MDJF-07' },
    defaultEventType: 'MDJF-99',
    roleNames: { merchant: '商户', customer: '顾客', neighbor: '邻居' },
  },

  translate(alert, ctx): OutboundRequest {
    return { method: 'POST', path: '/api/events', contentType: 'application/json', body: event(alert, ctx) };
  },

  interpretResponse(res, ctx) {
    const body = parseJson(res.body);
    const err = isObject(body) && isObject(body.error) ? body.error : undefined;
    const reason = err
      ? [idString(err.code), idString(err.field) && `field ${idString(err.field)}`, idString(err.message)].filter(Boolean).join(': ')
      : undefined;
    const transport = statusInterpretation(res, reason, ctx.now);
    if (transport) return transport;
    if (err) return { outcome: 'reject', reason: reason || 'error object in a 2xx answer' };
    const id = isObject(body) ? idString(body.eventId) : undefined;
    return id ? { outcome: 'delivered', remoteTicketId: id } : unreadable2xx(res, 'eventId');
  },

  translateCancel(alert, ctx, reason) {
    return {
      method: 'POST',
      path: eventPath(ctx, 'revoke'),
      contentType: 'application/json',
      body: { 外部编号: ctx.delivery.id, 关联警情号: alert.source.alertId, 撤销原因: reason, 撤销时间: ctx.now },
    };
  },

  translateUrge(alert, ctx, repeat) {
    return {
      method: 'POST',
      path: eventPath(ctx, 'urge'),
      contentType: 'application/json',
      body: {
        外部编号: ctx.delivery.id,
        关联警情号: alert.source.alertId,
        督办时间: ctx.now,
        督办原因: '当事人重复报警，纠纷尚未化解',
        重复警情号: repeat.alertId,
        重复报警时间: repeat.reportedAt,
        重复诉求: repeat.summary,
      },
    };
  },

  parseCallback(input, ctx): StatusEvent[] {
    return callbackObjects(input, ID).map((o) => {
      const status = idString(o.status)?.toUpperCase();
      const ticket = idString(o.eventId);
      if (!status) throw new Error(`${ID}: callback without status`);
      if (!ticket) throw new Error(`${ID}: callback without eventId`);
      const state = STATES[status];
      if (!state) throw new Error(`${ID}: unknown status "${status}"`);
      const at = normalizeTime(o.time, ctx.now);
      const ev: StatusEvent = { eventId: idString(o.id) ?? `${ticket}:${status}:${at}`, state, at, remoteTicketId: ticket };
      const external = idString(o.externalId);
      if (external) ev.deliveryId = external;
      const note = idString(o.remark);
      if (note) ev.note = note;
      const handler = idString(o.handler);
      if (handler) ev.handler = handler;
      return ev;
    });
  },

  fixtures: [
    { name: 'noodle-shop-dispute', alert: sampleAlerts.noodleShop },
    { name: 'minimal', alert: sampleAlerts.minimal },
    { name: 'confidential-urgent-leak', alert: sampleAlerts.confidentialLeak },
    {
      name: 'confidential-caller-is-a-party',
      alert: {
        ...sampleAlerts.noodleShop,
        caller: { name: '张三', phone: '13800138000', confidential: true },
        location: { address: '湖北省黄石市下陆区团城山街道杭州西路88号', regionCode: '420204' },
      },
    },
  ],

  samples: {
    accepted: { response: json(201, { eventId: 'GE-20261129-0001' }), remoteTicketId: 'GE-20261129-0001' },
    validationError: json(400, { error: { code: 'INVALID_GRID', message: '网格编码不存在', field: '网格编码' } }),
    businessError: json(200, { error: { code: 'DUPLICATE', message: '事件已存在' } }),
    callbacks: [
      {
        input: { headers: {}, body: JSON.stringify({ id: 'cb-1', eventId: 'GE-20261129-0001', status: 'ACCEPTED', time: '2026-11-29T02:30:00Z', remark: '网格员已签收' }) },
        states: ['accepted'],
      },
      {
        input: {
          headers: {},
          body: JSON.stringify([
            { id: 'cb-2', eventId: 'GE-20261129-0001', status: 'HANDLING', time: '2026-11-29 11:00:00' },
            { id: 'cb-3', eventId: 'GE-20261129-0001', status: 'FINISHED', time: '2026-11-29 15:00:00', remark: '双方签订调解协议' },
            { id: 'cb-4', eventId: 'GE-20261129-0001', status: 'ARCHIVED', time: '2026-11-30 09:00:00' },
          ]),
        },
        states: ['in_progress', 'resolved', 'closed'],
      },
      { input: { headers: {}, body: JSON.stringify({ id: 'cb-5', eventId: 'GE-2', status: 'RETURNED', time: '2026-11-29T03:00:00Z', remark: '不属于本网格' }) }, states: ['returned'] },
      { input: { headers: {}, body: JSON.stringify({ id: 'cb-6', eventId: 'GE-3', status: 'REJECTED', time: '2026-11-29T03:00:00Z' }) }, states: ['rejected'] },
      { input: { headers: {}, body: JSON.stringify({ id: 'cb-7', eventId: 'GE-1', status: 'REOPENED', time: '2026-12-01T03:00:00Z' }) }, states: ['reopened'] },
    ],
  },
});
