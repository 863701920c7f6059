import type { FastifyInstance } from 'fastify';
import { ProblemError } from '../errors.js';
import { computeStats } from '../lifecycle/stats.js';
import { SLA_KINDS, nextSla, slaSettled, type SlaKind } from '../lifecycle/service.js';
import { getDeliveries, type DeliveryRecord } from '../store/records.js';
import { each, zByRank, zMembersByScore } from '../store/fanout.js';
import { PERIOD_FILTER } from './query.js';

const FIELD: Record<SlaKind, 'ackBy' | 'interveneBy' | 'resolveBy'> = { ack: 'ackBy', intervene: 'interveneBy', resolve: 'resolveBy' };

/** Figures and the SLA board: what supervisors watch. */
export default async function statsRoutes(app: FastifyInstance) {
  const rt = app.fenliu;
  const k = rt.keys;

  app.get<{ Querystring: { from?: string; to?: string; source?: string; platform?: string; region?: string } }>(
    '/v1/stats',
    {
      preValidation: app.requireScope('audit:read', 'alerts:read'),
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            ...PERIOD_FILTER,
            region: { type: 'string', pattern: '^[0-9]{2,12}$' },
          },
        },
      },
    },
    async (req) => {
      const p = req.principal!;
      let source = req.query.source;
      // A source key sees its own figures only.
      if (!p.scopes.has('audit:read') && !p.scopes.has('admin')) {
        if (source && source !== p.ownerId) throw new ProblemError('FENLIU_ERR_FORBIDDEN', 'A source key reads its own statistics only');
        source = p.ownerId;
      }
      const to = req.query.to ? Date.parse(req.query.to) : Date.now();
      const from = req.query.from ? Date.parse(req.query.from) : to - 86_400_000;
      if (from > to) throw new ProblemError('FENLIU_ERR_BAD_REQUEST', 'from is after to', { errors: [{ pointer: '/querystring/from', message: 'is after to' }] });
      return computeStats(rt.redis, k, { from, to, source, platform: req.query.platform, region: req.query.region });
    },
  );

  app.get<{ Querystring: { within?: number } }>(
    '/v1/sla',
    {
      preValidation: app.requireScope('audit:read', 'admin'),
      schema: { querystring: { type: 'object', additionalProperties: false, properties: { within: { type: 'integer', minimum: 0, default: 3_600_000 } } } },
    },
    async (req) => {
      const now = Date.now();
      const horizon = now + (req.query.within ?? 3_600_000);
      const overdueIds = await zByRank(rt.redis, each(k.bucketList, k.overdue), 0, 999);
      const dueIds = await zMembersByScore(rt.redis, each(k.bucketList, k.slaDue), '-inf', horizon, 999);
      const ds = await getDeliveries(rt.redis, k, [...new Set([...overdueIds, ...dueIds])]);
      const items: { deliveryId: string; alertId: string; platformId: string; kind: SlaKind; dueAt: string; overdue: boolean; state: string }[] = [];
      for (const d of ds) {
        for (const kind of SLA_KINDS) {
          const due = (d as DeliveryRecord)[FIELD[kind]];
          if (!due || slaSettled(d, kind)) continue;
          const overdue = (d.overdue ?? []).includes(kind);
          const next = nextSla(d);
          if (overdue || (next?.kind === kind && Date.parse(due) <= horizon)) items.push({ deliveryId: d.id, alertId: d.alertId, platformId: d.platformId, kind, dueAt: due, overdue, state: d.state });
        }
      }
      items.sort((a, b) => a.dueAt.localeCompare(b.dueAt));
      return { items };
    },
  );
}
