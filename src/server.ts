import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildServer } from './app.js';
import { loadConfig } from './config/load.js';
import type { Config } from './config/types.js';
import { createLogger } from './log.js';
import { describeTarget, redisTarget, type RedisTarget } from './redis/connect.js';
import { startEmbeddedRedis, type EmbeddedRedis } from './redis/embedded.js';
import { createRuntime, type Runtime } from './runtime.js';
import { extensions, type Extension } from './extensions.js';
import { servesApi, type Role } from './roles.js';

export type { Role } from './roles.js';

export interface Fenliu {
  rt: Runtime;
  app?: FastifyInstance;
  url?: string;
  embedded?: EmbeddedRedis;
  /** Graceful stop: refuse new requests, finish in-flight work, close everything. */
  stop(): Promise<void>;
}

export interface StartOptions {
  role?: Role;
  /** Overrides config and REDIS_URL (tests). */
  redisUrl?: string;
  logger?: Logger;
  /** Print human notices (embedded Redis) to stderr. */
  notice?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
}

/** Starts fenliu in this process with a validated config. */
export async function startFenliu(cfg: Config, opts: StartOptions = {}): Promise<Fenliu> {
  const role = opts.role ?? 'all';
  const env = opts.env ?? process.env;
  const log = opts.logger ?? createLogger(cfg.log.level);
  const notice = opts.notice ?? (() => undefined);
  let embedded: EmbeddedRedis | undefined;
  // One setting decides every connection: url (or REDIS_URL), Sentinel, Cluster, else embedded.
  let target: RedisTarget | undefined = redisTarget(cfg.redis, env, opts.redisUrl);
  if (!target) {
    embedded = await startEmbeddedRedis(cfg.redis.dataDir);
    target = { kind: 'url', url: embedded.url };
    notice(`fenliu: REDIS_URL is not set, so fenliu started its own redis-server on 127.0.0.1:${embedded.port} (AOF on, data in ${embedded.dir}); it stops with fenliu.`);
  }
  let rt: Runtime;
  try {
    rt = await createRuntime(cfg, log, target, notice);
  } catch (err) {
    await embedded?.stop();
    throw err;
  }
  const exts: Extension[] = [];
  try {
    for (const make of extensions) {
      const ext = await make(rt, role);
      if (ext) exts.push(ext);
    }
  } catch (err) {
    for (const e of exts.reverse()) await e.close?.().catch(() => undefined);
    await rt.close();
    await embedded?.stop();
    throw err;
  }
  let app: FastifyInstance | undefined;
  let url: string | undefined;
  if (servesApi(role)) {
    app = await buildServer(rt, log, exts.flatMap((e) => e.routes ?? []));
    const readiness = exts.map((e) => e.readiness).filter((r): r is NonNullable<typeof r> => !!r);
    app.readinessExtras = async () => Object.assign({}, ...(await Promise.all(readiness.map((r) => r()))));
    url = await app.listen({ host: cfg.server.host, port: cfg.server.port });
  }
  log.info({ role, url, redis: describeTarget(target) }, 'fenliu started');
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      rt.shuttingDown = true;
      // In-flight requests finish; new ones get 503 while the listener closes.
      await app?.close();
      for (const e of [...exts].reverse()) await e.close?.();
      await rt.close();
      await embedded?.stop();
      log.info('fenliu stopped');
    })());
  return { rt, app, url, embedded, stop };
}

/** `fenliu serve`: start, print where, and stop cleanly on SIGTERM/SIGINT within the configured bound. */
export async function serve(configFile: string, role: Role): Promise<void> {
  const cfg = await loadConfig(configFile);
  const f = await startFenliu(cfg, { role, notice: (l) => process.stderr.write(`${l}\n`) });
  if (f.url) process.stderr.write(`fenliu: listening on ${f.url} (role ${role}); API docs at ${f.url}/docs\n`);
  else process.stderr.write(`fenliu: running (role ${role})\n`);
  const onSignal = (sig: string) => {
    process.stderr.write(`fenliu: ${sig} received, shutting down\n`);
    const timer = setTimeout(() => {
      process.stderr.write(`fenliu: shutdown took longer than ${cfg.server.shutdownTimeoutMs} ms; exiting\n`);
      process.exit(1);
    }, cfg.server.shutdownTimeoutMs);
    timer.unref();
    f.stop().then(
      () => process.exit(0),
      (err) => {
        process.stderr.write(`fenliu: error while stopping: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
}
