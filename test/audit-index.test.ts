import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFile, rm, mkdtemp, writeFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { AuditArchiver } from '../src/audit/archiver.js';
import { compactSegments } from '../src/audit/compact.js';
import { addAudit, type AuditEvent } from '../src/audit/events.js';
import { AuditIndex, INDEX_FILE, closeAuditIndexes, eventsOfAlert, openAuditIndex } from '../src/audit/event-index.js';
import { listSegments } from '../src/audit/format.js';
import { queryAudit, readAlertTimeline } from '../src/audit/query.js';
import { collectAlerts } from '../src/audit/replay.js';
import { generateKey, parseSigner } from '../src/audit/checkpoint.js';
import { refreshCheckpoint } from '../src/audit/checkpoint-log.js';
import { findAlertRecords, proveAlert, verifyAlertProof } from '../src/audit/proof.js';
import { pruneSegments } from '../src/audit/prune.js';
import { startRedis } from './helpers/redis.js';

const server = await startRedis();
const redis = new Redis(server.url);
const root = await mkdtemp(join(tmpdir(), 'fenliu-audit-index-'));
t.teardown(async () => {
  closeAuditIndexes();
  await redis.quit();
  await server.stop();
  await rm(root, { recursive: true, force: true });
});
let n = 0;
const fresh = () => ({ prefix: `x${++n}`, dir: join(root, `d${n}`) });

function events(i: number, day: number): AuditEvent[] {
  const at = (s: number) => new Date(Date.UTC(2024, 0, day, 0, 0, s)).toISOString();
  const platformId = i % 2 ? 'p12345' : 'grid';
  return [
    { type: 'alert.received', at: at(0), alertId: `A-${i}`, sourceId: i % 3 ? 'hs-110' : 'wh-110', data: { alert: { summary: `欠薪纠纷 ${i}`, caller: { name: '张三' } } } },
    { type: 'alert.routed', at: at(1), alertId: `A-${i}`, sourceId: 'hs-110', data: { ruleId: 'wage', targets: [platformId] } },
    { type: 'delivery.translated', at: at(2), alertId: `A-${i}`, deliveryId: `D-${i}`, platformId, data: { adapter: 'hotline-12345', adapterVersion: '1.0.0', sha256: 'x', body: `{"工单":${i}}` } },
    { type: 'delivery.state', at: at(3), alertId: `A-${i}`, deliveryId: `D-${i}`, platformId, data: { from: 'sending', to: 'delivered', source: 'engine' } },
  ];
}

async function produce(prefix: string, from: number, to: number, day = 1) {
  for (let i = from; i < to; i++) {
    const m = redis.multi();
    for (const e of events(i, day)) addAudit(m, prefix, e);
    await m.exec();
  }
}

async function fileLines(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const s of await listSegments(dir)) out.push(...(await readFile(join(dir, s), 'utf8')).split('\n').filter(Boolean));
  return out;
}

t.test('the archiver keeps the index; lookups read the exact lines back', async (t) => {
  const { prefix, dir } = fresh();
  await produce(prefix, 0, 30);
  const a = new AuditArchiver({ redis, prefix, dir, segmentMaxBytes: 4_000, batchSize: 9, index: { add: (l) => openAuditIndex(dir).add(l) } });
  t.equal(await a.flushOnce(), 120);
  t.ok((await listSegments(dir)).length > 3, 'several segments');
  t.equal(openAuditIndex(dir).count(), 120, 'every record indexed by the hook');

  const lines = await fileLines(dir);
  const recs = await eventsOfAlert(dir, 'A-7');
  t.same(recs.map((r) => r.record.event.type), ['alert.received', 'alert.routed', 'delivery.translated', 'delivery.state']);
  for (const r of recs) t.equal(r.line, lines[r.seq - 1], `seq ${r.seq}: the line as on disk`);
  t.same(await eventsOfAlert(dir, 'nope'), []);
});

t.test('queries go through the index: filters, type prefix, time, cursor, stream tail', async (t) => {
  const { prefix, dir } = fresh();
  await produce(prefix, 0, 20);
  const a = new AuditArchiver({ redis, prefix, dir, segmentMaxBytes: 5_000, index: { add: (l) => openAuditIndex(dir).add(l) } });
  await a.flushOnce();
  await produce(prefix, 20, 22); // still only in the stream

  const tl = await readAlertTimeline({ redis, prefix, dir, alertId: 'A-21' });
  t.same(tl.map((i) => i.archived), [false, false, false, false], 'stream-only events are in the timeline');
  const tl3 = await readAlertTimeline({ redis, prefix, dir, alertId: 'A-3' });
  t.equal(tl3.length, 4);
  t.ok(tl3.every((i) => i.archived && i.seq! > 0));
  t.same((tl3[0].event.data as { alert: { summary: string } }).alert.summary, '欠薪纠纷 3', 'bodies restored');

  const grid = await queryAudit({ redis, prefix, dir, platform: 'grid', type: 'delivery.*', limit: 1000 });
  t.equal(grid.items.length, 11 * 2, 'delivery.* of platform grid (even alerts 0..20)');
  t.ok(grid.items.every((i) => i.event.platformId === 'grid' && i.event.type.startsWith('delivery.')));
  const wh = await queryAudit({ redis, prefix, dir, source: 'wh-110', type: 'alert.received', limit: 1000 });
  t.same(wh.items.map((i) => i.event.alertId), ['A-0', 'A-3', 'A-6', 'A-9', 'A-12', 'A-15', 'A-18', 'A-21']);
  const timed = await queryAudit({ redis, prefix, dir, from: '2024-01-01T00:00:02Z', to: '2024-01-01T00:00:03Z', limit: 1000 });
  t.equal(timed.items.length, 22, 'one event per alert in that second');

  // paging across archived and stream-only items, each seen once
  const seen: string[] = [];
  let cursor: string | null = null;
  do {
    const page: Awaited<ReturnType<typeof queryAudit>> = await queryAudit({ redis, prefix, dir, type: 'alert.received', limit: 5, cursor });
    seen.push(...page.items.map((i) => i.event.alertId!));
    cursor = page.nextCursor;
  } while (cursor);
  t.same(seen, Array.from({ length: 22 }, (_, i) => `A-${i}`));

  const dels = await queryAudit({ redis, prefix, dir, deliveryId: 'D-4', limit: 10 } as Parameters<typeof queryAudit>[0]);
  t.equal(dels.items.length, 2);
});

t.test('a missing, stale, corrupt or compacted index is rebuilt or caught up from the segments', async (t) => {
  const { prefix, dir } = fresh();
  await produce(prefix, 0, 16, 1);
  await produce(prefix, 16, 24, 20);
  // archived WITHOUT the index hook: the index learns everything from the files
  const a = new AuditArchiver({ redis, prefix, dir, segmentMaxBytes: 3_000 });
  await a.flushOnce();
  const want = (await fileLines(dir)).length;
  t.equal((await eventsOfAlert(dir, 'A-5')).length, 4, 'built on first use');
  t.equal(openAuditIndex(dir).count(), want);

  // stale: more records archived by another writer
  await produce(prefix, 24, 26, 20);
  await a.flushOnce();
  t.equal((await eventsOfAlert(dir, 'A-25')).length, 4, 'caught up with new lines');

  // compaction rewrites closed segments (new offsets); lookups still return the right records
  const before = (await eventsOfAlert(dir, 'A-2')).map((r) => r.offset);
  const res = await compactSegments(dir, { olderThan: new Date(Date.UTC(2024, 0, 10)) });
  t.ok(res.redacted > 0);
  const after = await eventsOfAlert(dir, 'A-2');
  t.not(after.map((r) => r.offset).join(), before.join(), 'offsets moved');
  t.same(after[0].record.bodies['data.alert'], { redacted: true, sha256: (after[0].record.bodies['data.alert'] as { sha256: string }).sha256 });
  t.equal(after[0].record.event.alertId, 'A-2');

  // missing: deleted under a running process and opened anew
  closeAuditIndexes();
  await rm(join(dir, INDEX_FILE));
  t.equal((await readAlertTimeline({ redis, prefix, dir, alertId: 'A-20' })).length, 4, 'rebuilt when missing');

  // corrupt: garbage in the file
  closeAuditIndexes();
  for (const f of [INDEX_FILE, `${INDEX_FILE}-wal`, `${INDEX_FILE}-shm`]) await rm(join(dir, f), { force: true });
  await writeFile(join(dir, INDEX_FILE), 'this is not a database'.repeat(200));
  t.equal((await eventsOfAlert(dir, 'A-1')).length, 4, 'rebuilt when corrupt');
  t.equal(openAuditIndex(dir).count(), want + 8);
});

t.test('replay selection reads the selected alerts through the index', async (t) => {
  const { prefix, dir } = fresh();
  await produce(prefix, 0, 10, 1);
  await produce(prefix, 10, 14, 3);
  await new AuditArchiver({ redis, prefix, dir }).flushOnce();
  const sel = await collectAlerts(dir, { from: Date.UTC(2024, 0, 2), to: Date.UTC(2024, 0, 4) });
  t.same(sel.map((a) => a.alertId), ['A-10', 'A-11', 'A-12', 'A-13']);
  t.same(sel[1].routed, { ruleId: 'wage', targets: ['p12345'] });
  t.equal(sel[1].sent.get('D-11')?.platformId, 'p12345');
  const wh = await collectAlerts(dir, { source: 'wh-110', platform: 'grid' });
  t.same(wh.map((a) => a.alertId), ['A-0', 'A-3', 'A-6', 'A-9', 'A-12']);
  t.same(wh.map((a) => a.sent.size), [1, 0, 1, 0, 1], 'platform filter keeps grid deliveries only');
});

t.test('after pruning the index points at no deleted segment; proofs use it', async (t) => {
  const { prefix, dir } = fresh();
  const a = new AuditArchiver({ redis, prefix, dir, segmentMaxBytes: 2_000, batchSize: 50, index: { add: (l) => openAuditIndex(dir).add(l) } });
  await produce(prefix, 0, 10);
  await a.flushOnce();
  // stream ids carry the time: everything archived so far is older than `cut`
  await new Promise((r) => setTimeout(r, 5));
  const cut = new Date();
  await new Promise((r) => setTimeout(r, 5));
  await produce(prefix, 10, 20);
  await a.flushOnce();
  const key = generateKey('index.example/audit');
  await refreshCheckpoint(dir, { signer: parseSigner(key.privateKey) });
  t.equal((await findAlertRecords(dir, 'A-0')).length, 4, 'proofs find records through the index');
  const pruned = await pruneSegments(dir, { before: cut });
  t.ok(pruned.length >= 2, `${pruned.length} segments pruned`);
  t.same(await eventsOfAlert(dir, 'A-0'), [], 'a pruned alert has no records (no stale row, no error)');
  t.same(await readAlertTimeline({ redis, prefix, dir, alertId: 'A-0' }), [], 'its timeline is empty');
  const q = await queryAudit({ redis, prefix, dir, limit: 1000 });
  t.ok(q.items.length > 0 && q.items.length < 80, 'queries answer from the kept segments');
  t.equal(openAuditIndex(dir).count(), q.items.length, 'the rows of the pruned segments are gone');
  const proof = await proveAlert(dir, 'A-19');
  t.equal(proof.events.length, 4);
  t.ok(verifyAlertProof(proof, key.vkey).ok, 'a retained alert\'s proof verifies');
  t.same((await proveAlert(dir, 'A-0')).events, [], 'a pruned alert\'s proof has no events');
});

t.test('fenliu audit index DIR (compiled CLI) rebuilds from the segments', async (t) => {
  const { prefix, dir } = fresh();
  await produce(prefix, 0, 12);
  await new AuditArchiver({ redis, prefix, dir, segmentMaxBytes: 3_000 }).flushOnce();
  await writeFile(join(dir, INDEX_FILE), 'junk');
  const cli = join(import.meta.dirname, '..', 'dist', 'src', 'cli.js');
  const r = spawnSync(process.execPath, [cli, 'audit', 'index', dir, '--json'], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.equal(JSON.parse(r.stdout).records, 48);
  t.ok((await stat(join(dir, INDEX_FILE))).size > 4096);
  const idx = AuditIndex.open(dir);
  t.equal(idx.count(), 48);
  idx.close();
  const bad = spawnSync(process.execPath, [cli, 'audit', 'index'], { encoding: 'utf8' });
  t.equal(bad.status, 2);
  t.match(bad.stderr, /missing argument\n\n *fenliu audit index DIR/);
});

t.test('a cursor (records after a stream id) is found without an index on stream ids, across pruned gaps', async (t) => {
  const { prefix, dir } = fresh();
  await produce(prefix, 0, 40);
  const a = new AuditArchiver({ redis, prefix, dir, segmentMaxBytes: 3_000, batchSize: 13, index: { add: (l) => openAuditIndex(dir).add(l) } });
  t.equal(await a.flushOnce(), 160);
  const idx = openAuditIndex(dir);
  const all = idx.find({}, 1_000);
  t.equal(all.length, 160);
  const firstAfter = (id: string) => idx.find({ afterStreamId: id }, 1)[0]?.seq ?? null;
  for (let i = 0; i < all.length; i++) t.equal(firstAfter(all[i].streamId), all[i + 1]?.seq ?? null, `after ${all[i].streamId}`);
  const [ms, n] = all[50].streamId.split('-').map(Number);
  t.equal(firstAfter(`${ms}-${n - 1}`), n > 0 ? 51 : firstAfter(`${ms}-${n - 1}`), 'an id between two records');
  t.equal(firstAfter('0-0'), 1, 'before everything');
  // rows of a segment gone (as after a prune): the search lands on the rows that are left
  (idx as unknown as { dropSegment(name: string): void }).dropSegment(all[0].segment);
  const left = idx.find({}, 1_000);
  t.ok(left.length < 160 && left[0].seq > 1, 'the first segment is out of the index');
  t.equal(firstAfter('0-0'), left[0].seq);
  for (let i = 0; i < left.length; i += 7) t.equal(firstAfter(left[i].streamId), left[i + 1]?.seq ?? null, `after ${left[i].streamId}`);
  t.equal(firstAfter(all[0].streamId), left[0].seq, 'a cursor inside the dropped rows');
  const names = (idx as unknown as { db: { prepare(s: string): { all(): { name: string }[] } } }).db.prepare(`SELECT name FROM sqlite_master WHERE type = 'index'`).all().map((r) => r.name);
  t.notOk(names.includes('events_sid'), 'no index on stream ids');
});
