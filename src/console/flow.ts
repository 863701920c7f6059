import type { FastifyInstance } from 'fastify';
import { ProblemError } from '../errors.js';
import { hasScope } from '../plugins/app/auth.js';
import { DELIVERY_STATES } from '../lifecycle/states.js';
import { deliveryId } from '../store/ids.js';
import { pendingDeliveries } from '../store/ingest-log.js';
import { each, spread, zcountAll, zMembersByScore } from '../store/fanout.js';
import type { Runtime } from '../runtime.js';

/** At most this many of the window's alerts are inspected for "deliveries by state". */
export const FLOW_STATE_SAMPLE = 5_000;
/** Latency percentiles use at most this many of each platform's latest deliveries in the window. */
export const LATENCY_SAMPLE = 200;

export interface FlowPlatform {
  platformId: string;
  name: string;
  /** Deliveries that reached `delivered` in each minute of the window. */
  out: number[];
  delivered: number;
  /** Queue → delivered, over the latest deliveries in the window (ms). */
  latency: { p50: number | null; p95: number | null; samples: number };
  /** Duration of the delivering HTTP attempt (platform response time, ms). */
  attempt: { p50: number | null; p95: number | null; samples: number };
}

export interface Flow {
  from: string;
  to: string;
  stepMs: number;
  /** Start of each minute bucket (epoch ms). */
  buckets: number[];
  /** Alerts received in each minute. */
  in: number[];
  received: number;
  platforms: FlowPlatform[];
  /** Deliveries of the window's alerts, by current state. */
  states: Record<string, number>;
  /** Of the queued and sending deliveries in `states`, those waiting for a retry after a failed attempt. */
  retrying: number;
  /** True when the window had more alerts than were inspected for `states`. */
  statesSampled: boolean;
}

/** Nearest-rank percentile of sorted numbers. */
export function percentile(sorted: number[], p: number): number | null {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/**
 * Per-minute counts in (ZCOUNT on the alerts index) and out per platform (ZCOUNT on each
 * platform's delivered index), deliveries by state, and delivery latency per platform.
 */
export async function computeFlow(rt: Runtime, minutes: number, now = Date.now()): Promise<Flow> {
  const k = rt.keys;
  const step = 60_000;
  const end = Math.floor(now / step) * step + step; // the current (partial) minute is the last bucket
  const start = end - minutes * step;
  const buckets = Array.from({ length: minutes }, (_, i) => start + i * step);
  // Indexes are split over the key-layout buckets: each read is a fan-out (src/store/fanout.ts).
  const alerts = each(k.bucketList, k.alerts);
  const flowOf = (id: string) => each(k.bucketList, (b) => k.flowDelivered(b, id));
  const res: unknown[] = await Promise.all([
    ...buckets.map((b) => zcountAll(rt.redis, alerts, b, `(${b + step}`)),
    ...rt.cfg.platforms.flatMap((pl) => buckets.map((b) => zcountAll(rt.redis, flowOf(pl.id), b, `(${b + step}`))),
    ...rt.cfg.platforms.map((pl) => zMembersByScore(rt.redis, flowOf(pl.id), `(${end}`, start, LATENCY_SAMPLE, true)),
    zMembersByScore(rt.redis, alerts, `(${end}`, start, FLOW_STATE_SAMPLE, true),
    zcountAll(rt.redis, alerts, start, `(${end}`),
  ]);
  const val = (i: number) => res[i];
  let i = 0;
  const inCounts = buckets.map(() => Number(val(i++)));
  const outs = rt.cfg.platforms.map(() => buckets.map(() => Number(val(i++))));
  const latest = rt.cfg.platforms.map(() => val(i++) as string[]);
  const alertIds = val(i++) as string[];
  const received = Number(val(i++));

  // Delivery ids are derived from alert × platform; a missing hash (platform not targeted) answers nil.
  const q = spread(rt.redis);
  for (const a of alertIds) for (const pl of rt.cfg.platforms) q.hmget(k.delivery(deliveryId(a, pl.id)), 'state', 'nextAttemptAt');
  for (const ids of latest) for (const d of ids) {
    q.hmget(k.delivery(d), 'createdAt', 'deliveredAt');
    q.lindex(k.attempts(d), -1);
  }
  const r2 = await q.exec();
  const states: Record<string, number> = Object.fromEntries(DELIVERY_STATES.map((s) => [s, 0]));
  let retrying = 0;
  let j = 0;
  // An alert with no delivery hash at all may still be in the ingest log: its deliveries are queued.
  const unseen: string[] = [];
  for (const a of alertIds) {
    let seen = false;
    for (const pl of rt.cfg.platforms) {
      const [s, next] = (r2[j++]?.[1] as (string | null)[] | null) ?? [];
      if (s) states[s] = (states[s] ?? 0) + 1;
      if (next && (s === 'queued' || s === 'sending')) retrying++;
      if (s) seen = true;
    }
    if (!seen) unseen.push(...rt.cfg.platforms.map((pl) => deliveryId(a, pl.id)));
  }
  if (unseen.length) states.queued += (await pendingDeliveries(rt.redis, k, unseen)).size;
  const platforms: FlowPlatform[] = rt.cfg.platforms.map((pl, pi) => {
    const lat: number[] = [];
    const att: number[] = [];
    for (let n = 0; n < latest[pi].length; n++) {
      const [createdAt, deliveredAt] = (r2[j++]?.[1] as (string | null)[] | null) ?? [];
      const last = r2[j++]?.[1] as string | null;
      if (createdAt && deliveredAt) {
        const ms = Date.parse(deliveredAt) - Date.parse(createdAt);
        if (Number.isFinite(ms) && ms >= 0) lat.push(ms);
      }
      if (last) {
        try {
          const a = JSON.parse(last) as { durationMs?: number; outcome?: string };
          if (a.outcome === 'delivered' && typeof a.durationMs === 'number') att.push(a.durationMs);
        } catch {
          // an unreadable attempt entry is skipped
        }
      }
    }
    lat.sort((a, b) => a - b);
    att.sort((a, b) => a - b);
    return {
      platformId: pl.id,
      name: pl.name ?? pl.id,
      out: outs[pi],
      delivered: outs[pi].reduce((x, y) => x + y, 0),
      latency: { p50: percentile(lat, 50), p95: percentile(lat, 95), samples: lat.length },
      attempt: { p50: percentile(att, 50), p95: percentile(att, 95), samples: att.length },
    };
  });
  return {
    from: new Date(start).toISOString(),
    to: new Date(end).toISOString(),
    stepMs: step,
    buckets,
    in: inCounts,
    received,
    platforms,
    states,
    retrying,
    statesSampled: received > alertIds.length,
  };
}

/** `GET /v1/flow?minutes=60`: what the console's flow page draws (operators, auditors, admins). */
export async function flowRoutes(app: FastifyInstance): Promise<void> {
  const rt = app.fenliu;
  app.get<{ Querystring: { minutes?: number } }>(
    '/v1/flow',
    {
      preValidation: app.requireScope('alerts:read', 'audit:read', 'admin'),
      schema: {
        querystring: { type: 'object', additionalProperties: false, properties: { minutes: { type: 'integer', minimum: 1, maximum: 1440, default: 60 } } },
      },
    },
    async (req, reply) => {
      // Gateway-wide volumes are for operators; a source key sees them only with audit:read.
      if (req.principal?.kind !== 'operator' && !hasScope(req.principal, 'audit:read')) {
        throw new ProblemError('FENLIU_ERR_FORBIDDEN', 'The gateway-wide flow is for operator keys or audit:read');
      }
      reply.header('cache-control', 'no-store');
      return computeFlow(rt, req.query.minutes ?? 60);
    },
  );
}
