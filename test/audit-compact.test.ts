import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AuditArchiver } from '../src/audit/archiver.js';
import { auditCompactCommand } from '../src/audit/cli.js';
import { compactSegments } from '../src/audit/compact.js';
import { addAudit, appendAudit, type AuditEvent } from '../src/audit/events.js';
import { listSegments, parseRecord, readManifest, sha256Hex } from '../src/audit/format.js';
import { queryAudit, readAlertTimeline } from '../src/audit/query.js';
import { verifyAuditDir } from '../src/audit/verify.js';
import { redisAndDir } from './helpers/audit.js';

const { redis, dir: root } = await redisAndDir(t, 'fenliu-audit-compact-');
let n = 0;
const fresh = () => ({ prefix: `c${++n}`, dir: join(root, `d${n}`) });

const alert = (i: number) => ({ source: { system: 'hs-110', alertId: `A-${i}` }, caller: { name: '李四', phone: '139' + String(i).padStart(8, '0') } });
function events(i: number, day: number): AuditEvent[] {
  const at = (s: number) => new Date(Date.UTC(2024, 0, day, 0, 0, s)).toISOString();
  return [
    { type: 'alert.received', at: at(0), alertId: `A-${i}`, sourceId: 'hs-110', data: { alert: alert(i) } },
    { type: 'alert.routed', at: at(1), alertId: `A-${i}`, sourceId: 'hs-110', data: { ruleId: 'wage', targets: ['p12345'] } },
    { type: 'delivery.translated', at: at(2), alertId: `A-${i}`, deliveryId: `D-${i}`, platformId: 'p12345', data: { adapter: { id: 'hotline-12345', version: '1.0.0' }, sha256: 'x', body: { 工单: i } } },
    { type: 'delivery.attempt', at: at(3), alertId: `A-${i}`, deliveryId: `D-${i}`, platformId: 'p12345', data: { status: 200, durationMs: 12, response: { ticket: `T-${i}` } } },
  ];
}

async function build(alerts: number) {
  const { prefix, dir } = fresh();
  for (let i = 0; i < alerts; i++) {
    const m = redis.multi();
    for (const e of events(i, i < alerts / 2 ? 1 : 20)) addAudit(m, prefix, e);
    await m.exec();
  }
  const a = new AuditArchiver({ redis, prefix, dir, segmentMaxBytes: 3_000 });
  await a.flushOnce();
  return { prefix, dir };
}

t.test('compaction removes old bodies from closed segments; the chain still verifies', async (t) => {
  const { dir } = await build(12);
  const before = await readFile(join(dir, (await listSegments(dir))[0]), 'utf8');
  const firstBody = parseRecord(before.split('\n')[0]).bodies['data.alert'] as string;
  const res = await compactSegments(dir, { olderThan: new Date(Date.UTC(2024, 0, 10)) });
  t.ok(res.redacted > 0 && res.segments.length > 0, `redacted ${res.redacted} in ${res.segments.length} segments`);
  const v = await verifyAuditDir(dir);
  t.ok(v.ok, JSON.stringify(v.error));
  const segs = await listSegments(dir);
  const first = parseRecord((await readFile(join(dir, segs[0]), 'utf8')).split('\n')[0]);
  t.same(first.bodies['data.alert'], { redacted: true, sha256: sha256Hex(firstBody) }, 'the removed body keeps its hash');
  t.notOk((await readFile(join(dir, segs[0]), 'utf8')).includes('李四'), 'personal data gone');
  const last = await readFile(join(dir, segs[segs.length - 1]), 'utf8');
  t.ok(last.includes('李四'), 'newer records (and the open segment) keep their bodies');
  t.same(await compactSegments(dir, { olderThan: new Date(Date.UTC(2024, 0, 10)) }), { segments: [], redacted: 0 }, 'idempotent');
  const { entries } = await readManifest(dir);
  t.ok(entries.some((e) => e.type === 'compaction'));

  // a redaction marker with a wrong hash is detected
  const txt = await readFile(join(dir, segs[0]), 'utf8');
  await writeFile(join(dir, segs[0]), txt.replace(sha256Hex(firstBody), '0'.repeat(64)));
  const bad = await verifyAuditDir(dir);
  t.match(bad.error, { file: segs[0], line: 1 });
});

t.test('compaction of selected fields only, via the CLI', async (t) => {
  const { dir } = await build(6);
  const out: string[] = [];
  const io = { out: (s: string) => out.push(s), err: (s: string) => out.push(s) };
  t.equal(await auditCompactCommand([dir, '--older-than', '2024-06-01', '--fields', 'data.response', '--json'], io), 0);
  const res = JSON.parse(out[0]) as { redacted: number };
  t.ok(res.redacted > 0);
  const all = (await Promise.all((await listSegments(dir)).map((s) => readFile(join(dir, s), 'utf8')))).join('');
  t.ok(all.includes('李四'), 'alert bodies kept');
  const firstSeg = await readFile(join(dir, (await listSegments(dir))[0]), 'utf8');
  t.notOk(firstSeg.includes('"data.response":"'), 'response bodies removed from closed segments');
  t.ok(firstSeg.includes('"data.alert":"'), 'other bodies kept there');
  t.ok((await verifyAuditDir(dir)).ok);
  t.equal(await auditCompactCommand([dir], io), 2, 'usage error');
});

t.test('timeline and query read files and the stream tail', async (t) => {
  const { prefix, dir } = await build(8);
  // not yet archived
  await appendAudit(redis, prefix, { type: 'delivery.state', at: new Date(Date.UTC(2024, 0, 21)).toISOString(), alertId: 'A-3', deliveryId: 'D-3', platformId: 'p12345', data: { from: 'delivered', to: 'accepted', source: 'callback' } });
  const tl = await readAlertTimeline({ redis, prefix, dir, alertId: 'A-3' });
  t.same(tl.map((x) => x.event.type), ['alert.received', 'alert.routed', 'delivery.translated', 'delivery.attempt', 'delivery.state']);
  t.same(tl.map((x) => x.archived), [true, true, true, true, false]);
  t.same((tl[0].event.data as { alert: unknown }).alert, alert(3), 'bodies restored for readers');

  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const page: Awaited<ReturnType<typeof queryAudit>> = await queryAudit({ redis, prefix, dir, platform: 'p12345', cursor, limit: 5 });
    seen.push(...page.items.map((x) => `${x.event.type}:${x.event.deliveryId}`));
    cursor = page.nextCursor;
    pages++;
  } while (cursor);
  t.equal(seen.length, 8 * 2 + 1, 'all platform events');
  t.equal(new Set(seen).size, seen.length, 'no repeats across pages');
  t.ok(pages >= 4);
  const typed = await queryAudit({ redis, prefix, dir, type: 'delivery.*', from: '2024-01-20T00:00:00Z', limit: 1000 });
  t.ok(typed.items.every((x) => x.event.type.startsWith('delivery.') && x.event.at >= '2024-01-20'));
  t.equal(typed.items.length, 4 * 2 + 1);
  await t.rejects(queryAudit({ redis, prefix, dir, cursor: 'nope' }), /invalid cursor/);
});
