/**
 * Prometheus metrics (prom-client). Counters and histograms are fed by the in-process event bus
 * (src/events.ts); queue depth, dead letters, circuit state and Redis state are read on each
 * scrape. One registry per fenliu instance (tests start several in one process).
 * Names and example alert rules: docs/operations.md.
 */
import { createServer, type Server } from 'node:http';
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ARCHIVE_PHASES, bus } from '../events.js';
import { auditStreamKey } from '../audit/events.js';
import type { Runtime } from '../runtime.js';
import { ProblemError } from '../errors.js';
import { hasScope } from '../plugins/app/auth.js';
import { SLA_KINDS, slaSettled, type SlaKind } from '../lifecycle/service.js';
import { getDeliveries } from '../store/records.js';
import { each, spread, zByRank, zcardAll } from '../store/fanout.js';
import { answerWithin } from '../bounded.js';

const LATENCY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];
const ATTEMPT_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const QUEUE_STATES = ['waiting', 'active', 'delayed', 'prioritized', 'failed'] as const;
const CIRCUIT_STATES = ['closed', 'open', 'half-open'] as const;
const OVERDUE_SCAN = 5_000;
const REDIS_STATES = ['wait', 'connecting', 'connect', 'ready', 'reconnecting', 'close', 'end'] as const;
const ARCHIVE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** How long a scrape waits for a gauge read from Redis (Prometheus's default scrape timeout is 10 s). */
const SCRAPE_WAIT_MS = 1_000;

/**
 * A gauge's read from Redis, waited for at most SCRAPE_WAIT_MS: with Redis gone or frozen the
 * scrape still answers, with `fenliu_redis_up` 0 and the gauges Redis did not give left out (not
 * their last values, which would look current). Every other series is unaffected. A gauge without
 * labels cannot be left out (prom-client shows it as 0): `missing` makes it NaN instead.
 */
async function readOnScrape(gauge: { reset(): void }, read: () => Promise<void>, missing = () => gauge.reset()): Promise<void> {
  await answerWithin(read(), SCRAPE_WAIT_MS).catch(missing);
}

export interface Metrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  httpDuration: Histogram<'method' | 'route'>;
  close(): void;
}

const byRuntime = new WeakMap<Runtime, Metrics>();

/** The metrics of a runtime, when the metrics extension created them. */
export function metricsFor(rt: Runtime): Metrics | undefined {
  return byRuntime.get(rt);
}

/** Circuit state straight from Redis (the engine may run in another process). */
async function circuitStates(rt: Runtime): Promise<Map<string, string>> {
  // One key per platform, several slots on Redis Cluster: not one pipeline.
  const p = spread(rt.redis);
  for (const pl of rt.cfg.platforms) p.hget(`${rt.cfg.redis.prefix}:circuit:${pl.id}`, 'openedAt');
  const res = await p.exec();
  const out = new Map<string, string>();
  rt.cfg.platforms.forEach((pl, i) => {
    const openedAt = res[i]?.[1] as string | null;
    const cooldown = (pl as { circuitBreaker?: { cooldownMs?: number } }).circuitBreaker?.cooldownMs ?? 30_000;
    out.set(pl.id, !openedAt ? 'closed' : Date.now() < Number(openedAt) + cooldown ? 'open' : 'half-open');
  });
  return out;
}

export function createMetrics(rt: Runtime, role: string): Metrics {
  const registry = new Registry();
  registry.setDefaultLabels({ role });
  collectDefaultMetrics({ register: registry });
  const platformIds = rt.cfg.platforms.map((p) => p.id);

  new Gauge({ name: 'fenliu_build_info', help: 'Always 1; labels name the version', labelNames: ['version'], registers: [registry] }).set({ version: process.env.npm_package_version ?? '0.1.0' }, 1);

  const httpRequests = new Counter({ name: 'fenliu_http_requests_total', help: 'HTTP requests answered, by route pattern and status', labelNames: ['method', 'route', 'status'] as const, registers: [registry] });
  const httpDuration = new Histogram({ name: 'fenliu_http_request_duration_seconds', help: 'HTTP request duration', labelNames: ['method', 'route'] as const, buckets: HTTP_BUCKETS, registers: [registry] });

  const accepted = new Counter({ name: 'fenliu_alerts_accepted_total', help: 'Alerts accepted (stored and routed); duplicate="true" for idempotent replays', labelNames: ['source', 'duplicate'] as const, registers: [registry] });
  const refused = new Counter({ name: 'fenliu_alerts_refused_total', help: 'Alerts refused, by reason (error code)', labelNames: ['source', 'reason'] as const, registers: [registry] });
  const attempts = new Counter({ name: 'fenliu_delivery_attempts_total', help: 'Delivery attempts, by platform, outcome (delivered|retry|reject) and error class', labelNames: ['platform', 'outcome', 'error_class'] as const, registers: [registry] });
  const attemptDuration = new Histogram({ name: 'fenliu_delivery_attempt_duration_seconds', help: 'Duration of one delivery attempt (the platform round trip)', labelNames: ['platform', 'outcome'] as const, buckets: ATTEMPT_BUCKETS, registers: [registry] });
  const deliveries = new Counter({ name: 'fenliu_deliveries_total', help: 'Deliveries finished by the engine: outcome delivered, or failed (dead-lettered) with its error class', labelNames: ['platform', 'outcome', 'error_class'] as const, registers: [registry] });
  const latency = new Histogram({ name: 'fenliu_delivery_latency_seconds', help: 'Time from the alert being queued to the platform accepting the delivery', labelNames: ['platform'] as const, buckets: LATENCY_BUCKETS, registers: [registry] });
  const stateChanges = new Counter({ name: 'fenliu_delivery_state_changes_total', help: 'Delivery state changes, by platform, new state and what caused it', labelNames: ['platform', 'to', 'source'] as const, registers: [registry] });
  const circuitChanges = new Counter({ name: 'fenliu_circuit_changes_total', help: 'Circuit-breaker changes seen by this process', labelNames: ['platform', 'state'] as const, registers: [registry] });
  const slaExpired = new Counter({ name: 'fenliu_sla_overdue_total', help: 'SLA deadlines (ack, intervene, resolve) that passed before the state was reached', labelNames: ['platform', 'kind'] as const, registers: [registry] });

  const archived = new Counter({ name: 'fenliu_audit_archived_events_total', help: 'Audit events this process made durable in the segment files', registers: [registry] });
  const archiveBatch = new Histogram({ name: 'fenliu_audit_archive_batch_seconds', help: 'Duration of one archiver batch (read, encode, append with fsync, Merkle tiles, index, trim)', buckets: ARCHIVE_BUCKETS, registers: [registry] });
  const archivePhase = new Counter({ name: 'fenliu_audit_archive_phase_seconds_total', help: 'Time the archiver spent in each phase of its batches', labelNames: ['phase'] as const, registers: [registry] });
  const archiveCpu = new Counter({ name: 'fenliu_audit_archive_cpu_seconds_total', help: 'Process CPU time during each phase of the archiver batches (in a worker process, other work that ran meanwhile too)', labelNames: ['phase'] as const, registers: [registry] });
  new Gauge({
    name: 'fenliu_audit_stream_entries',
    help: 'Audit events in the Redis stream, not yet archived (read on scrape)',
    registers: [registry],
    async collect() {
      await readOnScrape(
        this,
        async () => this.set(await rt.redis.xlen(auditStreamKey(rt.cfg.redis.prefix))),
        () => this.set(NaN),
      );
    },
  });

  // Zero-initialise the known series so rate() and absent() behave from the first scrape.
  for (const phase of ARCHIVE_PHASES) {
    archivePhase.inc({ phase }, 0);
    archiveCpu.inc({ phase }, 0);
  }
  for (const p of platformIds) {
    deliveries.inc({ platform: p, outcome: 'delivered', error_class: '' }, 0);
    attempts.inc({ platform: p, outcome: 'delivered', error_class: '' }, 0);
  }

  new Gauge({
    name: 'fenliu_queue_jobs',
    help: 'Delivery jobs per platform work set and state: waiting (due), delayed (due later), active (leased) (read on scrape)',
    labelNames: ['platform', 'state'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      await readOnScrape(this, async () => {
        await Promise.all(
          platformIds.map(async (id) => {
            // prioritized and failed were BullMQ's states: kept at 0 so dashboards keep their series.
            const counts: Record<string, number> = { prioritized: 0, failed: 0, ...(await rt.queues.counts(id)) };
            for (const s of QUEUE_STATES) this.set({ platform: id, state: s }, counts[s] ?? 0);
          }),
        );
      });
    },
  });
  new Gauge({
    name: 'fenliu_dead_letters',
    help: 'Dead letters (failed deliveries awaiting an operator) per platform (read on scrape)',
    labelNames: ['platform'] as const,
    registers: [registry],
    async collect() {
      await readOnScrape(this, async () => {
        const res = await Promise.all(platformIds.map((id) => zcardAll(rt.redis, each(rt.keys.bucketList, (b) => rt.keys.deadLetters(b, id)))));
        platformIds.forEach((id, i) => this.set({ platform: id }, res[i]));
      });
    },
  });
  new Gauge({
    name: 'fenliu_circuit_state',
    help: 'Circuit-breaker state per platform: 1 for the current state, 0 for the others (read on scrape)',
    labelNames: ['platform', 'state'] as const,
    registers: [registry],
    async collect() {
      await readOnScrape(this, async () => {
        const states = await circuitStates(rt);
        for (const id of platformIds) for (const s of CIRCUIT_STATES) this.set({ platform: id, state: s }, states.get(id) === s ? 1 : 0);
      });
    },
  });
  new Gauge({
    name: 'fenliu_sla_overdue',
    help: 'Open deliveries whose SLA deadline (ack, intervene, resolve) has passed, per platform (read on scrape; at most 5,000 looked at)',
    labelNames: ['platform', 'kind'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      await readOnScrape(this, async () => {
        const counts = new Map<string, number>();
        for (const p of platformIds) for (const kind of SLA_KINDS) counts.set(`${p}\u0000${kind}`, 0);
        const ids = await zByRank(rt.redis, each(rt.keys.bucketList, rt.keys.overdue), 0, OVERDUE_SCAN - 1);
        for (const d of await getDeliveries(rt.redis, rt.keys, ids)) {
          for (const kind of (d.overdue ?? []) as SlaKind[]) {
            if (!SLA_KINDS.includes(kind) || slaSettled(d, kind)) continue;
            const key = `${d.platformId}\u0000${kind}`;
            counts.set(key, (counts.get(key) ?? 0) + 1);
          }
        }
        for (const [key, n] of counts) {
          const [platform, kind] = key.split('\u0000');
          this.set({ platform, kind }, n);
        }
      });
    },
  });
  new Gauge({
    name: 'fenliu_redis_up',
    help: '1 when the API connection to Redis is ready and answers PING',
    registers: [registry],
    async collect() {
      // A PING that does not come back in time is Redis down, as far as alerting goes.
      const up = await answerWithin(rt.redis.ping(), SCRAPE_WAIT_MS).then(
        () => rt.redis.status === 'ready',
        () => false,
      );
      this.set(up ? 1 : 0);
    },
  });
  new Gauge({
    name: 'fenliu_redis_connection_state',
    help: 'ioredis connection state of the API connection: 1 for the current state',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      for (const s of REDIS_STATES) this.set({ state: s }, rt.redis.status === s ? 1 : 0);
    },
  });

  const offs = [
    bus.onEvent('audit.archived', (e) => {
      archived.inc(e.events);
      let seconds = 0;
      for (const phase of ARCHIVE_PHASES) {
        archivePhase.inc({ phase }, e.phases[phase].seconds);
        archiveCpu.inc({ phase }, e.phases[phase].cpuSeconds);
        seconds += e.phases[phase].seconds;
      }
      archiveBatch.observe(seconds);
    }),
    bus.onEvent('alert.accepted', (e) => accepted.inc({ source: e.sourceId, duplicate: String(e.duplicate) })),
    bus.onEvent('alert.refused', (e) => refused.inc({ source: e.sourceId ?? '', reason: e.code })),
    bus.onEvent('delivery.attempt', (e) => {
      attempts.inc({ platform: e.platformId, outcome: e.outcome, error_class: e.errorClass ?? '' });
      attemptDuration.observe({ platform: e.platformId, outcome: e.outcome }, e.durationMs / 1000);
    }),
    bus.onEvent('delivery.delivered', (e) => {
      deliveries.inc({ platform: e.platformId, outcome: 'delivered', error_class: '' });
      latency.observe({ platform: e.platformId }, Math.max(0, e.latencyMs) / 1000);
    }),
    bus.onEvent('delivery.failed', (e) => deliveries.inc({ platform: e.platformId, outcome: 'failed', error_class: e.errorClass })),
    bus.onEvent('delivery.state', (e) => stateChanges.inc({ platform: e.platformId, to: e.to, source: e.source })),
    bus.onEvent('circuit.change', (e) => circuitChanges.inc({ platform: e.platformId, state: e.state })),
    bus.onEvent('sla.expired', (e) => slaExpired.inc({ platform: e.platformId, kind: e.kind })),
  ];

  const m: Metrics = {
    registry,
    httpRequests,
    httpDuration,
    close() {
      for (const off of offs) off();
      byRuntime.delete(rt);
    },
  };
  byRuntime.set(rt, m);
  return m;
}

/** Is the peer on this machine (and no proxy in between said otherwise)? */
export function isLoopback(req: FastifyRequest): boolean {
  const ip = req.socket.remoteAddress ?? '';
  const direct = ip === '127.0.0.1' || ip === '::1' || ip === '::ffff:127.0.0.1' || ip.startsWith('127.');
  return direct && req.headers['x-forwarded-for'] === undefined;
}

/**
 * `GET /metrics`: open to scrapers on loopback (no key needed), otherwise an admin key (or an
 * admin console session). Set `FENLIU_METRICS_OPEN=0` to require the key on loopback too.
 */
export function metricsRoutes(m: Metrics) {
  return async function routes(app: FastifyInstance): Promise<void> {
    const loopbackOpen = process.env.FENLIU_METRICS_OPEN !== '0';
    app.get('/metrics', { schema: { hide: true } }, async (req: FastifyRequest, reply: FastifyReply) => {
      if (!(loopbackOpen && isLoopback(req) && !req.headers.authorization) && !hasScope(req.principal, 'admin')) {
        if (!req.principal) throw new ProblemError('FENLIU_ERR_UNAUTHENTICATED', 'Metrics need an admin key off loopback', { headers: { 'www-authenticate': 'Bearer' } });
        throw new ProblemError('FENLIU_ERR_FORBIDDEN', 'Metrics need the admin scope');
      }
      reply.header('content-type', m.registry.contentType).header('cache-control', 'no-store');
      return m.registry.metrics();
    });
  };
}

/**
 * Root-level request counting (register right after the auth plugin in src/app.ts so every route
 * is counted). Labels use the route pattern, never the raw URL, so ids do not explode the series.
 */
export const requestMetricsPlugin = fp(
  async (app: FastifyInstance) => {
    app.addHook('onResponse', async (req, reply) => {
      const m = metricsFor(app.fenliu);
      if (!m) return;
      const route = req.routeOptions?.url ?? 'unmatched';
      m.httpRequests.inc({ method: req.method, route, status: String(reply.statusCode) });
      m.httpDuration.observe({ method: req.method, route }, reply.elapsedTime / 1000);
    });
  },
  { name: 'fenliu-request-metrics' },
);

/** Worker-only processes have no API server: `FENLIU_METRICS_PORT` gives them a bare /metrics listener on loopback. */
export async function startWorkerMetricsServer(m: Metrics, port: number, host = '127.0.0.1'): Promise<Server> {
  const srv = createServer((req, res) => {
    if (req.url?.split('?')[0] !== '/metrics' || req.method !== 'GET') {
      res.writeHead(404).end();
      return;
    }
    m.registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': m.registry.contentType }).end(body),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics: ${err.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, host, () => resolve());
  });
  return srv;
}
