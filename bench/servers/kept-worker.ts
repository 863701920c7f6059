/**
 * Not a target baseline: the naive worker (naive-worker.ts) made to keep, plainly, the promises
 * fenliu's worker keeps (see kept.ts). Per delivery:
 * - the delivery marked `sending` with a history entry before the request (one MULTI);
 * - the alert read from its record and minimised as fenliu's default (src/delivery/minimise.ts:
 *   no caller or parties' personal data, no extensions); the webhook envelope fenliu's adapter
 *   sends, with Idempotency-Key;
 * - the answer read for the platform's ticket id (a 2xx without one, or not JSON, is a failure);
 *   a 4xx is not retried; other failures are retried by BullMQ (5 attempts: fewer and sooner than
 *   fenliu's 7 over ~8.6 h, which the bench never reaches);
 * - per attempt, in one MULTI: a `delivery.attempt` audit event holding the request and the
 *   answer, the delivery's state and ticket, a history entry, the attempt in the delivery's
 *   attempt log, the ticket index and delivered-flow index, the SLA timer set again; after the
 *   last attempt or a 4xx, state `failed` and the dead-letter index;
 * - BullMQ keeps the finished job for 30 days.
 * Not kept: fenliu's circuit breaker, adapter output check and the retry horizon above.
 * In the same process, as fenliu's default: the audit stream archived to a JSON-lines file, each
 * line carrying the SHA-256 chain of all before it, fsynced per batch, then trimmed from Redis
 * (no Merkle tree or index, and the chain starts again with the process: fenliu's does neither).
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { Agent, request } from 'undici';
import { minimise } from '../../src/delivery/minimise.js';
import type { Alert } from '../../adapters/sdk.js';

const target = process.env.TARGET_URL!;
const concurrency = Number(process.env.CONCURRENCY ?? 50);
const dispatcher = new Agent({ connections: 64, keepAliveTimeout: 30_000 });
const connection = new Redis(process.env.REDIS_URL!, { maxRetriesPerRequest: null });
const redis = new Redis(process.env.REDIS_URL!, { maxRetriesPerRequest: null });

interface Job { alertId: string; deliveryId: string; platform: string; acceptedAt: number }

const worker = new Worker(
  'kept',
  async (job) => {
    const d = job.data as Job;
    const key = `kept:delivery:${d.deliveryId}`;
    const historyKey = `kept:history:${d.deliveryId}`;
    const sendingAt = new Date().toISOString();
    const [[, raw], [, ackBy]] = (await redis
      .multi()
      .get(`kept:alert:${d.alertId}`)
      .hget(key, 'ackBy')
      .hset(key, 'state', 'sending', 'updatedAt', sendingAt)
      .rpush(historyKey, JSON.stringify({ at: sendingAt, to: 'sending', source: 'engine' }))
      .exec())! as [[null, string], [null, string]];
    const rec = JSON.parse(raw) as { alert: Alert };
    const body = JSON.stringify({ deliveryId: d.deliveryId, alertId: d.alertId, sentAt: sendingAt, alert: minimise(rec.alert, undefined) });
    const started = Date.now();
    let status = 0;
    let text = '';
    let error: string | undefined;
    try {
      const res = await request(`${target}/tickets`, {
        method: 'POST',
        dispatcher,
        headers: { 'content-type': 'application/json', 'idempotency-key': d.deliveryId, 'x-accepted-at': String(d.acceptedAt) },
        body,
      });
      status = res.statusCode;
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
    const reject = status >= 400 && status < 500;
    const last = reject || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    const state = ticket ? 'delivered' : last ? 'failed' : 'queued';
    const attempt = { n: job.attemptsMade + 1, at, ms: now - started, status, error, ticket };
    const m = redis
      .multi()
      .xadd('kept:audit', '*', 'e', JSON.stringify({ type: 'delivery.attempt', at, alertId: d.alertId, deliveryId: d.deliveryId, data: { ...attempt, request: { url: `${target}/tickets`, body }, response: { status, body: text.slice(0, 8192) }, from: 'sending', to: state } }))
      .hset(key, 'state', state, 'updatedAt', at, 'attempts', attempt.n, ...(ticket ? ['remoteTicketId', ticket, 'deliveredAt', at] : ['lastError', error ?? `HTTP ${status}`]))
      .rpush(historyKey, JSON.stringify({ at, to: state, from: 'sending', source: 'engine' }))
      .rpush(`kept:attempts:${d.deliveryId}`, JSON.stringify(attempt));
    if (ticket) m.hset('kept:tickets', ticket, d.deliveryId).zadd('kept:flow:delivered', now, d.deliveryId).zadd('kept:sla:due', Date.parse(ackBy), d.deliveryId);
    else if (state === 'failed') m.zadd('kept:dead', now, d.deliveryId).zrem('kept:sla:due', d.deliveryId);
    await m.exec();
    if (!ticket) {
      const why = error ?? `HTTP ${status}`;
      throw reject ? new UnrecoverableError(why) : new Error(why);
    }
    return ticket;
  },
  { connection, prefix: 'kept', concurrency },
);
await worker.waitUntilReady();

// The archiver: the stream in batches to a hash-chained file, durable before it leaves Redis.
// AUDIT_DIR: where test/bench-kept.test.ts reads the file back to verify the chain.
const file = await open(join(process.env.AUDIT_DIR ?? mkdtempSync(join(tmpdir(), 'fenliu-bench-kept-audit-')), 'audit.jsonl'), 'a');
const reader = new Redis(process.env.REDIS_URL!, { maxRetriesPerRequest: null });
let head = createHash('sha256').update('kept').digest('hex');
let seq = 0;
let running = true;
const archiving = (async () => {
  while (running) {
    const got = (await reader.xread('COUNT', 500, 'BLOCK', 1000, 'STREAMS', 'kept:audit', '0')) as [string, [string, string[]][]][] | null;
    const entries = got?.[0]?.[1] ?? [];
    if (entries.length === 0) continue;
    let out = '';
    for (const [, fields] of entries) {
      const line = `{"seq":${++seq},"prev":"${head}","event":${fields[1]}}`;
      head = createHash('sha256').update(line).digest('hex');
      out += line + '\n';
    }
    await file.write(out);
    await file.sync();
    await reader.xdel('kept:audit', ...entries.map(([id]) => id));
  }
})();

process.stdout.write('READY\n');
process.on('SIGTERM', () => {
  running = false;
  void worker.close().then(() => archiving).then(() => file.close()).then(() => process.exit(0));
});
