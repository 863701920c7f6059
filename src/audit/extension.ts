import { resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { ExtensionFactory } from '../extensions.js';
import { archives } from '../roles.js';
import { ProblemError } from '../errors.js';
import { getAlertRecord } from '../store/records.js';
import { canRead } from '../routes/alerts.js';
import { AuditArchiver } from './archiver.js';
import { queryAudit, readAlertTimeline } from './query.js';
import { openAuditIndex } from './event-index.js';
import { auditKeyring, setAuditKeys } from './format.js';
import { PERIOD_FILTER } from '../routes/query.js';

/**
 * The audit trail as a part of the process: the archiver runs in worker processes (several may
 * run; one writes at a time), the read API in API processes.
 */
export const auditExtension: ExtensionFactory = async (rt, role) => {
  const dir = resolve(rt.cfg.audit.dir);
  const prefix = rt.cfg.redis.prefix;
  const enc = rt.cfg.audit.encryption;
  if (enc) setAuditKeys(enc.currentKey, enc.keys);
  let archiver: AuditArchiver | undefined;
  if (rt.cfg.audit.archive && archives(role, rt.cfg.audit.archiveIn)) {
    archiver = new AuditArchiver({ redis: rt.redis, prefix, dir, segmentMaxBytes: rt.cfg.audit.segmentMaxBytes, logger: rt.log, keyring: enc ? auditKeyring : undefined, index: { add: (lines) => openAuditIndex(dir).add(lines) } });
    await archiver.start();
  }
  const routes = async (app: FastifyInstance) => {
    app.get<{ Params: { id: string } }>('/v1/alerts/:id/timeline', { preHandler: app.requireScope('alerts:read', 'audit:read') }, async (req) => {
      const rec = await getAlertRecord(rt.redis, rt.keys, req.params.id);
      if (!rec || !canRead(req.principal, rec)) throw new ProblemError('FENLIU_ERR_NOT_FOUND', `No alert ${req.params.id}`);
      return { items: await readAlertTimeline({ redis: rt.redis, prefix, dir, alertId: rec.id }) };
    });
    app.get<{ Querystring: { from?: string; to?: string; source?: string; platform?: string; type?: string; alertId?: string; cursor?: string; limit?: number } }>(
      '/v1/audit',
      {
        preHandler: app.requireScope('audit:read'),
        schema: {
          querystring: {
            type: 'object',
            additionalProperties: false,
            properties: {
              ...PERIOD_FILTER,
              type: { type: 'string' },
              alertId: { type: 'string' },
              cursor: { type: 'string' },
              limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
            },
          },
        },
      },
      async (req) => {
        try {
          return await queryAudit({ redis: rt.redis, prefix, dir, ...req.query });
        } catch (err) {
          if (err instanceof RangeError) throw new ProblemError('FENLIU_ERR_BAD_REQUEST', err.message, { errors: [{ pointer: '/querystring/cursor', message: 'is not a cursor from a previous page' }] });
          throw err;
        }
      },
    );
  };
  return { name: 'audit', routes: [routes], close: async () => archiver?.stop() };
};
