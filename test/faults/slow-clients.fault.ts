/**
 * Slow clients (slowloris): connections that trickle their headers or their body (within the
 * body limit; a declared length over it is refused at once with 413). fenliu's requestTimeout
 * (30 s, src/app.ts) ends each of them — Node checks every 30 s, so within about a minute — and
 * meanwhile normal clients are served without delay.
 */
import t from 'tap';
import { connect, type Socket } from 'node:net';
import { useRedis } from '../helpers/redis.js';
import { KEYS, alert, api, startTestFenliu } from '../helpers/fenliu.js';

t.test('slow headers and slow bodies are cut; others are served meanwhile', async (t) => {
  const redis = await useRedis(t);
  const f = await startTestFenliu({ redisUrl: redis.url });
  t.teardown(() => f.stop());
  const u = new URL(f.url);
  const server = f.app!.server;
  t.comment(`requestTimeout ${server.requestTimeout} ms, headersTimeout ${server.headersTimeout} ms, socket timeout ${server.timeout} ms`);

  const sockets: { s: Socket; kind: string; closedAfter?: number; timer?: NodeJS.Timeout }[] = [];
  const started = Date.now();
  const open = (kind: 'headers' | 'body') => {
    const s = connect(Number(u.port), u.hostname);
    const entry: (typeof sockets)[number] = { s, kind };
    sockets.push(entry);
    s.on('error', () => undefined);
    s.on('close', () => {
      entry.closedAfter = Date.now() - started;
      clearInterval(entry.timer);
    });
    s.on('connect', () => {
      if (kind === 'headers') {
        s.write('POST /v1/alerts HTTP/1.1\r\nHost: x\r\n');
        // One header byte every second, forever.
        entry.timer = setInterval(() => s.writable && s.write('X'), 1_000);
      } else {
        s.write(`POST /v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEYS.sourceA}\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n{`);
        entry.timer = setInterval(() => s.writable && s.write(' '), 1_000);
      }
    });
  };
  for (let i = 0; i < 25; i++) open('headers');
  for (let i = 0; i < 25; i++) open('body');

  // Normal traffic is unaffected while the slow connections hang on.
  const latencies: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t0 = Date.now();
    const res = await api(f.url, KEYS.sourceA).post('/v1/alerts', alert(`SLOW-OK-${i}`));
    latencies.push(Date.now() - t0);
    t.equal(res.status, 202);
    await new Promise((r) => setTimeout(r, 250));
  }
  // Node enforces min(requestTimeout, headersTimeout) from a check that runs every 30 s.
  const effective = Math.min(server.requestTimeout, server.headersTimeout);
  const bound = Math.max(server.requestTimeout, server.headersTimeout) + 30_000 + 10_000;
  const end = Date.now() + bound;
  while (sockets.some((x) => x.closedAfter === undefined) && Date.now() < end) await new Promise((r) => setTimeout(r, 250));
  const open_ = sockets.filter((x) => x.closedAfter === undefined);
  for (const x of sockets) {
    clearInterval(x.timer);
    x.s.destroy();
  }
  t.equal(open_.length, 0, `every slow connection was closed by the server within ${bound} ms`);
  const closed = sockets.map((x) => x.closedAfter ?? Infinity);
  const worst = Math.max(...closed);
  const first = Math.min(...closed);
  t.ok(first >= effective - 1_000, `none was cut before the timeout (first after ${first} ms)`);
  process.stdout.write(`# fault ${JSON.stringify({ scenario: 'slow-clients', slowConnections: sockets.length, closedWithinMs: worst, normalRequests: latencies.length, maxLatencyMs: Math.max(...latencies), accepted: latencies.length, delivered: 0, duplicated: 0, lost: 0 })}\n`);
  t.ok(Math.max(...latencies) < 2_000, `normal requests served meanwhile (max ${Math.max(...latencies)} ms)`);
});
