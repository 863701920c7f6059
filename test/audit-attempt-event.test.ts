/**
 * The folded events (docs/audit.md, "One event per attempt", "One event per received alert"): a
 * log that mixes the event sets written before them (alert.received + alert.routed;
 * delivery.translated + delivery.attempt + delivery.state) with the new ones (one alert.received
 * carrying the route; one delivery.attempt carrying the body and the state change) archives,
 * verifies, reads back and replays the same.
 */
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { AuditArchiver } from '../src/audit/archiver.js';
import { addAudit, type AuditEvent } from '../src/audit/events.js';
import { closeAuditIndexes, openAuditIndex } from '../src/audit/event-index.js';
import { readAlertTimeline } from '../src/audit/query.js';
import { collectAlerts } from '../src/audit/replay.js';
import { verifyAuditDir } from '../src/audit/verify.js';
import { startRedis } from './helpers/redis.js';

const server = await startRedis();
const redis = new Redis(server.url);
const root = await mkdtemp(join(tmpdir(), 'fenliu-audit-attempt-'));
t.teardown(async () => {
  closeAuditIndexes();
  await redis.quit();
  await server.stop();
  await rm(root, { recursive: true, force: true });
});

const at = (s: number) => new Date(Date.UTC(2024, 0, 1, 0, 0, s)).toISOString();
const body = (i: number) => `{"工单":${i}}`;
const request = { method: 'POST', url: 'https://p.example/tickets', headers: { 'content-type': 'application/json' }, bodySha256: 'ab'.repeat(32) };

/** As fenliu wrote a received alert before: alert.received, then alert.routed with the route. */
function receivedOld(i: number, route = { ruleId: 'wage', targets: ['p'] }): AuditEvent[] {
  return [
    { type: 'alert.received', at: at(0), alertId: `A-${i}`, sourceId: 'hs-110', data: { alert: { summary: `欠薪纠纷 ${i}` }, bodyHash: 'cd'.repeat(32), idempotencyKey: `hs-110:${i}` } },
    { type: 'alert.routed', at: at(0), alertId: `A-${i}`, sourceId: 'hs-110', data: { ...route, deliveryIds: route.targets.map((p) => `D-${i}.${p}`) } },
  ];
}

/** As fenliu writes it now (src/ingest/dispatcher.ts): one alert.received holding the route. */
function receivedNew(i: number, route = { ruleId: 'wage', targets: ['p'] }): AuditEvent[] {
  return [{ type: 'alert.received', at: at(0), alertId: `A-${i}`, sourceId: 'hs-110', data: { alert: { summary: `欠薪纠纷 ${i}` }, bodyHash: 'cd'.repeat(32), idempotencyKey: `hs-110:${i}`, ...route, deliveryIds: route.targets.map((p) => `D-${i}.${p}`) } }];
}

/** As fenliu wrote an attempt before: three events. */
function oldFormat(i: number): AuditEvent[] {
  const ids = { alertId: `A-${i}`, deliveryId: `D-${i}`, platformId: 'p' };
  return [
    ...receivedOld(i),
    { type: 'delivery.translated', at: at(2), ...ids, data: { adapter: 'webhook', adapterVersion: '1.0.0', sha256: 'ab'.repeat(32), body: body(i) } },
    { type: 'delivery.attempt', at: at(2), ...ids, data: { n: 1, at: at(2), durationMs: 5, outcome: 'delivered', request, status: 201, response: '{"id":"T"}' } },
    { type: 'delivery.state', at: at(3), ...ids, data: { from: 'sending', to: 'delivered', source: 'engine', remoteTicketId: 'T' } },
  ];
}

/** As fenliu writes it now: one event per attempt; the first carries the body, a retry does not. */
function newFormat(i: number): AuditEvent[] {
  const ids = { alertId: `A-${i}`, deliveryId: `D-${i}`, platformId: 'p' };
  return [
    ...receivedNew(i),
    { type: 'delivery.attempt', at: at(2), ...ids, data: { n: 1, at: at(2), durationMs: 5, outcome: 'retry', request, status: 503, response: 'busy', errorClass: 'http-5xx', adapter: 'webhook', adapterVersion: '1.0.0', sha256: 'ab'.repeat(32), body: body(i), from: 'sending', to: 'queued', source: 'engine' } },
    { type: 'delivery.attempt', at: at(3), ...ids, data: { n: 2, at: at(3), durationMs: 5, outcome: 'delivered', request, status: 201, response: '{"id":"T"}', from: 'sending', to: 'delivered', source: 'engine', remoteTicketId: 'T' } },
    // A follow-up carries its own body, but is not what was sent the first time.
    { type: 'delivery.attempt', at: at(4), ...ids, data: { n: 1, kind: 'update', at: at(4), durationMs: 5, outcome: 'delivered', status: 200, body: '{"update":true}' } },
  ];
}

t.test('old and new attempt events archive, verify, read back and replay alike', async (t) => {
  const prefix = 'mix';
  const dir = join(root, 'mix');
  const m = redis.multi();
  for (const ev of [...oldFormat(1), ...newFormat(2)]) addAudit(m, prefix, ev);
  await m.exec();
  t.equal(await new AuditArchiver({ redis, prefix, dir, index: { add: (l) => openAuditIndex(dir).add(l) } }).flushOnce(), 9);
  const v = await verifyAuditDir(dir);
  t.ok(v.ok, `verifies: ${JSON.stringify(v.error)}`);

  const logged = await collectAlerts(dir, {});
  t.same(logged.map((a) => [a.alertId, a.routed]), [['A-1', { ruleId: 'wage', targets: ['p'] }], ['A-2', { ruleId: 'wage', targets: ['p'] }]], 'the route: from alert.routed (old) and from alert.received (new)');
  const sent = new Map(logged.map((a) => [a.alertId, a.sent.get(`D-${a.alertId.slice(2)}`)]));
  const want = (i: number) => ({ platformId: 'p', adapter: 'webhook', adapterVersion: '1.0.0', sha256: 'ab'.repeat(32), body: body(i) });
  t.match(sent.get('A-1'), want(1), 'old log: what delivery.translated recorded');
  t.match(sent.get('A-2'), want(2), 'new log: what the first delivery.attempt recorded');
  t.equal(sent.get('A-2')?.at, at(2), 'the first attempt, not the retry or the follow-up');

  const tl = await readAlertTimeline({ redis, prefix, dir, alertId: 'A-2' });
  const attempts = tl.filter((x) => x.event.type === 'delivery.attempt').map((x) => x.event.data!);
  t.equal(attempts.length, 3);
  t.match(attempts[0], { body: body(2), from: 'sending', to: 'queued' }, 'the body is restored for readers');
  t.notOk('body' in attempts[1], 'the retry has no body');
  t.match(attempts[1], { to: 'delivered', remoteTicketId: 'T' });
});

t.test('replay takes the route from alert.received (new logs) and from alert.routed (old logs), interleaved', async (t) => {
  const prefix = 'route';
  const dir = join(root, 'route');
  const oldRoute = { ruleId: 'wage', targets: ['p', 'q'] };
  const newRoute = { ruleId: 'consumer', targets: ['q'] };
  // The old alert's alert.routed arrives after the new alert's events: the stream interleaves alerts.
  const [oldReceived, oldRouted] = receivedOld(1, oldRoute);
  const repeat: AuditEvent[] = [
    // A repeat call (no deliveries): alert.received without a route, and its alert.repeat.
    { type: 'alert.received', at: at(5), alertId: 'A-3', sourceId: 'hs-110', data: { alert: { summary: '又打来了' }, bodyHash: 'ef'.repeat(32), idempotencyKey: 'hs-110:3' } },
    { type: 'alert.repeat', at: at(5), alertId: 'A-3', sourceId: 'hs-110', data: { repeatOf: 'A-2', ruleId: 'consumer', matchedBy: 'phone+family', on: 'consumer', crossSource: false } },
  ];
  const m = redis.multi();
  for (const ev of [oldReceived, ...receivedNew(2, newRoute), oldRouted, ...repeat]) addAudit(m, prefix, ev);
  await m.exec();
  t.equal(await new AuditArchiver({ redis, prefix, dir, index: { add: (l) => openAuditIndex(dir).add(l) } }).flushOnce(), 5);
  const v = await verifyAuditDir(dir);
  t.ok(v.ok, `verifies: ${JSON.stringify(v.error)}`);
  const routes = Object.fromEntries((await collectAlerts(dir, {})).map((a) => [a.alertId, a.routed]));
  t.same(routes['A-1'], oldRoute, 'old log: the route from the separate alert.routed');
  t.same(routes['A-2'], newRoute, 'new log: the route from alert.received');
  t.ok('A-3' in routes, 'the repeat call is replayed');
  t.equal(routes['A-3'], undefined, 'a repeat call has no route (none on its alert.received, alert.repeat is not one)');
  // Both forms read back on the timeline with the route members (the console and the API show the events as stored).
  const tlOld = await readAlertTimeline({ redis, prefix, dir, alertId: 'A-1' });
  t.same(tlOld.map((x) => x.event.type), ['alert.received', 'alert.routed']);
  t.match(tlOld[1].event.data, oldRoute);
  const tlNew = await readAlertTimeline({ redis, prefix, dir, alertId: 'A-2' });
  t.same(tlNew.map((x) => x.event.type), ['alert.received']);
  t.match(tlNew[0].event.data, { ...newRoute, deliveryIds: ['D-2.q'], alert: { summary: '欠薪纠纷 2' } }, 'the new alert.received: route and restored alert body');
});
