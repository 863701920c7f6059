import t from 'tap';
import { createHash, verify } from 'node:crypto';
import { parseNote, parseSigner, parseVerifier, signNote, verifierOf } from '../src/audit/checkpoint.js';
import { readFile, writeFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { AuditArchiver } from '../src/audit/archiver.js';
import { addAudit, type AuditEvent } from '../src/audit/events.js';
import { listSegments } from '../src/audit/format.js';
import { recordLeafHash, syncTree } from '../src/audit/merkle-log.js';
import { EMPTY_ROOT, consistencyProof, inclusionProof, leafHash, memoryReader, nodeHash, rootHash, verifyConsistency, verifyInclusion } from '../src/audit/merkle.js';
import { TileTree, tilePath } from '../src/audit/tiles.js';
import { redisAndDir } from './helpers/audit.js';

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

const { redis, dir: root } = await redisAndDir(t, 'fenliu-merkle-');
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
    await redis.del(`${prefix}:{audit}:head`);
    const b = new AuditArchiver({ redis, prefix, dir });
    await t.rejects(b.flushOnce(), /the tree has 10 leaves but the records end at seq 7: the log was truncated/);
  });
});

// Data from what we did not write: the Certificate Transparency reference tree (RFC 6962 test
// vectors, as published with transparency-dev/merkle) and the Go reference implementation's
// signed-note example (golang.org/x/mod/sumdb/note).
t.test('RFC 6962 reference vectors', async (t) => {
  const data = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map((h) => Buffer.from(h, 'hex'));
  const roots = [
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
    'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
    'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
    'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
    '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
    'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
    '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
  ];
  const read = memoryReader(data.map((d) => leafHash(d)));
  for (let n = 0; n <= 8; n++) t.equal((n ? await rootHash(read, n) : EMPTY_ROOT).toString('hex'), roots[n], `root of size ${n}`);
  const hex = (p: Buffer[]) => p.map((h) => h.toString('hex'));
  t.same(hex(await inclusionProof(read, 0, 8)), [
    '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
    '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
    '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
  ]);
  t.same(hex(await inclusionProof(read, 5, 8)), [
    'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
    'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  ]);
  const p25 = await consistencyProof(read, 2, 5);
  t.same(hex(p25), ['5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', 'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b']);
  t.ok(verifyConsistency(2, 5, Buffer.from(roots[2], 'hex'), Buffer.from(roots[5], 'hex'), p25));
});

t.test('signed notes match the Go reference implementation', async (t) => {
  const vkey = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
  const skey = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
  const text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
  const sig = '\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n';
  const signer = parseSigner(skey);
  t.equal(verifierOf(signer), vkey, 'same vkey from the private key');
  t.equal(signNote(text, signer), `${text}\n${sig}`, 'byte-for-byte the same signed note');
  const v = parseVerifier(vkey);
  t.equal(v.keyId.toString('hex'), 'c74f20a3');
  const n = parseNote(`${text}\n${sig}`);
  t.ok(verify(null, Buffer.from(n.text), v.publicKey, n.sigs[0].sig));
});
