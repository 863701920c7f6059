/**
 * Baseline (b): the naive gateway: Fastify + Ajv, then one BullMQ `queue.add` per request
 * (the alert itself in the job), answered 202 once the job is stored.
 */
import { randomUUID } from 'node:crypto';
import Fastify from 'fastify';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { alertValidator } from '../../src/ingest/validate.js';

const validate = alertValidator();
const connection = new Redis(process.env.REDIS_URL!, { maxRetriesPerRequest: null });
const queue = new Queue('naive', { connection, prefix: 'naive' });
await queue.waitUntilReady();
const app = Fastify({ logger: false });
app.post('/v1/alerts', async (req, reply) => {
  if (!validate(req.body)) return reply.code(400).send({ errors: validate.errors });
  const id = randomUUID();
  await queue.add('deliver', { id, acceptedAt: Date.now(), alert: req.body }, { jobId: id, removeOnComplete: true, attempts: 5 });
  reply.code(202);
  return { id, status: 'queued' };
});
const url = await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) });
process.stdout.write(`READY ${url}\n`);
process.on('SIGTERM', () => void app.close().then(() => queue.close()).then(() => process.exit(0)));
