import type { Redis } from 'ioredis';
import type { Alert } from '../../adapters/sdk.js';
import type { AlertRecord, DeliveryRecord } from './record-types.js';
import type { RouteDecision } from '../routing/route.js';
import { deriveAlertState, type AlertState } from '../lifecycle/states.js';
import type { Keys } from './keys.js';
import { spread } from './fanout.js';
import { pendingDeliveries } from './ingest-log.js';

export type { AlertRecord, DeliveryRecord } from './record-types.js';

/** Hash fields of a new delivery. */
export function deliveryHash(d: DeliveryRecord): Record<string, string> {
  const h: Record<string, string> = {};
  for (const [k, v] of Object.entries(d)) {
    if (v === undefined || k === 'retrying') continue;
    h[k] = typeof v === 'string' ? v : JSON.stringify(v);
  }
  return h;
}

const NUMERIC = new Set(['attempts', 'retryFrom']);
const JSONISH = new Set(['overdue']);

export function parseDelivery(h: Record<string, string>): DeliveryRecord | undefined {
  if (!h || !h.id) return undefined;
  const d: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(h)) {
    d[k] = NUMERIC.has(k) ? Number(v) : JSONISH.has(k) ? JSON.parse(v) : v;
  }
  if ((d.state === 'queued' || d.state === 'sending') && d.nextAttemptAt) d.retrying = true;
  return d as unknown as DeliveryRecord;
}

export interface AlertView {
  id: string;
  status: AlertState;
  receivedAt: string;
  sourceId: string;
  route: RouteDecision;
  alert: Alert;
  deliveries: DeliveryRecord[];
  /** Feedback to 110 and escalations about this alert. */
  notices?: DeliveryRecord[];
  repeatOf?: string;
  repeatMatch?: AlertRecord['repeatMatch'];
  links: Record<string, string>;
}

export async function getAlertRecord(redis: Redis, k: Keys, id: string): Promise<AlertRecord | undefined> {
  const raw = await redis.get(k.alert(id));
  return raw ? (JSON.parse(raw) as AlertRecord) : undefined;
}

/**
 * Deliveries by id, in that order, missing ones left out. A delivery of an alert the dispatcher
 * has not materialised yet (src/ingest/dispatcher.ts) is shown as it will be written, `queued`:
 * a read right after the 202 sees what the 202 said. `records`: alert records the caller holds.
 */
export async function getDeliveries(redis: Redis, k: Keys, ids: string[], records?: AlertRecord[]): Promise<DeliveryRecord[]> {
  if (!ids.length) return [];
  const found = await readDeliveries(redis, k, ids);
  const missing = ids.filter((_, i) => !found[i]);
  if (missing.length) {
    const pending = await pendingDeliveries(redis, k, missing, records);
    // Not pending (any more): materialised meanwhile, or really missing.
    const again = missing.filter((id) => !pending.has(id));
    const reread = again.length ? await readDeliveries(redis, k, again) : [];
    ids.forEach((id, i) => {
      if (!found[i]) found[i] = pending.get(id) ?? reread[again.indexOf(id)];
    });
  }
  return found.filter((d): d is DeliveryRecord => !!d);
}

async function readDeliveries(redis: Redis, k: Keys, ids: string[]): Promise<(DeliveryRecord | undefined)[]> {
  // Deliveries of many alerts are in many slots: not one pipeline (src/store/fanout.ts).
  const p = spread(redis);
  for (const id of ids) p.hgetall(k.delivery(id));
  const res = await p.exec();
  return res.map(([err, h]) => {
    if (err) throw err;
    return parseDelivery(h as Record<string, string>);
  });
}

export function alertView(rec: AlertRecord, all: DeliveryRecord[]): AlertView {
  const deliveries = all.filter((d) => (d.kind ?? 'primary') === 'primary');
  const notices = all.filter((d) => (d.kind ?? 'primary') !== 'primary');
  return {
    id: rec.id,
    status: deriveAlertState(deliveries.map((d) => d.state)),
    ...(rec.repeatOf ? { repeatOf: rec.repeatOf } : {}),
    ...(rec.repeatMatch ? { repeatMatch: rec.repeatMatch } : {}),
    ...(notices.length ? { notices } : {}),
    receivedAt: rec.receivedAt,
    sourceId: rec.sourceId,
    route: rec.route,
    alert: rec.alert,
    deliveries,
    links: { self: `/v1/alerts/${rec.id}` },
  };
}

/** Deliveries at ingest plus those created later (re-routes, feedback, escalations). */
export async function allDeliveryIds(redis: Redis, k: Keys, rec: AlertRecord): Promise<string[]> {
  const later = await redis.lrange(k.alertDeliveries(rec.id), 0, -1);
  return later.length ? [...rec.deliveryIds, ...later] : rec.deliveryIds;
}

export async function getAlertView(redis: Redis, k: Keys, id: string): Promise<AlertView | undefined> {
  const rec = await getAlertRecord(redis, k, id);
  if (!rec) return undefined;
  return alertView(rec, await getDeliveries(redis, k, await allDeliveryIds(redis, k, rec), [rec]));
}
