/**
 * PlatformClient.send on its own (src/delivery/http.ts): it drives undici's dispatcher with a
 * handler, so the bounds and the shape of the answer that `request()` gave are checked here.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { classifyTransportError } from '../src/delivery/policy.js';
import { createAgent, MAX_RESPONSE_BYTES, PlatformClient, prepare, type Timeouts } from '../src/delivery/http.js';

type Route = (req: IncomingMessage, res: ServerResponse) => void;
const routes = new Map<string, Route>();
const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => (routes.get(req.url ?? '') ?? ((_, r) => r.writeHead(404).end()))(req, res));
});
const timers = new Set<NodeJS.Timeout>();
t.teardown(() => {
  for (const x of timers) clearInterval(x);
  server.closeAllConnections();
  server.close();
});

const url = await new Promise<string>((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
const timeouts: Timeouts = { connectMs: 1_000, headersMs: 300, bodyMs: 300 };
const agent = createAgent(timeouts);
t.teardown(() => agent.close());
const client = new PlatformClient('p', url, agent, { type: 'none' }, timeouts);
const post = (path: string) => client.send(prepare(url, { method: 'POST', path, body: { a: 1 } }));

routes.set('/ok', (req, res) => {
  res.setHeader('Set-Cookie', ['a=1', 'b=2']);
  res.setHeader('X-Seen-Length', String(req.headers['content-length']));
  res.writeHead(201, { 'content-type': 'application/json' }).end('{"id":"T1","名":"工单"}');
});
routes.set('/huge', (_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  const chunk = Buffer.alloc(256 * 1024, 0x61);
  for (let i = 0; i < 6; i++) res.write(chunk);
  res.end();
});
routes.set('/hang', () => undefined);
routes.set('/trickle', (_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  // a byte every 50 ms: each gap is within bodyMs, the whole body is not
  const x = setInterval(() => (res.writableEnded ? clearInterval(x) : res.write('.')), 50);
  timers.add(x);
  res.on('close', () => clearInterval(x));
});
routes.set('/redirect', (_req, res) => res.writeHead(302, { location: '/ok' }).end());

t.test('answer: status, headers lower-cased and repeated ones joined, UTF-8 body, duration', async (t) => {
  const r = await post('/ok');
  t.equal(r.response.status, 201);
  t.equal(r.response.body, '{"id":"T1","名":"工单"}');
  t.equal(r.response.headers['set-cookie'], 'a=1, b=2');
  t.equal(r.response.headers['content-type'], 'application/json');
  t.equal(r.response.headers['x-seen-length'], '7', 'the request body went out whole');
  t.equal(r.truncated, false);
  t.ok(r.durationMs >= 0);
});

t.test('a body over the cap is read to its end but kept to MAX_RESPONSE_BYTES', async (t) => {
  const r = await post('/huge');
  t.equal(r.response.body.length, MAX_RESPONSE_BYTES);
  t.equal(r.truncated, true);
});

t.test('no headers within headersMs: a timeout', async (t) => {
  const err = await post('/hang').then(
    () => null,
    (e: unknown) => e,
  );
  t.equal(classifyTransportError(err).errorClass, 'timeout');
});

t.test('a body trickled out past bodyMs, each gap shorter: a timeout for the whole body', async (t) => {
  const err = (await post('/trickle').then(
    () => null,
    (e: unknown) => e,
  )) as { code?: string } | null;
  t.equal(err?.code, 'UND_ERR_BODY_TIMEOUT');
  t.equal(classifyTransportError(err).errorClass, 'timeout');
});

t.test('a redirect is answered as it is, never followed', async (t) => {
  const r = await post('/redirect');
  t.equal(r.response.status, 302);
  t.equal(r.response.headers.location, '/ok');
});

t.test('connection refused: a connection failure', async (t) => {
  const down = new PlatformClient('p', 'http://127.0.0.1:9/', agent, { type: 'none' }, timeouts);
  const err = await down.send(prepare('http://127.0.0.1:9/', { method: 'POST', path: '/x', body: {} })).then(
    () => null,
    (e: unknown) => e,
  );
  t.equal(classifyTransportError(err).errorClass, 'connection');
});
