/**
 * Helpers shared by the built-in adapters. Third-party adapters should depend on sdk.ts only;
 * this file may change shape between releases.
 */
import type { Alert, CallbackInput, InboundResponse, TranslateContext } from './sdk.js';
import { parseJson } from './sdk.js';

/** Canonical alerts reused as fixtures by every built-in adapter, so goldens are comparable. */
export const sampleAlerts = {
  /** Full alert with personal data (caller, parties with an id number, police assessment). */
  noodleShop: {
    source: { system: 'hubei-huangshi-110', alertId: 'HS20261129000123', desk: 'desk-07' },
    reportedAt: '2026-11-29T09:12:00+08:00',
    category: 'consumer.refund',
    summary: '米粉店店主与顾客发生消费纠纷，顾客要求退款',
    description: '顾客称米粉中有异物，要求退款并赔偿，店主拒绝。民警到场后双方情绪稳定。',
    location: {
      address: '湖北省黄石市下陆区团城山街道杭州西路88号',
      regionCode: '420204',
      gridCode: '420204001001',
      lat: 30.2006,
      lon: 115.0386,
      crs: 'GCJ02',
    },
    caller: { name: '张三', phone: '13800138000', confidential: false },
    parties: [
      { role: 'merchant', name: '李四', phone: '13900139000' },
      { role: 'customer', name: '张三', phone: '13800138000', idNumber: '42020419900101123X' },
    ],
    police: {
      unit: '团城山派出所',
      officerId: 'PS0421',
      attendedAt: '2026-11-29T09:25:00+08:00',
      sceneStatus: 'controlled',
      assessment: '属消费纠纷，非警务警情，建议分流至市场监管及社区调解',
    },
    priority: 'normal',
    extensions: { callbackWindow: 'workday' },
  } satisfies Alert,
  /** Only the required fields: what an adapter gets after strict data minimisation. */
  minimal: {
    source: { system: 'hubei-huangshi-110', alertId: 'HS20261129000124' },
    reportedAt: '2026-11-29T01:00:00Z',
    category: 'assist.unlock',
    summary: '住户钥匙遗失，无法进门',
    location: { address: '黄石港区胜阳港街道天虹小区3栋', regionCode: '420202003' },
  } satisfies Alert,
  /** Urgent, WGS84 coordinates, a caller who asked to stay anonymous (是否保密). */
  confidentialLeak: {
    source: { system: 'hubei-huangshi-110', alertId: 'HS20261129000125' },
    reportedAt: '2026-11-29T23:59:59.5-05:00',
    category: 'utility.water-leak',
    summary: '楼上漏水严重，水已流入电表箱',
    location: { address: '西塞山区八泉街道', regionCode: '420203002001', lat: 30.2, lon: 115.1 },
    caller: { name: '王五', phone: '+86 138-0013-8001', confidential: true },
    priority: 'urgent',
    attachments: [
      {
        url: 'https://110.example.gov.cn/media/1.jpg',
        mediaType: 'image/jpeg',
        sha256: '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
      },
    ],
  } satisfies Alert,
};

/** Summary, details and the police assessment as one text block, in the receiver's language. */
export function alertText(alert: Alert, labels: { assessment: string } = { assessment: '民警研判' }): string {
  const parts = [alert.summary];
  if (alert.description && alert.description !== alert.summary) parts.push(alert.description);
  // Chinese labels take the full-width colon, English ones the ASCII colon and a space.
  const sep = /^[\x20-\x7e]+$/.test(labels.assessment) ? ': ' : '：';
  if (alert.police?.assessment) parts.push(`${labels.assessment}${sep}${alert.police.assessment}`);
  return parts.join('\n');
}

/** ISO instant as Beijing wall-clock time "YYYY-MM-DD HH:mm:ss", the usual format of Chinese platforms. */
export function beijingTime(iso: string): string {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return iso;
  return new Date(ms + 8 * 3_600_000).toISOString().slice(0, 19).replace('T', ' ');
}

/**
 * Reads a time a platform sent back. Offset-less "YYYY-MM-DD HH:mm:ss" is Beijing time (how
 * Chinese platforms write it); anything unreadable becomes `fallback` rather than failing the event.
 */
export function normalizeTime(value: unknown, fallback: string): string {
  if (typeof value !== 'string' || value.trim() === '') return fallback;
  const v = value.trim();
  const local = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)$/.exec(v);
  const ms = local ? Date.parse(`${local[1]}T${local[2]}+08:00`) : Date.parse(v);
  return Number.isNaN(ms) ? fallback : new Date(ms).toISOString();
}

/** A string or number field as a non-empty string (platforms send ids either way). */
export function idString(value: unknown): string | undefined {
  if (typeof value === 'string' && value.trim() !== '') return value.trim();
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return undefined;
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Parses a callback body as one JSON object or an array of them; throws on anything else. */
export function callbackObjects(input: CallbackInput, adapterId: string): Record<string, unknown>[] {
  const parsed = parseJson(input.body);
  const list = Array.isArray(parsed) ? parsed : [parsed];
  if (parsed === undefined || list.length === 0 || !list.every(isObject)) {
    throw new Error(`${adapterId}: callback body is not a JSON object or array of objects`);
  }
  return list as Record<string, unknown>[];
}

/** The ticket id that follow-up requests (cancel, urge, supplement) address. */
export function requireTicket(ctx: TranslateContext<unknown>, adapterId: string, op: string): string {
  const t = ctx.delivery.remoteTicketId;
  if (!t) throw new Error(`${adapterId}: ${op} needs the platform's ticket id (delivery ${ctx.delivery.id} has none yet)`);
  return t;
}

/** A 2xx answer whose body cannot be read: the platform may or may not have stored it, so resend. */
export function unreadable2xx(res: InboundResponse, what: string) {
  const snippet = res.body.slice(0, 80).replace(/\s+/g, ' ');
  return { outcome: 'retry' as const, reason: `HTTP ${res.status} without ${what}: ${snippet || '(empty body)'}` };
}
