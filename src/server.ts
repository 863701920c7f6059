import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildServer } from './app.js';
import { createServer } from 'node:net';
import { loadCheckedConfig } from './kit/config-check.js';
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
    for (const e of exts.reverse()) await e.close?.(Date.now() + cfg.server.shutdownTimeoutMs).catch(() => undefined);
    await rt.close();
    await embedded?.stop();
    throw portError(err, cfg, role);
  }
  let app: FastifyInstance | undefined;
  let url: string | undefined;
  if (servesApi(role)) {
    app = await buildServer(rt, log, exts.flatMap((e) => e.routes ?? []));
    const readiness = exts.map((e) => e.readiness).filter((r): r is NonNullable<typeof r> => !!r);
    app.readinessExtras = async () => Object.assign({}, ...(await Promise.all(readiness.map((r) => r()))));
    try {
      url = await app.listen({ host: cfg.server.host, port: cfg.server.port });
    } catch (err) {
      for (const e of [...exts].reverse()) await e.close?.(Date.now() + cfg.server.shutdownTimeoutMs).catch(() => undefined);
      await app.close().catch(() => undefined);
      await rt.close();
      await embedded?.stop();
      throw portError(err, cfg, role);
    }
  }
  log.info({ role, url, redis: describeTarget(target) }, 'fenliu started');
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      rt.shuttingDown = true;
      // One budget for the whole stop (the CLI exits hard at shutdownTimeoutMs), less a margin for
      // the connections and an embedded Redis: each part that waits for work in hand gets what is left.
      const deadline = Date.now() + cfg.server.shutdownTimeoutMs - Math.min(1_000, cfg.server.shutdownTimeoutMs / 5);
      // In-flight requests finish; new ones get 503 while the listener closes.
      await app?.close();
      for (const e of [...exts].reverse()) await e.close?.(deadline);
      await rt.close();
      await embedded?.stop();
      log.info('fenliu stopped');
    })());
  return { rt, app, url, embedded, stop };
}

/** EADDRINUSE from a listener, said as which port and which config key. */
function portError(err: unknown, cfg: Config, role: Role): unknown {
  const e = err as NodeJS.ErrnoException & { port?: number; address?: string };
  if (e?.code !== 'EADDRINUSE') return err;
  const p = listenPorts(cfg, role).find((x) => x.port === e.port);
  return p ? new PortInUseError(p.host, p.port, p.what, p.pointer) : new PortInUseError(e.address ?? '?', e.port ?? 0, 'a listening port', 'the port in the config');
}

/** A port fenliu must listen on is taken: says which, by what key, and what to change. */
export class PortInUseError extends Error {
  constructor(
    readonly host: string,
    readonly port: number,
    readonly what: string,
    readonly pointer: string,
  ) {
    super(`${host}:${port} (${what}) is already in use, probably by another fenliu: stop it, or change ${pointer} in the config`);
    this.name = 'PortInUseError';
  }
}

/** The ports `serve` will listen on, with the config key that sets each. */
export function listenPorts(cfg: Config, role: Role): { host: string; port: number; what: string; pointer: string }[] {
  if (!servesApi(role)) return [];
  const out = [{ host: cfg.server.host, port: cfg.server.port, what: 'the API port', pointer: '/server/port' }];
  const sb = cfg.sandbox as { enabled?: boolean; host?: string; platforms?: { id: string; port?: number }[] } | undefined;
  if (sb?.enabled) {
    sb.platforms?.forEach((p, i) => {
      if (p.port) out.push({ host: sb.host ?? '127.0.0.1', port: p.port, what: `sandbox platform ${p.id}`, pointer: `/sandbox/platforms/${i}/port` });
    });
  }
  return out.filter((p) => p.port !== 0);
}

function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((res) => {
    const srv = createServer();
    srv.once('error', () => res(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => res(true)));
  });
}

/** Fails before anything starts (Redis included) when a port is already taken. */
export async function checkPorts(cfg: Config, role: Role): Promise<void> {
  for (const p of listenPorts(cfg, role)) {
    if (!(await portFree(p.host, p.port))) throw new PortInUseError(p.host, p.port, p.what, p.pointer);
  }
}

/** `fenliu serve`: start, print where, and stop cleanly on SIGTERM/SIGINT within the configured bound. */
export async function serve(configFile: string, role: Role): Promise<void> {
  // Every check that needs no Redis comes first: config, adapters, ports (the data folder lock
  // is checked by startEmbeddedRedis before it spawns anything).
  const cfg = await loadCheckedConfig(configFile);
  await checkPorts(cfg, role);
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
