import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { appendFile, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { AuditArchiver } from '../src/audit/archiver.js';
import { addAudit, auditStreamKey, type AuditEvent } from '../src/audit/events.js';
import { listSegments, parseRecord } from '../src/audit/format.js';
import { verifyAuditDir } from '../src/audit/verify.js';
import { redisAndDir } from './helpers/audit.js';

// ---- child mode: an archiver that announces its first fsync, then hangs until SIGKILLed ----
if (process.env.AUDIT_CHILD) {
  const [url, prefix, dir] = JSON.parse(process.env.AUDIT_CHILD) as string[];
  const redis = new Redis(url);
  const a = new AuditArchiver({
    redis, prefix, dir, batchSize: 20, lockTtlMs: 300, segmentMaxBytes: 3_000,
    hooks: { afterFsync: () => { process.stdout.write('fsynced\n'); return new Promise<void>(() => undefined); } },
  });
  await a.start();
} else {
  await main();
}

async function main() {
  const { server, redis, dir: root } = await redisAndDir(t, 'fenliu-audit-resume-');
  let n = 0;
  const fresh = () => ({ prefix: `r${++n}`, dir: join(root, `d${n}`) });
  const ev = (i: number): AuditEvent => ({ type: 'delivery.attempt', at: new Date(Date.UTC(2024, 0, 1, 0, 0, i)).toISOString(), deliveryId: `D-${i}`, data: { i, response: { ok: true, i } } });
  async function push(prefix: string, from: number, to: number) {
    const m = redis.multi();
    for (let i = from; i < to; i++) addAudit(m, prefix, ev(i));
    await m.exec();
  }
  async function records(dir: string) {
    const out = [];
    for (const s of await listSegments(dir)) for (const l of (await readFile(join(dir, s), 'utf8')).split('\n').filter(Boolean)) out.push(parseRecord(l));
    return out;
  }
  async function assertComplete(t: Test, dir: string, total: number) {
    const recs = await records(dir);
    t.equal(recs.length, total, 'every event once');
    t.same(recs.map((r) => (r.event.data as { i: number }).i), [...Array(total).keys()], 'in order, no gaps, no duplicates');
    t.equal(new Set(recs.map((r) => r.streamId)).size, total, 'stream ids unique');
    const v = await verifyAuditDir(dir);
    t.ok(v.ok, JSON.stringify(v.error));
  }
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

  t.test('crash between fsync and trim: resume without duplicates', async (t) => {
    const { prefix, dir } = fresh();
    await push(prefix, 0, 30);
    const crashing = new AuditArchiver({ redis, prefix, dir, batchSize: 10, hooks: { afterFsync: () => { throw new Error('crash'); } } });
    await t.rejects(crashing.flushOnce(), /crash/);
    t.equal(await redis.xlen(auditStreamKey(prefix)), 30, 'nothing trimmed');
    await push(prefix, 30, 45);
    const b = new AuditArchiver({ redis, prefix, dir, batchSize: 10 });
    t.equal(await b.flushOnce(), 35, 'only the 35 not yet on disk');
    t.equal(await redis.xlen(auditStreamKey(prefix)), 0);
    await assertComplete(t, dir, 45);
  });

  t.test('archiver process SIGKILLed mid-way (plus a torn line): resume without gaps', async (t) => {
    const { prefix, dir } = fresh();
    await push(prefix, 0, 200);
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
      env: { ...process.env, AUDIT_CHILD: JSON.stringify([server.url, prefix, dir]) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => d.toString().includes('fsynced') && resolve());
      child.once('exit', (c) => reject(new Error(`child exited early (${c})`)));
    });
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    t.equal(await redis.xlen(auditStreamKey(prefix)), 200, 'the child never trimmed');
    // simulate a kill in the middle of a write as well
    const segs = await listSegments(dir);
    await appendFile(join(dir, segs[segs.length - 1]), '{"seq":21,"streamId":"1-0","pre');
    await push(prefix, 200, 250);
    const p = progress();
    const b = new AuditArchiver({ redis, prefix, dir, batchSize: 40, lockTtlMs: 300, segmentMaxBytes: 3_000, hooks: { afterFsync: p.hook } });
    await b.start(); // waits for the dead child's lock to expire, then takes over
    await p.until(250);
    await b.stop();
    await assertComplete(t, dir, 250);
    t.equal(await redis.xlen(auditStreamKey(prefix)), 0);
  });

  t.test('two archivers at once: one writer, no duplicates, takeover on stop', async (t) => {
    const { prefix, dir } = fresh();
    const p = progress();
    const opts = { redis, prefix, dir, batchSize: 15, lockTtlMs: 1_000, segmentMaxBytes: 4_000, hooks: { afterFsync: p.hook } };
    const a = new AuditArchiver(opts);
    const b = new AuditArchiver(opts);
    await Promise.all([a.start(), b.start()]);
    for (let i = 0; i < 150; i += 10) await push(prefix, i, i + 10);
    // concurrent one-shot flushes from both, while the loops run
    const flushed = await Promise.all([a.flushOnce(), b.flushOnce(), a.flushOnce(), b.flushOnce()]);
    t.ok(flushed.filter((x) => x > 0).length <= 2, 'flushes never write the same entries twice');
    await p.until(150);
    await a.stop(); // if a held the lock, b takes over
    for (let i = 150; i < 300; i += 10) await push(prefix, i, i + 10);
    await p.until(300);
    await b.stop();
    await assertComplete(t, dir, 300);
  });

  t.test('files behind the recorded head: refuse to continue', async (t) => {
    const { prefix, dir } = fresh();
    await push(prefix, 0, 10);
    const a = new AuditArchiver({ redis, prefix, dir });
    await a.flushOnce();
    await rm(dir, { recursive: true });
    await push(prefix, 10, 12);
    const b = new AuditArchiver({ redis, prefix, dir });
    await t.rejects(b.flushOnce(), /lost or truncated/);
  });
}
