import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { addAudit } from './events.js';
import { replayEvent, type ReplayMode, type ReplaySelectionDoc } from './operator.js';
import type { FastifyInstance } from 'fastify';
import type { ExtensionFactory } from '../extension-types.js';
import { archives, servesApi } from '../roles.js';
import { ProblemError } from '../errors.js';
import { getAlertRecord } from '../store/records.js';
import { canRead } from '../routes/alerts.js';
import { AuditArchiver } from './archiver.js';
import { queryAudit, readAlertTimeline } from './query.js';
import { auditIndex, openAuditIndex } from './event-index.js';
import { auditKeyring, setAuditKeys } from './format.js';
import { PERIOD_FILTER } from '../routes/query.js';
import { readFile } from 'node:fs/promises';
import { parseSigner } from './checkpoint.js';
import { CheckpointCache, CheckpointPublisher, CheckpointRequestError, readPublishedCheckpoint, requestCheckpoint } from './checkpoint-log.js';
import { proveAlert, readCheckpointFile } from './proof.js';

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
  // Signed checkpoints: signed by the archiving process; every process reads {size, root} for
  // receipts and feedback from a cached copy.
  const signing = rt.cfg.audit.signing;
  let publisher: CheckpointPublisher | undefined;
  if (signing && archiver) {
    const keyText = signing.privateKeyFile ? await readFile(resolve(rt.cfg.baseDir, signing.privateKeyFile), 'utf8') : signing.privateKey!;
    publisher = new CheckpointPublisher({ redis: rt.redis, prefix, dir, signer: parseSigner(keyText), origin: signing.origin, intervalMs: signing.checkpointIntervalMs, logger: rt.log });
    publisher.start();
  }
  const cache = new CheckpointCache(rt.redis, prefix);
  if (signing) {
    await cache.refresh().catch(() => undefined);
    cache.start();
    rt.auditCheckpoint = () => cache.current;
    rt.lifecycle.auditCheckpoint = rt.auditCheckpoint;
  }
  // Build or catch up the index now rather than on the first request (a new index over a large
  // log takes a while; queries meanwhile wait for the same catch-up).
  if (servesApi(role)) auditIndex(dir).catch((err) => rt.log.warn({ err }, 'audit index: catch-up failed; queries will retry'));
  const routes = async (app: FastifyInstance) => {
    app.get<{ Params: { id: string } }>('/v1/alerts/:id/timeline', { preValidation: app.requireScope('alerts:read', 'audit:read') }, async (req) => {
      const rec = await getAlertRecord(rt.redis, rt.keys, req.params.id);
      if (!rec || !canRead(req.principal, rec)) throw new ProblemError('FENLIU_ERR_NOT_FOUND', `No alert ${req.params.id}`);
      return { items: await readAlertTimeline({ redis: rt.redis, prefix, dir, alertId: rec.id }) };
    });
    app.get('/v1/audit/checkpoint', { preValidation: app.requireScope('audit:read', 'alerts:read') }, async (_req, reply) => {
      const note = (await readPublishedCheckpoint(rt.redis, prefix))?.note ?? (await readCheckpointFile(dir).catch(() => null));
      if (!note) throw new ProblemError('FENLIU_ERR_NOT_FOUND', 'No signed checkpoint yet (audit.signing is not configured, or the archiver has not signed one)');
      reply.type('text/plain; charset=utf-8');
      return note;
    });
    // On demand: the archiving process (perhaps another one) signs and publishes now.
    app.post('/v1/audit/checkpoint', { preValidation: app.requireScope('admin') }, async (_req, reply) => {
      if (!rt.cfg.audit.signing) throw new ProblemError('FENLIU_ERR_CONFLICT', 'audit.signing is not configured: this installation signs no checkpoints');
      try {
        const cp = await requestCheckpoint(rt.redis, prefix);
        await cache.refresh().catch(() => undefined);
        reply.type('text/plain; charset=utf-8');
        return cp.note;
      } catch (err) {
        if (err instanceof CheckpointRequestError) throw new ProblemError('FENLIU_ERR_NO_CHECKPOINT_SIGNER', err.message);
        throw err;
      }
    });
    app.get<{ Params: { id: string } }>('/v1/alerts/:id/proof', { preValidation: app.requireScope('alerts:read', 'audit:read') }, async (req) => {
      const rec = await getAlertRecord(rt.redis, rt.keys, req.params.id);
      if (!rec || !canRead(req.principal, rec)) throw new ProblemError('FENLIU_ERR_NOT_FOUND', `No alert ${req.params.id}`);
      const note = (await readPublishedCheckpoint(rt.redis, prefix))?.note ?? (await readCheckpointFile(dir).catch(() => null));
      // The alert exists: no proof yet is a state of the log, not a missing resource.
      if (!note) throw new ProblemError('FENLIU_ERR_CONFLICT', 'No signed checkpoint yet to prove against (audit.signing is not configured, or the archiver has not signed one)');
      return proveAlert(dir, rec.id, { checkpoint: note });
    });
    app.get<{ Querystring: { from?: string; to?: string; source?: string; platform?: string; type?: string; alertId?: string; cursor?: string; limit?: number } }>(
      '/v1/audit',
      {
        preValidation: app.requireScope('audit:read'),
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
    // A replay run through the API (`fenliu replay --mode redeliver`): started, one replay.delivery
    // per POST /v1/deliveries/:id/redeliver carrying the replayId, finished with the counts.
    app.post<{ Body: { mode: ReplayMode; reason: string; selection?: ReplaySelectionDoc; selected?: number } }>(
      '/v1/replays',
      {
        preValidation: app.requireScope('admin'),
        schema: {
          body: {
            type: 'object',
            required: ['mode', 'reason'],
            additionalProperties: false,
            properties: {
              mode: { enum: ['diff', 'redeliver'] },
              reason: { type: 'string', minLength: 1, maxLength: 1000 },
              selection: { type: 'object', additionalProperties: false, properties: { from: { type: 'string' }, to: { type: 'string' }, source: { type: 'string' }, platform: { type: 'string' } } },
              selected: { type: 'integer', minimum: 0 },
            },
          },
        },
      },
      async (req, reply) => {
        const p = req.principal!;
        const replayId = randomUUID();
        const m = rt.redis.multi();
        m.set(rt.keys.replayRun(replayId), req.body.mode, 'EX', 7 * 86_400);
        addAudit(m, prefix, replayEvent('replay.started', { replayId, mode: req.body.mode, actor: { kind: p.kind, id: p.ownerId ?? p.keyId, keyId: p.keyId }, reason: req.body.reason, data: { selection: req.body.selection ?? {}, selected: req.body.selected } }));
        await m.exec();
        reply.code(201);
        return { replayId };
      },
    );
    app.post<{ Params: { id: string }; Body: { counts: Record<string, number> } }>(
      '/v1/replays/:id/finish',
      {
        preValidation: app.requireScope('admin'),
        schema: { body: { type: 'object', required: ['counts'], additionalProperties: false, properties: { counts: { type: 'object', additionalProperties: { type: 'integer', minimum: 0 } } } } },
      },
      async (req) => {
        const key = rt.keys.replayRun(req.params.id);
        const mode = (await rt.redis.getdel(key)) as ReplayMode | null;
        if (!mode) throw new ProblemError('FENLIU_ERR_NOT_FOUND', `No running replay ${req.params.id}`);
        const p = req.principal!;
        await rt.audit(replayEvent('replay.finished', { replayId: req.params.id, mode, actor: { kind: p.kind, id: p.ownerId ?? p.keyId, keyId: p.keyId }, data: { counts: req.body.counts } }));
        return { replayId: req.params.id, finished: true };
      },
    );
  };
  return { name: 'audit', routes: [routes], close: async () => {
      cache.stop();
      await publisher?.stop();
      await archiver?.stop();
    } };
};
