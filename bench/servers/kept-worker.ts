/**
 * Not a target baseline: the naive worker (naive-worker.ts) made to keep, plainly, the promises
 * fenliu's worker keeps (see kept.ts). Per delivery:
 * - the delivery marked `sending` with a history entry before the request, and the platform's
 *   circuit read (one MULTI, with the record's read); an open circuit puts the delivery back to
 *   `queued` and delays the job to the cool-down's end (a second MULTI: rare); a half-open one lets
 *   one probe through (fenliu's `Circuit`, src/delivery/circuit.ts, on the same keys' layout);
 * - the alert read from its record and minimised as fenliu's default (src/delivery/minimise.ts:
 *   no caller or parties' personal data, no extensions); the webhook envelope fenliu's adapter
 *   sends, with Idempotency-Key;
 * - the answer read for the platform's ticket id (a 2xx without one, or not JSON, is a failure);
 *   a 4xx other than 408, 425 and 429 is not retried; other failures are retried along fenliu's
 *   default schedule (src/delivery/policy.ts: 7 attempts over ~8.6 h, full jitter, Retry-After
 *   honoured within its bounds); a fault of the platform (no answer, 5xx, 408, 425) counts
 *   towards opening its circuit, a success closes it;
 * - per attempt, in one MULTI: a `delivery.attempt` audit event holding the request and the
 *   answer, the delivery's state and ticket, a history entry, the attempt in the delivery's
 *   attempt log, the ticket index and delivered-flow index, the SLA timer set again, the circuit
 *   reset; after the last attempt or a 4xx, state `failed` and the dead-letter index;
 * - metrics: attempts by outcome, and the time from acceptance to delivery.
 * Not kept: fenliu's adapter output check.
 * In the same process, as fenliu's default, the audit archiver: the stream in batches to a
 * JSON-lines file, each line carrying the SHA-256 chain of all before it (resumed from the file's
 * last line after a restart), fsynced per batch; then each line a leaf of the Merkle tree stored
 * in tiles (fenliu's `TileTree`, src/audit/tiles.ts) and a row of the SQLite event index (fenliu's
 * `AuditIndex`); then trimmed from Redis. fenliu's archive also rolls segments and seals the hot
 * events' bodies beside them; this one is one file. It batches as fenliu's does (up to 2000
 * entries, at least 250 ms apart), and indexes from metadata the producers put beside each event.
 */
import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DelayedError, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { Agent, request } from 'undici';
import { Counter, Histogram } from 'prom-client';
import { AuditIndex, type ArchivedLine } from '../../src/audit/event-index.js';
import type { AuditEvent } from '../../src/audit/events.js';
import { leafHash } from '../../src/audit/merkle.js';
import { TileTree } from '../../src/audit/tiles.js';
import { Circuit, DEFAULT_CIRCUIT } from '../../src/delivery/circuit.js';
import { minimise } from '../../src/delivery/minimise.js';
import { DEFAULT_RETRY, parseRetryAfter, retryDelay } from '../../src/delivery/policy.js';
import type { Alert } from '../../adapters/sdk.js';
import { keptMeta, parseKeptMeta } from '../lib.js';

const target = process.env.TARGET_URL!;
const concurrency = Number(process.env.CONCURRENCY ?? 50);
const dispatcher = new Agent({ connections: 64, keepAliveTimeout: 30_000 });
const connection = new Redis(process.env.REDIS_URL!, { maxRetriesPerRequest: null });
const redis = new Redis(process.env.REDIS_URL!, { maxRetriesPerRequest: null });
// KEPT_RETRY_DELAYS and KEPT_CIRCUIT_COOLDOWN_MS: shorter for test/bench-kept.test.ts, fenliu's defaults otherwise.
const retry = { ...DEFAULT_RETRY, ...(process.env.KEPT_RETRY_DELAYS ? { delaysMs: process.env.KEPT_RETRY_DELAYS.split(',').map(Number) } : {}) };
const circuit = new Circuit(redis, 'kept', 'p-hook', { ...DEFAULT_CIRCUIT, cooldownMs: Number(process.env.KEPT_CIRCUIT_COOLDOWN_MS ?? DEFAULT_CIRCUIT.cooldownMs) });

const attempts = new Counter({ name: 'kept_delivery_attempts_total', help: 'attempts by outcome', labelNames: ['outcome'] });
const latency = new Histogram({ name: 'kept_delivery_seconds', help: 'acceptance to delivery' });

interface Job { alertId: string; deliveryId: string; platform: string; acceptedAt: number }
/** A failed attempt's error: what the backoff needs to know. */
class AttemptError extends Error {
  constructor(message: string, readonly retryAfterMs?: number) {
    super(message);
  }
}

const worker = new Worker(
  'kept',
  async (job, token) => {
    const d = job.data as Job;
    const key = `kept:delivery:${d.deliveryId}`;
    const historyKey = `kept:history:${d.deliveryId}`;
    const sendingAt = new Date().toISOString();
    const [[, raw], [, ackBy], [, openedAt]] = (await redis
      .multi()
      .get(`kept:alert:${d.alertId}`)
      .hget(key, 'ackBy')
      .hget(circuit.key, 'openedAt')
      .hset(key, 'state', 'sending', 'updatedAt', sendingAt)
      .rpush(historyKey, JSON.stringify({ at: sendingAt, to: 'sending', source: 'engine' }))
      .exec())! as [[null, string], [null, string], [null, string | null]];
    let probe = false;
    if (openedAt) {
      const admitted = await circuit.admit(token ?? d.deliveryId);
      if (!admitted.ok) {
        const at = new Date().toISOString();
        const due = Date.now() + admitted.waitMs;
        await redis
          .multi()
          .hset(key, 'state', 'queued', 'updatedAt', at, 'nextAttemptAt', new Date(due).toISOString(), 'lastError', 'circuit open')
          .rpush(historyKey, JSON.stringify({ at, to: 'queued', from: 'sending', source: 'engine', reason: 'circuit open' }))
          .exec();
        await job.moveToDelayed(due, token);
        throw new DelayedError();
      }
      probe = admitted.probe;
    }
    const rec = JSON.parse(raw) as { alert: Alert };
    const body = JSON.stringify({ deliveryId: d.deliveryId, alertId: d.alertId, sentAt: sendingAt, alert: minimise(rec.alert, undefined) });
    const started = Date.now();
    let status = 0;
    let text = '';
    let error: string | undefined;
    let retryAfter: string | undefined;
    try {
      const res = await request(`${target}/tickets`, {
        method: 'POST',
        dispatcher,
        headers: { 'content-type': 'application/json', 'idempotency-key': d.deliveryId, 'x-accepted-at': String(d.acceptedAt) },
        body,
      });
      status = res.statusCode;
      retryAfter = res.headers['retry-after'] as string | undefined;
      text = await res.body.text();
    } catch (err) {
      error = (err as Error).message;
    }
    let ticket: string | undefined;
    if (status >= 200 && status < 300) {
      try {
        ticket = (JSON.parse(text) as { id?: string }).id;
      } catch {
        // not JSON: no ticket
      }
      if (!ticket) error = 'a 2xx without a ticket id';
    }
    const at = new Date().toISOString();
    const now = Date.parse(at);
    const fault = status === 0 || status >= 500 || status === 408 || status === 425;
    const reject = status >= 400 && status < 500 && !fault && status !== 429;
    const last = reject || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    const state = ticket ? 'delivered' : last ? 'failed' : 'queued';
    const attempt = { n: job.attemptsMade + 1, at, ms: now - started, status, error, ticket };
    const m = redis
      .multi()
      .xadd('kept:audit', '*', 'e', JSON.stringify({ type: 'delivery.attempt', at, alertId: d.alertId, deliveryId: d.deliveryId, platformId: d.platform, data: { ...attempt, request: { url: `${target}/tickets`, body }, response: { status, body: text.slice(0, 8192) }, from: 'sending', to: state } }), 'm', keptMeta({ type: 'delivery.attempt', at, alertId: d.alertId, deliveryId: d.deliveryId, platformId: d.platform }))
      .hset(key, 'state', state, 'updatedAt', at, 'attempts', attempt.n, ...(ticket ? ['remoteTicketId', ticket, 'deliveredAt', at] : ['lastError', error ?? `HTTP ${status}`]))
      .rpush(historyKey, JSON.stringify({ at, to: state, from: 'sending', source: 'engine' }))
      .rpush(`kept:attempts:${d.deliveryId}`, JSON.stringify(attempt));
    if (ticket) m.hset('kept:tickets', ticket, d.deliveryId).zadd('kept:flow:delivered', now, d.deliveryId).zadd('kept:sla:due', Date.parse(ackBy), d.deliveryId).del(circuit.key);
    else if (state === 'failed') m.zadd('kept:dead', now, d.deliveryId).zrem('kept:sla:due', d.deliveryId);
    if (probe) m.del(`${circuit.key}:probe`);
    await m.exec();
    attempts.inc({ outcome: state });
    if (ticket) latency.observe((now - d.acceptedAt) / 1000);
    if (!ticket) {
      if (fault) await circuit.failure();
      const why = error ?? `HTTP ${status}`;
      throw reject ? new UnrecoverableError(why) : new AttemptError(why, parseRetryAfter(retryAfter));
    }
    return ticket;
  },
  { connection, prefix: 'kept', concurrency, settings: { backoffStrategy: (attemptsMade, _type, err) => retryDelay(retry, attemptsMade, (err as AttemptError | undefined)?.retryAfterMs) } },
);
await worker.waitUntilReady();

// The archiver: the stream in batches to a hash-chained file, durable before it leaves Redis,
// then its Merkle tree and index. AUDIT_DIR: where test/bench-kept.test.ts reads them back.
const auditDir = process.env.AUDIT_DIR ?? mkdtempSync(join(tmpdir(), 'fenliu-bench-kept-audit-'));
const path = join(auditDir, 'audit.jsonl');
const file = await open(path, 'a+');
let head = createHash('sha256').update('kept').digest('hex');
let seq = 0;
let offset = (await file.stat()).size;
if (offset > 0) {
  // The chain resumes from the last line (a line is far shorter than the 1 MiB read).
  const n = Math.min(offset, 1 << 20);
  const { buffer } = await file.read(Buffer.alloc(n), 0, n, offset - n);
  const last = buffer.toString('utf8').trimEnd().split('\n').pop()!;
  seq = (JSON.parse(last) as { seq: number }).seq;
  head = createHash('sha256').update(last).digest('hex');
}
const tree = await TileTree.open(join(auditDir, 'tree'));
if (tree.size < seq) {
  // A crash came between the file's fsync and the tiles: their leaves again, from the file.
  const lines = (await readFile(path, 'utf8')).trimEnd().split('\n');
  await tree.append(lines.slice(tree.size).map((l) => leafHash(l)));
}
const index = AuditIndex.open(auditDir);
const reader = new Redis(process.env.REDIS_URL!, { maxRetriesPerRequest: null });
let running = true;
// fenliu's batching: up to 2000 entries, batches at least 250 ms apart (each costs an fsync, the
// tile writes and an index transaction, whatever its size).
let lastBatch = 0;
const archiving = (async () => {
  while (running) {
    const wait = lastBatch + 250 - Date.now();
    if (wait > 0) await new Promise((res) => setTimeout(res, wait));
    lastBatch = Date.now();
    const got = (await reader.xread('COUNT', 2000, 'BLOCK', 1000, 'STREAMS', 'kept:audit', '0')) as [string, [string, string[]][]][] | null;
    const entries = got?.[0]?.[1] ?? [];
    if (entries.length === 0) continue;
    let out = '';
    const leaves: Buffer[] = [];
    const archived: ArchivedLine[] = [];
    for (const [streamId, fields] of entries) {
      const line = `{"seq":${++seq},"prev":"${head}","event":${fields[1]}}`;
      head = createHash('sha256').update(line).digest('hex');
      out += line + '\n';
      leaves.push(leafHash(line));
      const length = Buffer.byteLength(line);
      archived.push({ seq, streamId, segment: 'audit.jsonl', offset, length, event: parseKeptMeta(fields[3]) as AuditEvent });
      offset += length + 1;
    }
    await file.write(out);
    await file.sync();
    await tree.append(leaves);
    index.add(archived);
    // Everything up to the batch's last entry (MINID keeps ids from the one after it).
    const [ms, n] = entries[entries.length - 1][0].split('-');
    await reader.xtrim('kept:audit', 'MINID', `${ms}-${Number(n) + 1}`);
  }
})();

process.stdout.write('READY\n');
process.on('SIGTERM', () => {
  running = false;
  void worker
    .close()
    .then(() => archiving)
    .then(() => file.close())
    .then(() => index.close())
    .then(() => process.exit(0));
});
