/**
 * Where an offline replay run (`fenliu replay --mode diff`) puts its replay.started /
 * replay.delivery / replay.finished events:
 * - on the audit log, through Redis (the config's `redis.url`, or `--redis URL`), like any event;
 * - otherwise (no Redis named, `--report FILE`, or Redis unreachable) into a replay report: a JSON
 *   file with the same events, written once at the end, whose SHA-256 is printed so it can be
 *   quoted (ticket, e-mail) and checked later with `sha256sum`.
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { hostname, userInfo } from 'node:os';
import { Redis } from 'ioredis';
import { appendAudit, type AuditEvent } from './events.js';
import { sha256Hex } from './format.js';
import { replayEvent, type ReplayMode } from './operator.js';

export interface ReplayRecorder {
  readonly replayId: string;
  /** "the audit log (redis://…)" or "report FILE (sha256 …)", known after close() */
  where: string;
  started(data: Record<string, unknown>): Promise<void>;
  delivery(f: { alertId: string; deliveryId: string; platformId: string; data: Record<string, unknown> }): Promise<void>;
  finished(counts: Record<string, number>): Promise<void>;
  close(): Promise<{ where: string; sha256?: string }>;
}

function who(): AuditEvent['actor'] {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry (containers)
  }
  return { kind: 'system', id: `fenliu replay (${user}@${hostname()})` };
}

/** Opens the recorder: Redis if given and reachable, else a report file. */
export async function openReplayRecorder(o: { mode: ReplayMode; reason?: string; redisUrl?: string; prefix: string; report?: string; warn: (s: string) => void }): Promise<ReplayRecorder> {
  const replayId = randomUUID();
  const actor = who();
  const mk = (type: 'replay.started' | 'replay.delivery' | 'replay.finished', f: { alertId?: string; deliveryId?: string; platformId?: string; data?: Record<string, unknown> } = {}) =>
    replayEvent(type, { replayId, mode: o.mode, actor, reason: o.reason, ...f });
  let redis: Redis | undefined;
  if (o.redisUrl && !o.report) {
    const r = new Redis(o.redisUrl, { lazyConnect: true, connectTimeout: 2_000, maxRetriesPerRequest: 1, retryStrategy: () => null });
    r.on('error', () => undefined);
    try {
      await r.connect();
      redis = r;
    } catch (err) {
      r.disconnect();
      o.warn(`fenliu replay: Redis ${o.redisUrl} unreachable (${(err as Error).message}); writing a replay report instead\n`);
    }
  }
  const events: AuditEvent[] = [];
  const put = async (ev: AuditEvent) => {
    if (redis) await appendAudit(redis, o.prefix, ev);
    else events.push(ev);
  };
  const file = o.report ?? `replay-${replayId}.json`;
  const rec: ReplayRecorder = {
    replayId,
    where: redis ? `the audit log (${o.redisUrl})` : `report ${file}`,
    started: (data) => put(mk('replay.started', { data })),
    delivery: (f) => put(mk('replay.delivery', f)),
    finished: (counts) => put(mk('replay.finished', { data: { counts } })),
    async close() {
      if (redis) {
        await redis.quit();
        return { where: rec.where };
      }
      const text = JSON.stringify({ replayId, mode: o.mode, events }, null, 2) + '\n';
      await writeFile(file, text);
      const sha256 = sha256Hex(text);
      rec.where = `report ${file} (sha256 ${sha256})`;
      return { where: rec.where, sha256 };
    },
  };
  return rec;
}
