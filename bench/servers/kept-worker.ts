/**
 * Not a target baseline: the naive worker (naive-worker.ts) made to keep, plainly, the promises
 * fenliu's worker keeps (see kept.ts). Per delivery:
 * - the alert read from its record; the caller's personal data left out (the platform is not
 *   allowed to see it); the webhook envelope fenliu's adapter sends, with Idempotency-Key;
 * - the answer read for the platform's ticket id; a failure retried by BullMQ (5 attempts);
 * - per attempt, in one MULTI: a `delivery.attempt` audit event holding the request and the
 *   answer, the delivery's state and ticket, and a history entry;
 * - BullMQ keeps the finished job (the delivery's record) for 30 days.
 * In the same process, as fenliu's default: the audit stream archived to a JSON-lines file, each
 * line carrying the SHA-256 chain of all before it, fsynced per batch, then trimmed from Redis.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { Agent, request } from 'undici';

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
    const rec = JSON.parse((await redis.get(`kept:alert:${d.alertId}`))!) as { alert: { caller?: Record<string, unknown> } };
    const { caller, ...rest } = rec.alert;
    const alert = caller ? { ...rest, caller: { confidential: caller.confidential } } : rest;
    const body = JSON.stringify({ deliveryId: d.deliveryId, alertId: d.alertId, sentAt: new Date().toISOString(), alert });
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
    const ok = status >= 200 && status < 300;
    const ticket = ok ? (JSON.parse(text) as { id?: string }).id : undefined;
    const at = new Date().toISOString();
    const state = ok ? 'delivered' : 'retrying';
    await redis
      .multi()
      .xadd('kept:audit', '*', 'e', JSON.stringify({ type: 'delivery.attempt', at, alertId: d.alertId, deliveryId: d.deliveryId, data: { attempt: job.attemptsMade + 1, request: { url: `${target}/tickets`, body }, response: { status, body: text }, error, ms: Date.now() - started, state } }))
      .hset(`kept:delivery:${d.deliveryId}`, 'state', state, 'updatedAt', at, ...(ticket ? ['remoteTicketId', ticket] : []))
      .rpush(`kept:history:${d.deliveryId}`, JSON.stringify({ at, to: state, status }))
      .exec();
    if (!ok) throw new Error(error ?? `HTTP ${status}`);
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
