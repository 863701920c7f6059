/**
 * Audit events: every fact fenliu learns or causes, appended to one ordered Redis Stream
 * (`<prefix>:{audit}`, fed by the relay in src/store/audit-relay.ts). The archiver (archiver.ts) moves them into hash-chained segment files.
 * Event types and their `data` are documented in docs/audit.md; the schema stays open.
 */

import { keys } from '../store/keys.js';

export interface AuditActor {
  kind: 'source' | 'platform' | 'operator' | 'system';
  id: string;
  keyId?: string;
}

export interface AuditEvent {
  type: string;
  /** ISO 8601 time the fact happened. */
  at: string;
  alertId?: string;
  deliveryId?: string;
  platformId?: string;
  sourceId?: string;
  actor?: AuditActor;
  reason?: string;
  data?: Record<string, unknown>;
}

/** Documented event types (others are allowed; keep docs/audit.md in step). */
export const AUDIT_EVENT_TYPES = [
  'alert.received',
  'alert.refused',
  'alert.routed',
  'alert.repeat',
  'alert.updated',
  'delivery.translated',
  'delivery.attempt',
  'delivery.state',
  'delivery.transition-refused',
  'sla.expired',
  'sla.escalated',
  'operator.action',
  'replay.started',
  'replay.delivery',
  'replay.finished',
  'audit.malformed',
] as const;

/** The stream entry field that holds the event JSON (an event written whole). */
export const AUDIT_FIELD = 'e';
/**
 * An event sealed by its producer (src/audit/format.ts `sealForStream`): this field holds the
 * event with each body replaced by its placeholder, and one `b:<path>` field per body holds the
 * body's JSON text. docs/audit.md, "Stream entries".
 */
export const AUDIT_SEALED_FIELD = 's';
export const AUDIT_BODY_FIELD_PREFIX = 'b:';

// The stream, its lock, head anchor and relay cursor share one hash tag: the archiver trims the
// stream and moves its anchor in one MULTI, and the relay appends and moves its cursor in one script.
export function auditStreamKey(prefix: string): string {
  return `${prefix}:{audit}`;
}

/** Redis key of the archiver's single-writer lock. */
export function auditLockKey(prefix: string): string {
  return `${prefix}:{audit}:lock`;
}

/** Redis key where the archiver records the last archived {seq, hash, streamId} (a tail anchor). */
export function auditHeadKey(prefix: string): string {
  return `${prefix}:{audit}:head`;
}

/** Redis hash: bucket → id of the last event the relay moved from that bucket's stream (src/store/audit-relay.ts). */
export function auditRelayCursorKey(prefix: string): string {
  return `${prefix}:{audit}:relayed`;
}


/**
 * Queues an XADD onto a pipeline or MULTI, so the audit write is atomic with the change it records.
 * In a MULTI with an alert's or delivery's keys, pass its key-layout `bucket` (src/store/keys.ts):
 * the event goes to that bucket's stream (the same slot), and the caller relays it after exec
 * (src/store/audit-relay.ts).
 */
export function addAudit(multi: { xadd(...args: any[]): unknown }, prefix: string, ev: AuditEvent, bucket?: number): void {
  if (!ev || typeof ev.type !== 'string' || ev.type === '') throw new TypeError('audit event needs a type');
  if (typeof ev.at !== 'string' || Number.isNaN(Date.parse(ev.at))) throw new TypeError('audit event needs an ISO `at`');
  multi.xadd(bucket === undefined ? auditStreamKey(prefix) : keys(prefix).audit(bucket), '*', AUDIT_FIELD, JSON.stringify(ev));
}

/** Convenience for code that has no MULTI at hand: one XADD, returns the stream id. */
export async function appendAudit(
  redis: { xadd(...args: any[]): Promise<string | null> },
  prefix: string,
  ev: AuditEvent,
): Promise<string> {
  let pending: Promise<string | null> | undefined;
  addAudit({ xadd: (...args: any[]) => (pending = redis.xadd(...args)) }, prefix, ev);
  return (await pending) ?? '';
}
