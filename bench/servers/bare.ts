/** Baseline (a): bare Fastify + Ajv on the same alert schema; answers 202 with an id. No Redis. */
import { randomUUID } from 'node:crypto';
import Fastify from 'fastify';
import { alertValidator } from '../../src/ingest/validate.js';

const validate = alertValidator();
const app = Fastify({ logger: false });
app.post('/v1/alerts', async (req, reply) => {
  if (!validate(req.body)) return reply.code(400).send({ errors: validate.errors });
  reply.code(202);
  return { id: randomUUID(), status: 'queued' };
});
const url = await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) });
process.stdout.write(`READY ${url}\n`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
