/**
 * The delivery lifecycle: one explicit table of allowed transitions (docs/lifecycle.md).
 * Everything that changes a delivery's state asks this module first.
 */

export const DELIVERY_STATES = [
  'queued',
  'sending',
  'delivered',
  'accepted',
  'in_progress',
  'resolved',
  'closed',
  'returned',
  'rejected',
  'failed',
  'cancelled',
  'reopened',
] as const;

export type DeliveryState = (typeof DELIVERY_STATES)[number];

/** States after which nothing more is expected from the platform. */
export const FINAL_STATES: ReadonlySet<DeliveryState> = new Set(['closed', 'returned', 'rejected', 'failed', 'cancelled']);

/** States in which the case is considered handled (completion rate, 办结率). */
export const DONE_STATES: ReadonlySet<DeliveryState> = new Set(['resolved', 'closed']);

/** from → the states it may move to. */
export const TRANSITIONS: Readonly<Record<DeliveryState, readonly DeliveryState[]>> = {
  queued: ['sending', 'cancelled', 'failed'],
  // sending → queued: a retryable failure puts the delivery back in line.
  sending: ['queued', 'delivered', 'failed', 'rejected', 'cancelled'],
  delivered: ['accepted', 'in_progress', 'resolved', 'returned', 'rejected', 'cancelled'],
  accepted: ['in_progress', 'resolved', 'returned', 'cancelled'],
  in_progress: ['resolved', 'returned', 'cancelled'],
  resolved: ['closed', 'reopened'],
  closed: ['reopened'],
  reopened: ['accepted', 'in_progress', 'resolved', 'returned', 'cancelled'],
  returned: [],
  rejected: [],
  // failed → queued: an operator retries a dead letter.
  failed: ['queued'],
  cancelled: [],
};

export function canTransition(from: DeliveryState, to: DeliveryState): boolean {
  return TRANSITIONS[from]?.includes(to) ?? false;
}

export function isDeliveryState(s: string): s is DeliveryState {
  return (DELIVERY_STATES as readonly string[]).includes(s);
}

/** Rank along the happy path; used to order out-of-order platform events. */
export const PROGRESS: Readonly<Partial<Record<DeliveryState, number>>> = {
  queued: 0,
  sending: 1,
  delivered: 2,
  accepted: 3,
  in_progress: 4,
  resolved: 5,
  closed: 6,
};

/** An alert's state, derived from its deliveries (never stored). */
export type AlertState = 'queued' | 'delivering' | 'delivered' | 'in_progress' | 'resolved' | 'closed' | 'failed' | 'cancelled' | 'returned';

export function deriveAlertState(states: DeliveryState[]): AlertState {
  if (!states.length) return 'queued';
  const live = states.filter((s) => s !== 'returned' && s !== 'rejected');
  if (!live.length) return 'returned';
  if (live.every((s) => s === 'cancelled')) return 'cancelled';
  const active = live.filter((s) => s !== 'cancelled');
  if (active.every((s) => s === 'closed')) return 'closed';
  if (active.every((s) => s === 'resolved' || s === 'closed')) return 'resolved';
  if (active.some((s) => s === 'failed')) return 'failed';
  if (active.some((s) => s === 'accepted' || s === 'in_progress' || s === 'reopened' || s === 'resolved' || s === 'closed')) return 'in_progress';
  if (active.every((s) => s === 'delivered')) return 'delivered';
  if (active.every((s) => s === 'queued')) return 'queued';
  return 'delivering';
}
