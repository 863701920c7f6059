/**
 * Where an offline replay run (`fenliu replay --mode diff`) puts its replay.started /
 * replay.delivery / replay.finished events:
 * - on the audit log, through Redis (the config's redis section: a URL, Sentinel or Cluster, opened
 *   by the one connection factory; or `--redis URL`), like any event;
 * - otherwise (no Redis named, `--report FILE`, or Redis unreachable) into a replay report: a JSON
 *   file with the same events, written once at the end, whose SHA-256 is printed so it can be
 *   quoted (ticket, e-mail) and checked later with `sha256sum`.
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { hostname, userInfo } from 'node:os';
import type { Redis } from 'ioredis';
import { describeTarget, openRedis, waitReady, type RedisTarget } from '../redis/connect.js';
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
export async function openReplayRecorder(o: {
  mode: ReplayMode;
  reason?: string;
  /** Where the audit log is (from `redisTarget(cfg.redis)`); none: a report file. */
  redis?: RedisTarget;
  prefix: string;
  report?: string;
  warn: (s: string) => void;
}): Promise<ReplayRecorder> {
  const replayId = randomUUID();
  const actor = who();
  const mk = (type: 'replay.started' | 'replay.delivery' | 'replay.finished', f: { alertId?: string; deliveryId?: string; platformId?: string; data?: Record<string, unknown> } = {}) =>
    replayEvent(type, { replayId, mode: o.mode, actor, reason: o.reason, ...f });
  let redis: Redis | undefined;
  const target = o.redis && !o.report ? o.redis : undefined;
  const label = target ? describeTarget(target) : '';
  if (target) {
    // One try, no endless reconnects: an unreachable Redis means a report file instead.
    const r = openRedis(target, 'api', { lazyConnect: true, connectTimeout: 2_000, maxRetriesPerRequest: 1, enableOfflineQueue: true });
    r.on('error', () => undefined);
    try {
      await waitReady(r, target, 5_000);
      redis = r;
    } catch (err) {
      r.disconnect();
      o.warn(`fenliu replay: Redis ${label} unreachable (${(err as Error).message}); writing a replay report instead\n`);
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
    where: redis ? `the audit log (${label})` : `report ${file}`,
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
