import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { addAudit, type AuditEvent } from './audit/events.js';
import type { Config } from './config/types.js';
import { QueueRegistry } from './delivery/queues.js';
import { IngestService } from './ingest/ingest.js';
import { IngestWriter } from './ingest/writer.js';
import { apiConnection, waitReady } from './redis/connect.js';
import { checkPersistence } from './redis/persistence.js';
import { keys, type Keys } from './store/keys.js';
import { Lifecycle } from './lifecycle/service.js';
import { RepeatMatcher } from './lifecycle/repeat.js';

/** The services a process holds, shared by routes, workers and the CLI. */
export interface Runtime {
  cfg: Config;
  log: Logger;
  redisUrl: string;
  /** Fail-fast connection for request handlers. */
  redis: Redis;
  keys: Keys;
  queues: QueueRegistry;
  writer: IngestWriter;
  ingest: IngestService;
  lifecycle: Lifecycle;
  /** Set on SIGTERM: new requests get 503. */
  shuttingDown: boolean;
  audit(ev: AuditEvent): Promise<void>;
  close(): Promise<void>;
  /** {size, root} of the latest signed audit checkpoint (a cached value; undefined until one exists). Set by the audit extension. */
  auditCheckpoint?: () => { size: number; root: string } | undefined;
}

export async function createRuntime(cfg: Config, log: Logger, redisUrl: string, notice?: (line: string) => void): Promise<Runtime> {
  const redis = apiConnection(redisUrl);
  redis.on('error', (err) => log.debug({ err: { message: err.message } }, 'redis connection error'));
  await waitReady(redis, redisUrl);
  try {
    // What a 202 is worth depends on Redis persistence: warn loudly, or refuse (redis.requirePersistence).
    await checkPersistence(redis, log, { require: cfg.redis.requirePersistence, notice });
  } catch (err) {
    redis.disconnect();
    throw err;
  }
  const prefix = cfg.redis.prefix;
  const k = keys(prefix);
  const queues = new QueueRegistry(redis, k.queuePrefix, cfg.platforms.map((p) => p.id));
  await queues.waitUntilReady();
  const writer = new IngestWriter(redis, k, prefix, queues);
  const rt: Runtime = {
    cfg,
    log,
    redisUrl,
    redis,
    keys: k,
    queues,
    writer,
    ingest: undefined as unknown as IngestService,
    lifecycle: new Lifecycle(redis, k, cfg, queues, queues.lifecycle, log),
    shuttingDown: false,
    async audit(ev) {
      const p = redis.pipeline();
      addAudit(p, prefix, ev);
      await p.exec();
    },
    async close() {
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
