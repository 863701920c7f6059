import t from 'tap';
import { spawnSync } from 'node:child_process';
import { cp, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { AuditArchiver } from '../src/audit/archiver.js';
import { auditVerifyCommand } from '../src/audit/cli.js';
import { addAudit, auditStreamKey, type AuditEvent } from '../src/audit/events.js';
import { listSegments, parseRecord, readManifest } from '../src/audit/format.js';
import { verifyAuditDir } from '../src/audit/verify.js';
import { redisAndDir } from './helpers/audit.js';

const { server: redisServer, redis, dir: root } = await redisAndDir(t, 'fenliu-audit-');

let n = 0;
const fresh = () => ({ prefix: `t${++n}`, dir: join(root, `d${n}`) });

function ev(i: number, extra: Partial<AuditEvent> = {}): AuditEvent {
  return {
    type: 'alert.received',
    at: new Date(Date.UTC(2024, 0, 1, 0, 0, i)).toISOString(),
    alertId: `A-${i}`,
    sourceId: 'huangshi-110',
    data: { alert: { summary: `欠薪纠纷 ${i}`, caller: { name: '张三', phone: '13800000000' } } },
    ...extra,
  };
}

/** Waits until an archiver has written `total` records (event-driven, through the afterFsync hook). */
function progress() {
  let seen = 0;
  const waiters: { n: number; resolve: () => void }[] = [];
  return {
    hook: (info: { lastSeq: number }) => {
      seen = Math.max(seen, info.lastSeq);
      for (const w of waiters.splice(0)) if (seen >= w.n) w.resolve();
      else waiters.push(w);
    },
    until: (target: number) => (seen >= target ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n: target, resolve }))),
  };
}

async function allRecords(dir: string) {
  const out = [];
  for (const s of await listSegments(dir)) {
    const text = await readFile(join(dir, s), 'utf8');
    for (const l of text.split('\n').filter(Boolean)) out.push(parseRecord(l));
  }
  return out;
}

/** A directory with several closed segments and an open one. */
async function buildDir(count = 40): Promise<string> {
  const { prefix, dir } = fresh();
  for (let i = 0; i < count; i++) {
    const m = redis.multi();
    addAudit(m, prefix, ev(i));
    await m.exec();
  }
  const a = new AuditArchiver({ redis, prefix, dir, segmentMaxBytes: 2_500, batchSize: 7 });
  t.equal(await a.flushOnce(), count);
  return dir;
}

t.test('concurrent producers are archived in order with a valid chain', async (t) => {
  const { prefix, dir } = fresh();
  const p = progress();
  const archiver = new AuditArchiver({ redis, prefix, dir, batchSize: 25, segmentMaxBytes: 20_000, hooks: { afterFsync: p.hook } });
  await archiver.start();
  const producers = 5;
  const per = 40;
  const conns = Array.from({ length: producers }, () => new Redis(redisServer.url));
  await Promise.all(
    conns.map(async (c, k) => {
      for (let i = 0; i < per; i++) {
        const m = c.multi();
        m.set(`${prefix}:state:${k}`, String(i)); // the state change the event records
        addAudit(m, prefix, ev(i, { sourceId: `p${k}`, data: { i, k, body: { n: i } } }));
        await m.exec();
      }
    }),
  );
  await p.until(producers * per);
  await archiver.stop();
  await Promise.all(conns.map((c) => c.quit()));

  const recs = await allRecords(dir);
  t.equal(recs.length, producers * per);
  t.same(recs.map((r) => r.seq), recs.map((_, i) => i + 1), 'seq 1..N without gaps');
  for (let k = 0; k < producers; k++) {
    const mine = recs.filter((r) => r.event.sourceId === `p${k}`).map((r) => (r.event.data as { i: number }).i);
    t.same(mine, [...Array(per).keys()], `producer ${k} in its own order`);
  }
  t.equal(await redis.xlen(auditStreamKey(prefix)), 0, 'stream trimmed after archiving');
  const res = await verifyAuditDir(dir);
  t.ok(res.ok, JSON.stringify(res.error));
  t.equal(res.records, producers * per);
  t.ok(res.segments > 1, 'rolled by size');
  const { entries } = await readManifest(dir);
  t.equal(entries.length, res.segments - 1, 'every closed segment has a manifest line');
});

t.test('segments roll by size and by UTC day', async (t) => {
  const { prefix, dir } = fresh();
  const key = auditStreamKey(prefix);
  // explicit stream ids on two different days (1970-01-01 and 1970-01-02)
  for (let i = 1; i <= 5; i++) await redis.xadd(key, `${1000 + i}-0`, 'e', JSON.stringify(ev(i)));
  for (let i = 1; i <= 5; i++) await redis.xadd(key, `${86_400_000 + i}-0`, 'e', JSON.stringify(ev(i)));
  const a = new AuditArchiver({ redis, prefix, dir, segmentMaxBytes: 1_200 });
  t.equal(await a.flushOnce(), 10);
  const segs = await listSegments(dir);
  t.ok(segs.some((s) => s.startsWith('audit-19700101-')));
  t.ok(segs.some((s) => s.startsWith('audit-19700102-')));
  for (const s of segs) {
    const text = await readFile(join(dir, s), 'utf8');
    const lines = text.split('\n').filter(Boolean);
    t.ok(Buffer.byteLength(text) <= 1_200 || lines.length === 1, `${s} within the size limit`);
    const days = new Set(lines.map((l) => new Date(Number(parseRecord(l).streamId.split('-')[0])).toISOString().slice(0, 10)));
    t.equal(days.size, 1, `${s} holds one day`);
  }
  t.ok((await verifyAuditDir(dir)).ok);
});

t.test('tampering is detected and located', async (t) => {
  const base = await buildDir(40);
  const segs = await listSegments(base);
  t.ok(segs.length >= 4, `several segments (${segs.length})`);
  t.ok((await verifyAuditDir(base)).ok, 'the untouched log verifies');
  const seg = segs[1]; // a closed segment in the middle

  async function tamper(name: string, fn: (dir: string) => Promise<void>) {
    const dir = join(root, `tamper-${name}`);
    await cp(base, dir, { recursive: true });
    await fn(dir);
    return verifyAuditDir(dir);
  }
  const editLines = (dir: string, f: string, fn: (lines: string[]) => string[]) =>
    readFile(join(dir, f), 'utf8').then((txt) => writeFile(join(dir, f), fn(txt.split('\n').slice(0, -1)).join('\n') + '\n'));
  const seqAt = async (f: string, line: number) => parseRecord((await readFile(join(base, f), 'utf8')).split('\n')[line - 1]).seq;

  let r = await tamper('byte-event', (d) =>
    editLines(d, seg, (ls) => ((ls[1] = ls[1].replace('huangshi', 'huangshj')), ls)),
  );
  t.notOk(r.ok);
  t.match(r.error, { file: seg, line: 2, seq: await seqAt(seg, 2) }, 'one byte in an event: that line');

  r = await tamper('byte-body', (d) => editLines(d, seg, (ls) => ((ls[1] = ls[1].replace('13800000000', '13800000001')), ls)));
  t.match(r.error, { file: seg, line: 2, message: /body/ }, 'one byte in a body: that line');

  r = await tamper('raw-byte', async (d) => {
    const b = await readFile(join(d, seg));
    const i = b.indexOf('"type"', b.indexOf('\n') + 1) + 3; // inside line 2
    b[i] = b[i] ^ 1;
    await writeFile(join(d, seg), b);
  });
  t.match(r.error, { file: seg, line: 2 }, 'a flipped bit: that line');

  r = await tamper('delete-line', (d) => editLines(d, seg, (ls) => (ls.splice(2, 1), ls)));
  t.match(r.error, { file: seg, line: 3, message: /gap/ }, 'deleted line: where it was');

  r = await tamper('swap-lines', (d) => editLines(d, seg, (ls) => ([ls[1], ls[2]] = [ls[2], ls[1]], ls)));
  t.match(r.error, { file: seg, line: 2, message: /out of order/ }, 'swapped lines: the first of them');

  r = await tamper('drop-segment', (d) => unlink(join(d, seg)));
  t.match(r.error, { file: seg, line: 0, message: /missing/ }, 'dropped segment');

  r = await tamper('drop-segment-and-manifest-line', async (d) => {
    await unlink(join(d, seg));
    const m = (await readFile(join(d, 'manifest.jsonl'), 'utf8')).split('\n').filter((l) => !l.includes(seg));
    await writeFile(join(d, 'manifest.jsonl'), m.join('\n'));
  });
  t.match(r.error, { file: 'manifest.jsonl', message: /manifest/ }, 'dropped segment and its manifest line: the manifest chain');

  r = await tamper('truncate-closed', async (d) => {
    const b = await readFile(join(d, seg));
    await writeFile(join(d, seg), b.subarray(0, b.length - 20));
  });
  const segLines = (await readFile(join(base, seg), 'utf8')).split('\n').length - 1;
  t.match(r.error, { file: seg, line: segLines, message: /truncated/ }, 'truncated closed segment: its last line');

  const last = segs[segs.length - 1];
  r = await tamper('truncate-open', async (d) => {
    const b = await readFile(join(d, last));
    await writeFile(join(d, last), b.subarray(0, b.length - 1)); // only the final newline
  });
  const lastLines = (await readFile(join(base, last), 'utf8')).split('\n').length - 1;
  t.match(r.error, { file: last, line: lastLines, message: /truncated/ }, 'truncated open segment: its last line');

  r = await tamper('last-line-closed', (d) => editLines(d, seg, (ls) => ((ls[ls.length - 1] = ls[ls.length - 1].replace('A-', 'B-')), ls)));
  t.match(r.error, { file: seg, line: segLines }, 'altered last record of a closed segment');

  // the CLI prints the place and exits 1
  const out: string[] = [];
  const io = { out: (s: string) => out.push(s), err: (s: string) => out.push(s) };
  t.equal(await auditVerifyCommand([join(root, 'tamper-swap-lines')], io), 1);
  t.match(out.join('\n'), new RegExp(`file: ${seg}[\\s\\S]*line: 2[\\s\\S]*seq:`));
  t.equal(await auditVerifyCommand([base], { out: () => undefined, err: () => undefined }), 0);
  t.equal(await auditVerifyCommand([], { out: () => undefined, err: () => undefined }), 2);
});

const jq = spawnSync('jq', ['--version']).status === 0 && spawnSync('sha256sum', ['--version']).status === 0;
t.test('docs/audit.md shell verification (sha256sum + jq) agrees', { skip: jq ? false : 'jq or sha256sum missing' }, async (t) => {
  const doc = await readFile(new URL('../docs/audit.md', import.meta.url), 'utf8');
  const m = /```sh verify\n([\s\S]*?)```/.exec(doc);
  t.ok(m, 'docs/audit.md has a ```sh verify block');
  const script = m![1];
  const base = await buildDir(12);
  const ok = spawnSync('bash', ['-c', script], { cwd: base, encoding: 'utf8' });
  t.equal(ok.status, 0, ok.stdout + ok.stderr);
  const bad = join(root, 'shell-bad');
  await cp(base, bad, { recursive: true });
  const segs = await listSegments(bad);
  const txt = await readFile(join(bad, segs[0]), 'utf8');
  await writeFile(join(bad, segs[0]), txt.replace('A-1"', 'A-9"'));
  const res = spawnSync('bash', ['-c', script], { cwd: bad, encoding: 'utf8' });
  t.not(res.status, 0, 'the script fails on a tampered log');
});

t.test('a default batch (longer than one turn of the record loop, multi-byte text) rolls segments inside it and verifies', async (t) => {
  const { prefix, dir } = fresh();
  for (let i = 0; i < 1_300; i += 100) {
    const p = redis.pipeline();
    for (let k = i; k < i + 100; k++) addAudit(p, prefix, ev(k));
    await p.exec();
  }
  const a = new AuditArchiver({ redis, prefix, dir, segmentMaxBytes: 200_000, merkle: true });
  t.equal(await a.flushOnce(), 1_300);
  const recs = await allRecords(dir);
  t.same(recs.map((r) => r.seq), Array.from({ length: 1_300 }, (_, i) => i + 1));
  t.ok((await listSegments(dir)).length >= 3, 'rolled by size inside one batch');
  const v = await verifyAuditDir(dir);
  t.ok(v.ok, JSON.stringify(v.error ?? null));
});
