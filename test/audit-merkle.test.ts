import t from 'tap';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { AuditArchiver } from '../src/audit/archiver.js';
import { addAudit, type AuditEvent } from '../src/audit/events.js';
import { listSegments } from '../src/audit/format.js';
import { recordLeafHash, syncTree } from '../src/audit/merkle-log.js';
import { EMPTY_ROOT, consistencyProof, inclusionProof, leafHash, memoryReader, nodeHash, rootHash, verifyConsistency, verifyInclusion } from '../src/audit/merkle.js';
import { TileTree, tilePath } from '../src/audit/tiles.js';
import { startRedis } from './helpers/redis.js';

/** RFC 9162 MTH, written out directly (the reference the tiled code is checked against). */
function mth(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return createHash('sha256').digest();
  if (leaves.length === 1) return leaves[0];
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return nodeHash(mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

t.test('RFC 9162 hashing, inclusion and consistency proofs', async (t) => {
  t.equal(EMPTY_ROOT.toString('hex'), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  t.equal(leafHash('').toString('hex'), '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d');
  const leaves = Array.from({ length: 70 }, (_, i) => leafHash(`leaf ${i}`));
  const read = memoryReader(leaves);
  let checked = 0;
  for (let n = 1; n <= leaves.length; n++) {
    const root = await rootHash(read, n);
    t.ok(root.equals(mth(leaves.slice(0, n))), `root of ${n}`);
    for (let i = 0; i < n; i++) {
      const p = await inclusionProof(read, i, n);
      if (!verifyInclusion(i, n, leaves[i], p, root)) t.fail(`inclusion ${i} in ${n}`);
      if (p.length && verifyInclusion(i, n, leaves[(i + 1) % n], p, root) && n > 1) t.fail(`wrong leaf accepted ${i}/${n}`);
      checked++;
    }
    for (let m = 1; m <= n; m++) {
      const old = mth(leaves.slice(0, m));
      const p = await consistencyProof(read, m, n);
      if (!verifyConsistency(m, n, old, root, p)) t.fail(`consistency ${m} -> ${n}`);
      if (m < n && verifyConsistency(m, n, leafHash('other'), root, p)) t.fail(`a different old root accepted ${m} -> ${n}`);
      checked++;
    }
  }
  t.ok(checked > 4000, `${checked} proofs checked`);
});

t.test('tile paths follow C2SP tlog-tiles', async (t) => {
  t.equal(tilePath(0, 1234067), 'tile/0/x001/x234/067');
  t.equal(tilePath(0, 1234067, 8), 'tile/0/x001/x234/067.p/8');
  t.equal(tilePath(1, 0), 'tile/1/000');
  t.equal(tilePath(2, 1000), 'tile/2/x001/000');
});

const redisServer = await startRedis();
const redis = new Redis(redisServer.url);
const root = await mkdtemp(join(tmpdir(), 'fenliu-merkle-'));
t.teardown(async () => {
  await redis.quit();
  await redisServer.stop();
  await rm(root, { recursive: true, force: true });
});
let n = 0;
const fresh = () => ({ prefix: `m${++n}`, dir: join(root, `d${n}`) });

function ev(i: number): AuditEvent {
  return { type: 'alert.received', at: new Date(Date.UTC(2024, 0, 1, 0, 0, i)).toISOString(), alertId: `A-${i % 7}`, data: { alert: { summary: `欠薪 ${i}` } } };
}

async function write(prefix: string, from: number, count: number) {
  const m = redis.multi();
  for (let i = from; i < from + count; i++) addAudit(m, prefix, ev(i));
  await m.exec();
}

async function recordLeaves(dir: string): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (const s of await listSegments(dir)) for (const l of (await readFile(join(dir, s), 'utf8')).split('\n').filter(Boolean)) out.push(recordLeafHash(l));
  return out;
}

t.test('the archiver keeps the tree as tiles, incrementally', async (t) => {
  const { prefix, dir } = fresh();
  const a = new AuditArchiver({ redis, prefix, dir, batchSize: 97, segmentMaxBytes: 20_000 });
  await write(prefix, 0, 300);
  await a.flushOnce();
  await write(prefix, 300, 300);
  await a.flushOnce();
  const leaves = await recordLeaves(dir);
  t.equal(leaves.length, 600);
  const head = JSON.parse(await readFile(join(dir, 'tree.json'), 'utf8'));
  t.equal(head.size, 600);
  t.equal(head.root, mth(leaves).toString('base64'), 'root = RFC 9162 MTH of the records');
  t.equal((await readFile(join(dir, 'tile/0/000'))).length, 256 * 32, 'full tile 0');
  t.equal((await readFile(join(dir, 'tile/0/001'))).length, 256 * 32, 'full tile 1');
  // partial tiles stay until their tile is full (clients of an older checkpoint read them)
  t.equal(Math.max(...(await readdir(join(dir, 'tile/0/002.p'))).map(Number)), 88, 'widest partial tile: 600-512');
  t.equal(Math.max(...(await readdir(join(dir, 'tile/1/000.p'))).map(Number)), 2, 'level 1 holds the roots of the two full tiles');
  await t.rejects(readdir(join(dir, 'tile/0/000.p')), 'partials of a full tile are removed');
  t.ok((await readFile(join(dir, 'tile/1/000.p/2'))).subarray(0, 32).equals(mth(leaves.slice(0, 256))));
});

t.test('fenliu audit tree builds the tree of an existing log once', async (t) => {
  const { prefix, dir } = fresh();
  const a = new AuditArchiver({ redis, prefix, dir, merkle: false });
  await write(prefix, 0, 300);
  await a.flushOnce();
  await t.rejects(readFile(join(dir, 'tree.json')), 'no tree without merkle');
  const { tree, added } = await syncTree(dir);
  t.equal(added, 300);
  t.ok((await tree.root()).equals(mth(await recordLeaves(dir))));
  // the archiver continues that tree
  const b = new AuditArchiver({ redis, prefix, dir });
  await write(prefix, 300, 10);
  await b.flushOnce();
  t.equal((await TileTree.open(dir)).size, 310);
  t.ok((await (await TileTree.open(dir)).root()).equals(mth(await recordLeaves(dir))));
});

t.test('the archiver catches up after a crash between the segments and the tiles', async (t) => {
  const { prefix, dir } = fresh();
  const a = new AuditArchiver({ redis, prefix, dir });
  await write(prefix, 0, 50);
  await a.flushOnce();
  const saved = await readFile(join(dir, 'tree.json'));
  await write(prefix, 50, 20);
  await a.flushOnce();
  await writeFile(join(dir, 'tree.json'), saved); // tiles for 70 written, tree.json still at 50
  const b = new AuditArchiver({ redis, prefix, dir });
  await write(prefix, 70, 5);
  t.equal(await b.flushOnce(), 5);
  t.equal((await TileTree.open(dir)).size, 75);
});

t.test('the archiver refuses to extend a tree whose tiles do not match its records', async (t) => {
  await t.test('a corrupted tile', async (t) => {
    const { prefix, dir } = fresh();
    const a = new AuditArchiver({ redis, prefix, dir });
    await write(prefix, 0, 300);
    await a.flushOnce();
    const p = join(dir, 'tile/0/000');
    const buf = await readFile(p);
    buf[100] ^= 1;
    await writeFile(p, buf);
    const b = new AuditArchiver({ redis, prefix, dir });
    await write(prefix, 300, 1);
    await t.rejects(b.flushOnce(), /tile\/0\/000: does not hash to entry 0 of tile\/1\/000\.p\/1: a tile was altered; refusing to extend the tree/);
  });
  await t.test('a tile of the wrong size', async (t) => {
    const { prefix, dir } = fresh();
    const a = new AuditArchiver({ redis, prefix, dir });
    await write(prefix, 0, 10);
    await a.flushOnce();
    await writeFile(join(dir, 'tile/0/000.p/10'), Buffer.alloc(33));
    const b = new AuditArchiver({ redis, prefix, dir });
    await t.rejects(b.flushOnce(), /tile\/0\/000\.p\/10: is 33 bytes.*corrupted tile/);
  });
  await t.test('a rewritten record', async (t) => {
    const { prefix, dir } = fresh();
    const a = new AuditArchiver({ redis, prefix, dir });
    await write(prefix, 0, 10);
    await a.flushOnce();
    const [seg] = await listSegments(dir);
    const text = await readFile(join(dir, seg), 'utf8');
    const lines = text.split('\n');
    lines[9] = lines[9].replace('"type":"alert.received"', '"type":"alert.refused"'); // metadata (a body change is the chain's business)
    await writeFile(join(dir, seg), lines.join('\n'));
    const b = new AuditArchiver({ redis, prefix, dir });
    await t.rejects(b.flushOnce(), /tile\/0\/000\.p\/10: leaf 9 does not match record seq 10 \(audit-\d{8}-000001\.jsonl line 10\)/);
  });
  await t.test('a truncated log', async (t) => {
    const { prefix, dir } = fresh();
    const a = new AuditArchiver({ redis, prefix, dir });
    await write(prefix, 0, 10);
    await a.flushOnce();
    const [seg] = await listSegments(dir);
    const lines = (await readFile(join(dir, seg), 'utf8')).split('\n');
    await writeFile(join(dir, seg), lines.slice(0, 7).join('\n') + '\n');
    await redis.del(`${prefix}:audit:head`);
    const b = new AuditArchiver({ redis, prefix, dir });
    await t.rejects(b.flushOnce(), /the tree has 10 leaves but the records end at seq 7: the log was truncated/);
  });
});
