/**
 * A receiving platform for the benchmarks: answers every POST with 200 {"id": ticket} and
 * records, per request, the idempotency key, when it arrived and when it finished (ms since
 * the epoch). GET /_stats returns and clears the records; `overlaps` counts requests whose key
 * was already in flight (a delivery sent twice concurrently).
 */
import { createServer } from 'node:http';

interface Rec {
  key: string;
  at: number;
  acceptedAt?: number;
}
let records: Rec[] = [];
const inflight = new Map<string, number>();
let overlaps: string[] = [];
let n = 0;
const DELAY_MS = Number(process.env.DELAY_MS ?? 0);

const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/_stats') {
    const body = JSON.stringify({ records, overlaps });
    records = [];
    overlaps = [];
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
    return;
  }
  const at = Date.now();
  const key = String(req.headers['idempotency-key'] ?? '');
  if (inflight.has(key)) overlaps.push(key);
  inflight.set(key, (inflight.get(key) ?? 0) + 1);
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const accepted = req.headers['x-accepted-at'];
    records.push({ key, at, acceptedAt: accepted ? Number(accepted) : undefined });
    const answer = () => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: `T${++n}`, status: 'received' }));
    };
    // DELAY_MS keeps each request in flight a while (scale-out: makes concurrent double sends visible).
    if (DELAY_MS > 0) setTimeout(finish, DELAY_MS);
    else finish();
    function finish() {
      const left = (inflight.get(key) ?? 1) - 1;
      if (left) inflight.set(key, left);
      else inflight.delete(key);
      answer();
    }
  });
});
server.keepAliveTimeout = 30_000;
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const a = server.address() as { port: number };
  process.stdout.write(`READY http://127.0.0.1:${a.port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
