/**
 * The stored shapes of an alert and a delivery, in a module of their own so that the store's
 * readers (records.ts) and the ingest log that materialises them (ingest-log.ts) can both use them
 * without importing each other.
 */
import type { Alert } from '../../adapters/sdk.js';
import type { RouteDecision } from '../routing/route.js';
import type { DeliveryState } from '../lifecycle/states.js';

/** The stored alert: what 110 sent, validated, and where fenliu decided to send it. */
export interface AlertRecord {
  id: string;
  receivedAt: string;
  sourceId: string;
  idempotencyKey: string;
  /** SHA-256 of the canonical JSON of the alert; same key + same hash = same alert. */
  bodyHash: string;
  keyId?: string;
  alert: Alert;
  route: RouteDecision;
  deliveryIds: string[];
  /** Set when this alert was a repeat call linked to an open case instead of opening a ticket. */
  repeatOf?: string;
  /** Why it was linked: which key matched (src/lifecycle/repeat.ts) and on what. */
  repeatMatch?: { key: 'place+category' | 'phone+family'; on: string; crossSource: boolean };
  /** Versions sent after the first (POST /v1/alerts/:id/update), newest last. */
  version?: number;
  /**
   * Records of an earlier version only: the id of the ingest log entry that materialises this
   * alert. Now in a key of its own (`k.alertLog`; read both with `logEntryOf`).
   */
  log?: string;
}

export interface DeliveryRecord {
  id: string;
  alertId: string;
  platformId: string;
  state: DeliveryState;
  priority: 'normal' | 'urgent';
  createdAt: string;
  updatedAt: string;
  attempts: number;
  remoteTicketId?: string;
  pendingToken?: string;
  lastError?: string;
  nextAttemptAt?: string;
  /**
   * Derived on read, never stored: queued or sending with a next attempt planned, i.e. an
   * earlier attempt failed and the engine will try again (重试中).
   */
  retrying?: boolean;
  /** `attempts` when an operator last retried the dead letter: the retry budget counts from here. */
  retryFrom?: number;
  deliveredAt?: string;
  /** SLA flags (ack, intervene, resolve) set when a deadline passed before the state was reached. */
  overdue?: string[];
  result?: string;
  /** primary (the case itself), feedback (to 110) or escalation (to a supervisor). */
  kind?: 'primary' | 'feedback' | 'escalation';
  ackBy?: string;
  interveneBy?: string;
  resolveBy?: string;
  acceptedAt?: string;
  resolvedAt?: string;
  handler?: string;
  /** For feedback and escalations: the CaseEvent (JSON) they carry. */
  event?: string;
}
