/** Baseline (d): a naive BullMQ worker that POSTs each job's alert with undici to the receiver. */
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { Agent, request } from 'undici';

const target = process.env.TARGET_URL!;
const concurrency = Number(process.env.CONCURRENCY ?? 50);
const dispatcher = new Agent({ connections: 64, keepAliveTimeout: 30_000 });
const connection = new Redis(process.env.REDIS_URL!, { maxRetriesPerRequest: null });
const worker = new Worker(
  'naive',
  async (job) => {
    const res = await request(`${target}/tickets`, {
      method: 'POST',
      dispatcher,
      headers: { 'content-type': 'application/json', 'idempotency-key': job.id!, 'x-accepted-at': String(job.data.acceptedAt) },
      body: JSON.stringify(job.data.alert),
    });
    const text = await res.body.text();
    if (res.statusCode >= 300) throw new Error(`HTTP ${res.statusCode}`);
    return JSON.parse(text).id;
  },
  { connection, prefix: 'naive', concurrency },
);
await worker.waitUntilReady();
process.stdout.write('READY\n');
process.on('SIGTERM', () => void worker.close().then(() => process.exit(0)));
