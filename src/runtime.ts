import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { addAudit, type AuditEvent } from './audit/events.js';
import type { Config } from './config/types.js';
import { QueueRegistry } from './delivery/queues.js';
import { IngestService } from './ingest/ingest.js';
import { IngestWriter } from './ingest/writer.js';
import { Materialiser } from './ingest/dispatcher.js';
import { apiConnection, describeTarget, waitReady, type RedisTarget } from './redis/connect.js';
import { checkPersistence } from './redis/persistence.js';
import { keys, setStandalone, type Keys } from './store/keys.js';
import { migrateLayout } from './store/migrate.js';
import { Lifecycle } from './lifecycle/service.js';
import { RepeatMatcher } from './lifecycle/repeat.js';

/** The services a process holds, shared by routes, workers and the CLI. */
export interface Runtime {
  cfg: Config;
  log: Logger;
  /** Where Redis is (URL, Sentinel or Cluster); every connection is opened from it (src/redis/connect.ts). */
  redisTarget: RedisTarget;
  /** Fail-fast connection for request handlers. */
  redis: Redis;
  keys: Keys;
  queues: QueueRegistry;
  writer: IngestWriter;
  ingest: IngestService;
  /** Materialises an alert still in the ingest log on demand (before any write on it): src/ingest/dispatcher.ts. */
  materialiser: Materialiser;
  lifecycle: Lifecycle;
  /** Set on SIGTERM: new requests get 503. */
  shuttingDown: boolean;
  audit(ev: AuditEvent): Promise<void>;
  close(): Promise<void>;
  /** {size, root} of the latest signed audit checkpoint (a cached value; undefined until one exists). Set by the audit extension. */
  auditCheckpoint?: () => { size: number; root: string } | undefined;
}

export async function createRuntime(cfg: Config, log: Logger, target: RedisTarget | string, notice?: (line: string) => void): Promise<Runtime> {
  const redisTarget: RedisTarget = typeof target === 'string' ? { kind: 'url', url: target } : target;
  const redis = apiConnection(redisTarget);
  redis.on('error', (err) => log.debug({ err: { message: err.message } }, 'redis connection error'));
  // A Sentinel failover or a lost master: said once per change, not once per reconnect attempt.
  let lastState = '';
  let closing = false;
  const say = (state: string, msg: string) => {
    if (state === lastState || closing) return;
    lastState = state;
    if (state === 'ready') log.info({ redis: describeTarget(redisTarget) }, msg);
    else log.warn({ redis: describeTarget(redisTarget) }, msg);
  };
  redis.on('ready', () => say('ready', 'Redis connection ready'));
  redis.on('close', () => say('lost', 'Redis connection lost; reconnecting (ingest answers 503 meanwhile)'));
  await waitReady(redis, redisTarget);
  warnIfNotArchiving(cfg, log, notice);
  try {
    // What a 202 is worth depends on Redis persistence: warn loudly, or refuse (redis.requirePersistence).
    await checkPersistence(redis, log, { require: cfg.redis.requirePersistence, notice });
  } catch (err) {
    redis.disconnect();
    throw err;
  }
  const prefix = cfg.redis.prefix;
  const k = keys(prefix);
  // One Redis: scripts may span buckets and audit events need no relay (src/store/keys.ts).
  setStandalone(prefix, redisTarget.kind !== 'cluster');
  // Data of a version before the bucket key layout (src/store/keys.ts) is converted once, here.
  const converted = await migrateLayout(redis, prefix, cfg.platforms.map((p) => p.id));
  if (converted) log.warn({ alerts: converted }, 'converted Redis data to the bucket key layout (docs/scaling.md)');
  const queues = new QueueRegistry(redis, k, cfg.platforms.map((p) => p.id));
  await queues.waitUntilReady();
  const writer = new IngestWriter(redis, k, prefix, { replicas: cfg.redis.waitReplicas, timeoutMs: cfg.redis.waitTimeoutMs }, cfg.engine.ingestWriteThrough);
  const materialiser = new Materialiser(redis, k, prefix, log);
  const lifecycle = new Lifecycle(redis, k, cfg, queues, queues.lifecycle, log);
  lifecycle.materialise = (id, rec) => materialiser.alert(id, rec);
  const rt: Runtime = {
    cfg,
    log,
    redisTarget,
    redis,
    keys: k,
    queues,
    writer,
    ingest: undefined as unknown as IngestService,
    materialiser,
    lifecycle,
    shuttingDown: false,
    async audit(ev) {
      const p = redis.pipeline();
      addAudit(p, prefix, ev);
      await p.exec();
    },
    async close() {
      closing = true;
      await queues.close();
      redis.disconnect();
    },
  };
  const repeat = cfg.repeat.enabled ? await RepeatMatcher.create(redis, k, prefix, cfg.repeat) : undefined;
  const onRefused = (ev: AuditEvent) => {
    const p = redis.pipeline();
    addAudit(p, prefix, ev);
    const code = String(ev.data?.code ?? '');
    // Valid alerts the gateway kept from platforms count in the statistics (diversion rate).
    if (code === 'FENLIU_ERR_POLICE_ONLY' || code === 'FENLIU_ERR_NO_ROUTE') {
      p.zadd(k.refusals, Date.parse(ev.at), JSON.stringify({ at: ev.at, code, source: ev.data?.source, region: ev.data?.region, category: ev.data?.category, id: ev.data?.sourceAlertId }));
    }
    p.exec().catch(() => undefined);
  };
  rt.ingest = new IngestService(cfg, k, writer, onRefused, repeat, async (r, caseId) => void (await rt.lifecycle.urge(r, caseId)));
  return rt;
}

/**
 * Without the archiver the audit stream grows until Redis is full and ingest fails: say so at
 * start (the log and stderr of `fenliu serve`); /readyz reports the stream against `audit.streamLimit`.
 */
function warnIfNotArchiving(cfg: Config, log: Logger, notice?: (line: string) => void): void {
  if (cfg.audit.archive) return;
  const text = `audit.archive is false: no process of this config archives the audit stream, which grows in Redis until it is full and ingest fails; /readyz turns unready above audit.streamLimit (${cfg.audit.streamLimit} entries)`;
  log.warn({ streamLimit: cfg.audit.streamLimit }, `WARNING: ${text}`);
  notice?.(`fenliu: WARNING: ${text} (see docs/audit.md)`);
}
