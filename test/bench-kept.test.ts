/**
 * The bench's kept pair (bench/servers/kept.ts, kept-worker.ts) claims to keep, plainly, the
 * promises of fenliu's 202 and worker; `fenliu/kept` is only worth reading if it does. Checked here
 * on a private redis-server with a real receiver on loopback: key check, validation, exact
 * idempotency under concurrent repeats (and 409 for another body), repeat calls linked by their
 * keyed place key, the record, its indexes and its delivery's hash, deadlines and history, the
 * caller's and parties' personal data left out of the request, a platform fault retried, a 4xx
 * dead-lettered, attempt log and ticket index, and an audit archive whose hash chain verifies and
 * holds every event. Both ways the kept API can run: two round trips (SET NX, then
 * a MULTI) and one script (KEPT_ATOMIC=1, `--baselines kept-atomic`).
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { Queue } from 'bullmq';
import { request } from 'undici';
import { ROOT, SOURCE_KEY, benchAlert, startNode } from '../bench/lib.js';
import { useRedis } from './helpers/redis.js';
import { until } from './helpers/engine.js';
import { AuditIndex } from '../src/audit/event-index.js';
import { inclusionProof, leafHash, nodeHash, rootFromInclusionProof, rootHash } from '../src/audit/merkle.js';
import { tileReader } from '../src/audit/tiles.js';

// The platform: a ticket id per request; the first request about an alert whose source id is in
// `failOnce` gets a 503, every one about an alert in `refuse` a 400 (known before the alert is
// posted: the worker may send it before the 202 is read).
const received: { idempotencyKey: string; body: string; status: number }[] = [];
const failOnce = new Set<string>();
const refuse = new Set<string>();
/** While set, every request gets a 503: the platform is down. */
let down = false;
const receiver = createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    const sourceId = (JSON.parse(body) as { alert: { source: { alertId: string } } }).alert.source.alertId;
    const status = down ? 503 : refuse.has(sourceId) ? 400 : failOnce.delete(sourceId) ? 503 : 200;
    received.push({ idempotencyKey: String(req.headers['idempotency-key']), body, status });
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(status === 200 ? JSON.stringify({ id: `T-${received.length}` }) : '{"error":"busy"}');
  });
});
await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
t.teardown(() => new Promise((resolve) => receiver.close(resolve)));
const target = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;

for (const atomic of [false, true]) t.test(atomic ? 'one script (KEPT_ATOMIC=1)' : 'two round trips', async (t) => {
  const redis = await useRedis(t);
  const r = new Redis(redis.url);
  t.teardown(() => r.disconnect());
  const auditDir = mkdtempSync(join(tmpdir(), 'fenliu-kept-test-'));
  t.teardown(() => rmSync(auditDir, { recursive: true, force: true }));
  received.length = 0;

  const api = await startNode([join(ROOT, 'bench', 'servers', 'kept.ts')], { env: { REDIS_URL: redis.url, KEPT_ATOMIC: atomic ? '1' : '0' } });
  // fenliu's retry schedule and circuit cool-down, shortened
  const startWorker = () => startNode([join(ROOT, 'bench', 'servers', 'kept-worker.ts')], { env: { REDIS_URL: redis.url, TARGET_URL: target, CONCURRENCY: '4', AUDIT_DIR: auditDir, KEPT_RETRY_DELAYS: '50,50,50,50,50,50', KEPT_CIRCUIT_COOLDOWN_MS: '1000' } });
  let worker = await startWorker();
  t.teardown(() => worker.stop());
  t.teardown(() => api.stop());

  async function post(body: unknown, key = SOURCE_KEY) {
    const res = await request(`${api.url}/v1/alerts`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.statusCode, body: (await res.body.json()) as { id: string; status: string; repeatOf?: string; existingId?: string; deliveries?: { id: string }[] } };
  }

  t.test('a wrong key is refused, an invalid alert too, and neither is kept', async (t) => {
    t.equal((await post(benchAlert('k'), 'not-the-key')).status, 401);
    t.equal((await post({ source: { system: 'x' } })).status, 400);
    t.equal(await r.zcard('kept:alerts:t'), 0, 'nothing recorded');
  });

  const accepted: { id: string; deliveryId: string; alert: Record<string, any> }[] = [];
  const linked: string[] = [];

  t.test('concurrent repeats of one alert: exactly one 202, the others 200 with its id', async (t) => {
    const alert = benchAlert('idem');
    const answers = await Promise.all(Array.from({ length: 20 }, () => post(alert)));
    const first = answers.filter((a) => a.status === 202);
    t.equal(first.length, 1, 'one 202');
    t.equal(answers.filter((a) => a.status === 200 && a.body.id === first[0].body.id).length, 19, 'nineteen 200s naming it');
    accepted.push({ id: first[0].body.id, deliveryId: first[0].body.deliveries![0].id, alert });
    t.equal((await post(alert)).body.id, first[0].body.id, 'a later repeat too');
    const other = await post({ ...alert, summary: '另一警情' });
    t.equal(other.status, 409, 'another alert under the same id: 409');
    t.equal(other.body.existingId, first[0].body.id, 'naming the alert kept');
  });

  t.test('a repeat call (same place and category, another alert id) is kept and linked, with no delivery', async (t) => {
    const first = accepted[0];
    const again = await post({ ...first.alert, source: { ...first.alert.source, alertId: `${first.alert.source.alertId}-again` } });
    t.equal(again.status, 200);
    t.equal(again.body.status, 'linked');
    t.equal(again.body.repeatOf, first.id, 'linked to the first case');
    const record = JSON.parse((await r.get(`kept:alert:${again.body.id}`))!);
    t.equal(record.repeatOf, first.id, 'its record names the case');
    t.same(record.deliveries, [], 'no delivery');
    linked.push(again.body.id);
  });

  t.test('accepted alerts are recorded, indexed, timed and delivered once, without the caller', async (t) => {
    const failing = benchAlert('retry');
    failOnce.add((failing.source as { alertId: string }).alertId);
    const withParties = { ...benchAlert('one'), parties: [{ role: '店主', name: '王五', phone: '13912345678', idNumber: '420204198001011234' }] };
    for (const alert of [withParties, failing, benchAlert('two')]) {
      const a = await post(alert);
      t.equal(a.status, 202);
      accepted.push({ id: a.body.id, deliveryId: a.body.deliveries![0].id, alert });
    }
    for (const a of accepted) {
      const record = JSON.parse((await r.get(`kept:alert:${a.id}`))!);
      t.same(record.alert, a.alert, 'the record holds the alert');
      t.ok((await r.ttl(`kept:alert:${a.id}`)) > 29 * 86_400, 'kept for 30 days');
      t.ok(await r.zscore('kept:alerts:t', a.id), 'listed by time');
      t.ok(await r.zscore(`kept:alerts:src:${a.alert.source.system}`, a.id), 'listed by source');
      t.ok(await r.zscore('kept:sla:due', a.deliveryId), 'its deadline is set');
      const d = await r.hgetall(`kept:delivery:${a.deliveryId}`);
      t.ok(d.ackBy && d.interveneBy && d.resolveBy, 'the delivery holds its three deadlines');
      t.match(JSON.parse((await r.lindex(`kept:history:${a.deliveryId}`, 0))!), { to: 'queued' }, 'its history starts queued');
    }
    await until(async () => {
      const states = await Promise.all(accepted.map((a) => r.hget(`kept:delivery:${a.deliveryId}`, 'state')));
      return states.every((s) => s === 'delivered');
    }, 20_000, 'every delivery delivered');
    const queue = new Queue('kept', { connection: { url: redis.url }, prefix: 'kept' });
    t.teardown(() => queue.close());
    for (const a of accepted) {
      const requests = received.filter((x) => x.idempotencyKey === a.deliveryId);
      const retried = a.alert === failing;
      t.same(requests.map((x) => x.status), retried ? [503, 200] : [200], retried ? 'the 503 retried, then delivered' : 'sent once');
      for (const x of requests) {
        t.notMatch(x.body, a.alert.caller.name, 'no caller name');
        t.notMatch(x.body, a.alert.caller.phone, 'no caller phone');
        for (const p of a.alert.parties ?? []) for (const v of [p.name, p.phone, p.idNumber]) t.notMatch(x.body, v, 'no party’s personal data');
      }
      const d = await r.hgetall(`kept:delivery:${a.deliveryId}`);
      t.match(d.remoteTicketId, /^T-\d+$/, 'the ticket id kept');
      t.equal(await r.hget('kept:tickets', d.remoteTicketId), a.deliveryId, 'the ticket index names the delivery');
      t.equal(await r.llen(`kept:history:${a.deliveryId}`), 1 + 2 * requests.length, 'queued, then sending and its outcome per attempt');
      t.equal(await r.llen(`kept:attempts:${a.deliveryId}`), requests.length, 'an attempt log entry per attempt');
      t.equal(await queue.getJobState(a.deliveryId), 'unknown', 'the finished job is removed: the delivery hash is the record');
    }
  });

  t.test('a 4xx is not retried: the delivery fails and is dead-lettered', async (t) => {
    const alert = benchAlert('refused');
    refuse.add((alert.source as { alertId: string }).alertId);
    const a = await post(alert);
    t.equal(a.status, 202);
    const deliveryId = a.body.deliveries![0].id;
    await until(async () => (await r.hget(`kept:delivery:${deliveryId}`, 'state')) === 'failed', 20_000, 'failed');
    t.ok(await r.zscore('kept:dead', deliveryId), 'in the dead letters');
    t.equal(received.filter((x) => x.idempotencyKey === deliveryId).length, 1, 'sent once');
    t.equal(await r.zscore('kept:sla:due', deliveryId), null, 'no timer left');
    accepted.push({ id: a.body.id, deliveryId, alert });
  });

  t.test('a platform that is down opens its circuit after five faults; a probe after the cool-down closes it', async (t) => {
    down = true;
    const alerts = [benchAlert('down-1'), benchAlert('down-2')];
    const posted = [];
    for (const alert of alerts) posted.push(await post(alert));
    const ids = posted.map((a) => a.body.deliveries![0].id);
    await until(() => r.hget('kept:circuit:p-hook', 'openedAt'), 10_000, 'the circuit open');
    down = false;
    const faults = received.filter((x) => ids.includes(x.idempotencyKey)).length;
    t.ok(faults >= 5 && faults <= 6, `five faults opened it (and at most one in flight then): ${faults}`);
    await until(async () => (await Promise.all(ids.map((id) => r.hget(`kept:delivery:${id}`, 'state')))).every((s) => s === 'delivered'), 20_000, 'both delivered after the cool-down');
    t.same(received.filter((x) => ids.includes(x.idempotencyKey)).map((x) => x.status).filter((s) => s === 200), [200, 200], 'each sent once more, after the cool-down');
    t.equal(await r.exists('kept:circuit:p-hook'), 0, 'the success closed the circuit');
    const held = (await Promise.all(ids.map((id) => r.lrange(`kept:history:${id}`, 0, -1)))).flat().map((h) => JSON.parse(h) as { reason?: string });
    t.ok(held.some((h) => h.reason === 'circuit open'), 'a delivery waited for the cool-down, queued');
    posted.forEach((a, i) => accepted.push({ id: a.body.id, deliveryId: ids[i], alert: alerts[i] }));
  });

  t.test('a restarted worker goes on with the chain, the tree and the index', async (t) => {
    await worker.stop();
    worker = await startWorker();
    const alert = benchAlert('after-restart');
    const a = await post(alert);
    const deliveryId = a.body.deliveries![0].id;
    await until(async () => (await r.hget(`kept:delivery:${deliveryId}`, 'state')) === 'delivered', 20_000, 'delivered');
    accepted.push({ id: a.body.id, deliveryId, alert });
  });

  t.test('the audit archive: every event, in a hash chain, a Merkle tree and an index that verify, and gone from Redis', async (t) => {
    const attempts = received.length;
    await until(async () => (await r.xlen('kept:audit')) === 0, 10_000, 'the stream archived');
    const lines = readFileSync(join(auditDir, 'audit.jsonl'), 'utf8').trimEnd().split('\n');
    let head = createHash('sha256').update('kept').digest('hex');
    const events: { type: string; alertId: string }[] = [];
    lines.forEach((line, i) => {
      const l = JSON.parse(line) as { seq: number; prev: string; event: { type: string; alertId: string } };
      if (l.seq !== i + 1 || l.prev !== head) t.fail(`line ${i + 1} breaks the chain`);
      head = createHash('sha256').update(line).digest('hex');
      events.push(l.event);
    });
    t.equal(lines.length, accepted.length + linked.length + attempts, 'one alert.received per alert (linked ones too), one delivery.attempt per request');
    for (const a of accepted) {
      t.equal(events.filter((e) => e.type === 'alert.received' && e.alertId === a.id).length, 1, 'received once');
      t.ok(events.some((e) => e.type === 'delivery.attempt' && e.alertId === a.id), 'its attempts');
    }
    // The check can fail: one changed byte breaks it.
    const tampered = lines[0].replace('alert.received', 'alert.receiveD');
    t.not(createHash('sha256').update(tampered).digest('hex'), JSON.parse(lines[1]).prev, 'a changed line no longer chains');

    // The Merkle tree in tiles: its head is the root of the lines' leaves, and a proof from the tiles holds.
    const leaves = lines.map((l) => leafHash(l));
    const node = (level: number, index: number): Buffer => (level === 0 ? leaves[index] : nodeHash(node(level - 1, 2 * index), node(level - 1, 2 * index + 1)));
    const treeHead = JSON.parse(readFileSync(join(auditDir, 'tree', 'tree.json'), 'utf8')) as { size: number; root: string };
    t.equal(treeHead.size, lines.length, 'a leaf per line');
    const root = await rootHash(async (level, index) => node(level, index), lines.length);
    t.equal(treeHead.root, root.toString('base64'), 'the stored root is the lines\' root');
    const i = lines.length - 3;
    const proof = await inclusionProof(tileReader(join(auditDir, 'tree')), i, lines.length);
    t.ok(rootFromInclusionProof(i, lines.length, leaves[i], proof).equals(root), 'an inclusion proof from the tiles');
    t.notOk(rootFromInclusionProof(i, lines.length, leafHash(lines[i].replace('"seq"', '"Seq"')), proof).equals(root), 'which a changed line fails');

    // The index: every event of an alert found, at the offset of its line in the file.
    const file = readFileSync(join(auditDir, 'audit.jsonl'));
    const index = AuditIndex.open(auditDir);
    t.teardown(() => index.close());
    for (const a of accepted) {
      const rows = index.find({ alertId: a.id }, 100);
      t.equal(rows.length, events.filter((e) => e.alertId === a.id).length, 'every event of the alert indexed');
      for (const row of rows) t.equal(JSON.parse(file.subarray(row.offset, row.offset + row.length).toString('utf8')).seq, row.seq, 'at its line');
    }
  });
});
