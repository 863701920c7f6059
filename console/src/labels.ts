/**
 * Chinese (and English) names for every enum value the API returns, so the zh-CN console never
 * shows a raw value. `label(kind, value)` falls back to the value itself for something new.
 */
import { getLang } from './i18n.js';

type Table = Record<string, [zh: string, en: string]>;

const TABLES = {
  /** Delivery and alert states (alert states add `delivering`), plus the derived `retrying`. */
  state: {
    queued: ['排队', 'queued'],
    sending: ['发送中', 'sending'],
    delivering: ['推送中', 'delivering'],
    retrying: ['重试中', 'retrying'],
    delivered: ['已送达', 'delivered'],
    accepted: ['已签收', 'accepted'],
    in_progress: ['办理中', 'in progress'],
    resolved: ['已办结', 'resolved'],
    closed: ['已回访归档', 'closed'],
    returned: ['已退回', 'returned'],
    rejected: ['不予受理', 'rejected'],
    failed: ['推送失败', 'failed'],
    cancelled: ['已撤单', 'cancelled'],
    reopened: ['重新办理', 'reopened'],
  },
  circuit: { closed: ['正常', 'closed'], open: ['熔断', 'open'], 'half-open': ['半开（试探中）', 'half-open'] },
  priority: { normal: ['一般', 'normal'], urgent: ['紧急', 'urgent'] },
  sceneStatus: { controlled: ['现场已控制', 'controlled'], ongoing: ['现场处置中', 'ongoing'], resolved: ['现场已化解', 'resolved'] },
  /** Party roles are free text in the alert schema; these are the usual ones. */
  role: {
    caller: ['报警人', 'caller'],
    complainant: ['投诉人', 'complainant'],
    respondent: ['被投诉人', 'respondent'],
    merchant: ['商户', 'merchant'],
    customer: ['顾客', 'customer'],
    consumer: ['消费者', 'consumer'],
    neighbor: ['邻居', 'neighbour'],
    neighbour: ['邻居', 'neighbour'],
    employer: ['用人单位', 'employer'],
    employee: ['劳动者', 'employee'],
    worker: ['务工人员', 'worker'],
    landlord: ['房东', 'landlord'],
    tenant: ['租户', 'tenant'],
    owner: ['业主', 'owner'],
    'property-management': ['物业', 'property management'],
    debtor: ['债务人', 'debtor'],
    creditor: ['债权人', 'creditor'],
    family: ['家属', 'family member'],
    spouse: ['配偶', 'spouse'],
    victim: ['受害人', 'victim'],
    witness: ['证人', 'witness'],
    suspect: ['嫌疑人', 'suspect'],
    other: ['其他', 'other'],
  },
  /** Who changed a delivery's state (history `source`). */
  changeSource: {
    engine: ['推送引擎', 'engine'],
    callback: ['平台回调', 'platform callback'],
    poll: ['轮询', 'poll'],
    timer: ['时限计时器', 'timer'],
    operator: ['值班员', 'operator'],
    source: ['110 系统', '110 system'],
    ingest: ['接警', 'ingest'],
    reroute: ['改派', 'reroute'],
    repeat: ['重复报警', 'repeat call'],
    feedback: ['反馈 110', 'feedback'],
    escalation: ['督办升级', 'escalation'],
  },
  auditType: {
    'alert.received': ['接收警情', 'alert received'],
    'alert.refused': ['拒收警情', 'alert refused'],
    'alert.routed': ['分流', 'routed'],
    'alert.rerouted': ['改派', 'rerouted'],
    'alert.repeat': ['重复报警关联', 'repeat call linked'],
    'alert.updated': ['警情补充', 'alert updated'],
    'delivery.translated': ['报文转换', 'translated'],
    'delivery.attempt': ['推送尝试', 'attempt'],
    'delivery.state': ['状态变更', 'state change'],
    'delivery.transition-refused': ['状态变更被拒', 'transition refused'],
    'delivery.feedback': ['反馈 110', 'feedback to 110'],
    'delivery.escalation': ['督办升级', 'escalation'],
    'sla.expired': ['时限超时', 'deadline passed'],
    'sla.escalated': ['超时升级', 'escalated'],
    'operator.action': ['值班员操作', 'operator action'],
    'replay.started': ['重放开始', 'replay started'],
    'replay.delivery': ['重放推送', 'replayed delivery'],
    'replay.finished': ['重放结束', 'replay finished'],
    'replay.redeliver': ['重新推送', 'redelivered'],
    'audit.malformed': ['审计记录异常', 'malformed audit entry'],
  },
  actorKind: { source: ['110 系统', '110 system'], platform: ['平台', 'platform'], operator: ['值班员', 'operator'], system: ['系统', 'system'] },
  outcome: { delivered: ['成功', 'delivered'], retry: ['失败，将重试', 'retry'], reject: ['失败，不再重试', 'rejected'] },
  errorClass: {
    connection: ['连接失败', 'connection'],
    dns: ['域名解析失败', 'DNS'],
    timeout: ['超时', 'timeout'],
    tls: ['TLS 错误', 'TLS'],
    'http-5xx': ['平台服务器错误（5xx）', 'HTTP 5xx'],
    'http-retryable': ['平台暂不可用或限流', 'HTTP retryable'],
    'http-4xx': ['请求被拒（4xx）', 'HTTP 4xx'],
    unreadable: ['应答无法识别', 'unreadable answer'],
    'business-reject': ['平台业务拒收', 'refused by the platform'],
    'output-schema': ['报文不符合格式（配置问题）', 'output schema'],
    translate: ['报文转换失败', 'translate'],
    'circuit-open': ['熔断中', 'circuit open'],
    rejected: ['被拒', 'rejected'],
    engine: ['引擎错误', 'engine'],
    unknown: ['未知错误', 'unknown'],
  },
  /** Follow-up kinds in the attempt log. */
  attemptKind: { cancel: ['撤单', 'cancel'], update: ['补充', 'update'], urge: ['催办', 'urge'], redeliver: ['重新推送', 'redeliver'] },
  sla: { ack: ['送达', 'deliver'], intervene: ['12小时介入（签收）', 'intervene (12 h)'], resolve: ['办结', 'resolve'] },
  scope: { 'alerts:write': ['报警写入', 'alerts:write'], 'alerts:read': ['警情查看', 'alerts:read'], 'audit:read': ['审计', 'audit:read'], 'events:write': ['平台回调', 'events:write'], admin: ['管理员', 'admin'] },
  deliveryKind: { primary: ['分流推送', 'primary'], feedback: ['反馈 110', 'feedback'], escalation: ['督办升级', 'escalation'] },
} satisfies Record<string, Table>;

export type LabelKind = keyof typeof TABLES;

export function label(kind: LabelKind, value: string | undefined | null): string {
  if (value === undefined || value === null || value === '') return '—';
  const row = (TABLES[kind] as Table)[value];
  return row ? row[getLang() === 'zh' ? 0 : 1] : value;
}

/** A message without its leading `errorClass: ` (the class is shown by name beside it). */
export function bareMessage(text: string | undefined | null, errorClass?: string): string {
  if (!text) return '';
  const m = /^([a-z0-9-]+): (.*)$/s.exec(text);
  return m && m[1] in TABLES.errorClass && (errorClass === undefined || m[1] === errorClass) ? m[2] : text;
}

/** `http-5xx: HTTP 503 …` → its known error class (if it names one) and the rest, the platform's own words. */
export function splitError(text: string | undefined | null, errorClass?: string): { errorClass?: string; rest: string } {
  if (!text) return { errorClass, rest: '' };
  const cls = errorClass ?? /^([a-z0-9-]+): /.exec(text)?.[1];
  if (cls === undefined || !(cls in TABLES.errorClass)) return { rest: text };
  return { errorClass: cls, rest: bareMessage(text, cls) };
}
