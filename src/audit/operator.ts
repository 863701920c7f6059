/**
 * `operator.action` and `replay.*` events: what a person (through a key) did, on the log under
 * the names docs/audit.md lists. Pure builders; callers append them (in the MULTI of the change
 * where they have one).
 */
import type { AuditEvent } from './events.js';

/** Who acted, as auth.ts knows them. */
export interface Acting {
  kind: 'source' | 'platform' | 'operator';
  keyId: string;
  ownerId?: string;
}

/** What an action was done to. */
export interface ActionTarget {
  alertId?: string;
  deliveryId?: string;
  platformId?: string;
}

/**
 * An `operator.action` event: `data.action` names it (`retry`, `dead-letters.retry`, `redeliver`,
 * `cancel`, `update`…), `data.target` says what it was done to, `actor.keyId` who, `reason` why.
 */
export function operatorActionEvent(p: Acting, action: string, target: ActionTarget, reason?: string, data: Record<string, unknown> = {}): AuditEvent {
  const kind = target.deliveryId ? 'delivery' : target.alertId ? 'alert' : 'platform';
  const id = target.deliveryId ?? target.alertId ?? target.platformId ?? '';
  return {
    type: 'operator.action',
    at: new Date().toISOString(),
    ...target,
    actor: { kind: p.kind, id: p.ownerId ?? p.keyId, keyId: p.keyId },
    ...(reason !== undefined ? { reason } : {}),
    data: { action, target: { kind, id }, ...data },
  };
}

export type ReplayMode = 'diff' | 'redeliver';

/** Selection of a replay run, as given on the command line. */
export interface ReplaySelectionDoc {
  from?: string;
  to?: string;
  source?: string;
  platform?: string;
}

export function replayEvent(
  type: 'replay.started' | 'replay.delivery' | 'replay.finished',
  f: { replayId: string; mode: ReplayMode; actor?: AuditEvent['actor']; reason?: string; alertId?: string; deliveryId?: string; platformId?: string; data?: Record<string, unknown> },
): AuditEvent {
  return {
    type,
    at: new Date().toISOString(),
    ...(f.alertId ? { alertId: f.alertId } : {}),
    ...(f.deliveryId ? { deliveryId: f.deliveryId } : {}),
    ...(f.platformId ? { platformId: f.platformId } : {}),
    ...(f.actor ? { actor: f.actor } : {}),
    ...(f.reason !== undefined ? { reason: f.reason } : {}),
    data: { replayId: f.replayId, mode: f.mode, ...(f.deliveryId ? { originalDeliveryId: f.deliveryId } : {}), ...f.data },
  };
}
