/**
 * Signed checkpoints, proofs, consistency, witnesses and pruning, through the compiled CLI
 * (dist/) and against a real archiver on a private redis-server.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { cp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AuditArchiver } from '../src/audit/archiver.js';
import { SIG_COSIGNATURE_V1, generateKey, parseSigner, signNote } from '../src/audit/checkpoint.js';
import { CheckpointCache, CheckpointPublisher, readPublishedCheckpoint, refreshCheckpoint } from '../src/audit/checkpoint-log.js';
import { addAudit, type AuditEvent } from '../src/audit/events.js';
import { listSegments } from '../src/audit/format.js';
import { syncTree } from '../src/audit/merkle-log.js';
import { proveAlert, verifyAlertProof } from '../src/audit/proof.js';
import { verifyConsistencySince } from '../src/audit/consistency.js';
import { ROOT, childEnv } from './helpers/fenliu.js';

t.setTimeout(400_000); // a dozen CLI runs as child processes on a shared machine
import { redisAndDir } from './helpers/audit.js';

// the compiled CLI is what users run: build it when src/audit is newer
const distCli = join(ROOT, 'dist', 'src', 'cli.js');
async function newest(dir: string): Promise<number> {
  let m = 0;
  for (const f of await readdir(dir)) m = Math.max(m, (await stat(join(dir, f))).mtimeMs);
  return m;
}
const distAge = await stat(join(ROOT, 'dist', 'src', 'audit', 'merkle-cli.js')).then((s) => s.mtimeMs, () => 0);
if (distAge < (await newest(join(ROOT, 'src', 'audit')))) {
  const b = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.json')], { stdio: 'inherit' });
  if (b.status !== 0) throw new Error('tsc failed');
}

function fenliu(...args: string[]) {
  const r = spawnSync(process.execPath, [distCli, ...args], { cwd: ROOT, env: childEnv(), encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const { redis, dir: base } = await redisAndDir(t, 'fenliu-proof-');
let n = 0;
const fresh = () => ({ prefix: `p${++n}`, dir: join(base, `d${n}`) });

const ORIGIN = 'fenliu.huangshi.example/audit';
const key = generateKey(ORIGIN);
const signer = parseSigner(key.privateKey);
const keyFile = join(base, 'signing.key');
await writeFile(keyFile, key.privateKey + '\n');

function ev(i: number, alertId: string): AuditEvent {
  return { type: i % 3 ? 'delivery.state' : 'alert.received', at: new Date(Date.UTC(2024, 0, 1, 0, 0, i)).toISOString(), alertId, data: { i, alert: { summary: `消费纠纷 ${i}` } } };
}

async function write(prefix: string, from: number, count: number, alertOf = (i: number) => `HS-${i % 9}`) {
  const m = redis.multi();
  for (let i = from; i < from + count; i++) addAudit(m, prefix, ev(i, alertOf(i)));
  await m.exec();
}

/** A log of `count` records, archived, with a signed checkpoint. */
async function log(count: number, opts: { segmentMaxBytes?: number } = {}) {
  const { prefix, dir } = fresh();
  const archiver = new AuditArchiver({ redis, prefix, dir, batchSize: 200, ...opts });
  await write(prefix, 0, count);
  await archiver.flushOnce();
  const cp = await refreshCheckpoint(dir, { signer });
  return { prefix, dir, archiver, cp };
}

t.test('a proof of all events of an alert, checked by fenliu, by the CLI and by the verifier in docs/audit.md', async (t) => {
  const { dir, prefix, archiver } = await log(700);
  await write(prefix, 700, 5); // archived after the checkpoint: pending
  await archiver.flushOnce();
  const proof = await proveAlert(dir, 'HS-4');
  t.equal(proof.events.length, Math.ceil((700 - 4) / 9), 'every event of HS-4 in the checkpoint');
  t.notOk(proof.pending, 'HS-4 has nothing after the checkpoint');
  t.same((await proveAlert(dir, 'HS-7')).pending, [701], 'an event archived after the checkpoint is listed as pending');
  t.ok(verifyAlertProof(proof, key.vkey).ok);

  const file = join(dir, '..', 'hs4.proof.json');
  const made = fenliu('audit', 'prove', 'HS-4', '--dir', dir, '--out', file);
  t.equal(made.code, 0, made.stderr);
  const ok = fenliu('audit', 'verify-proof', file, '--key', key.vkey);
  t.equal(ok.code, 0, ok.stdout + ok.stderr);
  t.match(ok.stdout, new RegExp(`OK .*${proof.events.length} events in ${ORIGIN} at size 700`));

  // the independent verifier: plain Node, crypto only
  const doc = await readFile(join(ROOT, 'docs', 'audit.md'), 'utf8');
  const m = /```js verify-proof\n([\s\S]*?)```/.exec(doc);
  t.ok(m, 'docs/audit.md has a ```js verify-proof block');
  t.notMatch(m![1], /from '(?!node:)/, 'imports nothing but node: modules');
  t.ok(m![1].split('\n').length < 50, 'a few dozen lines');
  const script = join(base, 'verify-proof.mjs');
  await writeFile(script, m![1]);
  const indep = spawnSync(process.execPath, [script, file, key.vkey], { encoding: 'utf8', env: childEnv() });
  t.equal(indep.status, 0, indep.stdout + indep.stderr);
  t.match(indep.stdout, `OK: ${proof.events.length} events of HS-4 are in ${ORIGIN} at size 700`);

  // tampering is caught by both verifiers
  const bad = JSON.parse(await readFile(file, 'utf8'));
  bad.events[3].leaf = bad.events[3].leaf.replace('"type":"', '"type":"x');
  const badFile = join(base, 'bad.proof.json');
  await writeFile(badFile, JSON.stringify(bad));
  const r1 = fenliu('audit', 'verify-proof', badFile, '--key', key.vkey);
  t.equal(r1.code, 1);
  t.match(r1.stdout, `BROKEN  ${badFile}: event 4 (leaf index ${bad.events[3].index}): inclusion proof does not lead to the checkpoint's root`);
  const r2 = spawnSync(process.execPath, [script, badFile, key.vkey], { encoding: 'utf8', env: childEnv() });
  t.equal(r2.status, 1);
  t.match(r2.stdout, `BROKEN: leaf ${bad.events[3].index} is not in the tree of size 700`);
});

t.test('bad input: a bad signature, another origin, a foreign leaf, a bad key', async (t) => {
  const { dir } = await log(40);
  const proof = await proveAlert(dir, 'HS-1');
  // a checkpoint whose signature does not verify (the size changed after signing)
  const forged = { ...proof, checkpoint: proof.checkpoint.replace('\n40\n', '\n41\n') };
  t.match(verifyAlertProof(forged, key.vkey).error, `signature of ${ORIGIN} does not verify`);
  // signed by another key with the same name
  const other = generateKey(ORIGIN);
  t.match(verifyAlertProof(proof, other.vkey).error, /checkpoint is not signed by .* \(key id /);
  // a proof for another log (same key, other origin)
  const elsewhere = signNote(proof.checkpoint.slice(0, proof.checkpoint.indexOf('\n\n') + 1).replace(ORIGIN, 'other.example/log'), signer);
  t.match(verifyAlertProof({ ...proof, checkpoint: elsewhere }, key.vkey).error, `checkpoint is for origin "other.example/log", not "${ORIGIN}" (a proof for another log)`);
  // an event of another alert slipped in
  const mixed = { ...proof, alertId: 'HS-2' };
  t.match(verifyAlertProof(mixed, key.vkey).error, /event 1 \(leaf index \d+\): the record belongs to alert HS-1, not HS-2/);
  // a truncated proof path
  const short = { ...proof, events: [{ ...proof.events[0], proof: proof.events[0].proof.slice(1) }] };
  t.match(verifyAlertProof(short, key.vkey).error, /event 1 .*inclusion proof is too short/);
  t.throws(() => parseSigner('PRIVATE+KEY+x+00000000+AAAA'), /not an Ed25519 key/);
  const cliBad = fenliu('audit', 'verify-proof', join(base, 'nope.json'), '--key', key.vkey);
  t.equal(cliBad.code, 1);
  t.match(cliBad.stderr, /nope\.json/);
});

t.test('verify --since: the log extends a saved checkpoint; truncation and rewriting are caught', async (t) => {
  const { dir, prefix, archiver, cp: first } = await log(300);
  const saved = join(base, `saved-${prefix}`);
  await writeFile(saved, first.note);
  await write(prefix, 300, 120);
  await archiver.flushOnce();
  await refreshCheckpoint(dir, { signer });
  const good = fenliu('audit', 'verify', dir, '--since', saved, '--key', key.vkey);
  t.equal(good.code, 0, good.stdout + good.stderr);
  t.match(good.stdout, /OK {2}the log \(size 420, root .*\) extends .* \(size 300\)/);
  const j = fenliu('audit', 'verify', dir, '--since', saved, '--key', key.vkey, '--json');
  t.equal(j.code, 0);
  t.match(JSON.parse(j.stdout), { ok: true, records: 420, consistency: { ok: true, signatureChecked: true, old: { size: 300 }, current: { size: 420 } } });

  // a truncated log (tiles left): named by tile and seq
  const trunc = join(base, `trunc-${prefix}`);
  await cp(dir, trunc, { recursive: true });
  const segs = await listSegments(trunc);
  const last = join(trunc, segs[segs.length - 1]);
  const lines = (await readFile(last, 'utf8')).split('\n').filter(Boolean);
  await writeFile(last, lines.slice(0, -10).join('\n') + '\n');
  const r1 = fenliu('audit', 'verify', trunc, '--since', saved, '--key', key.vkey);
  t.equal(r1.code, 1);
  t.match(r1.stdout, /tile\/0\/001\.p\/164: the tree has 420 leaves but the records end at seq 410: the log was truncated/);

  // truncated below the saved checkpoint and the tree rebuilt to match: the size gives it away
  const cut = join(base, `cut-${prefix}`);
  await cp(dir, cut, { recursive: true });
  const cseg = join(cut, (await listSegments(cut))[0]);
  await writeFile(cseg, (await readFile(cseg, 'utf8')).split('\n').slice(0, 250).join('\n') + '\n');
  await rm(join(cut, 'tile'), { recursive: true });
  await rm(join(cut, 'tree.json'));
  await syncTree(cut);
  const r2 = await verifyConsistencySince(cut, first.note, { key: key.vkey });
  t.equal(r2.ok, false);
  t.match(r2.error, /records \d+\.\.300 were removed \(truncated log\)/);

  // the last record rewritten (the hash chain cannot see this) and the tree rebuilt
  const rw = join(base, `rw-${prefix}`);
  await cp(dir, rw, { recursive: true });
  const { prefix: p2, dir: d2 } = fresh();
  await write(p2, 0, 300);
  await new AuditArchiver({ redis, prefix: p2, dir: d2 }).flushOnce();
  const seg2 = (await listSegments(d2))[0];
  const l2 = (await readFile(join(d2, seg2), 'utf8')).split('\n');
  l2[299] = l2[299].replace('"data":{"i":299', '"data":{"i":-1');
  await writeFile(join(d2, seg2), l2.join('\n'));
  await rm(join(d2, 'tile'), { recursive: true });
  await rm(join(d2, 'tree.json'));
  await syncTree(d2);
  const saved2 = join(base, `saved-${p2}`);
  // the checkpoint the auditor saved before the rewrite: the tree of the original 300 records
  const orig = fresh();
  await write(orig.prefix, 0, 300);
  await new AuditArchiver({ redis, prefix: orig.prefix, dir: orig.dir }).flushOnce();
  const origCp = await refreshCheckpoint(orig.dir, { signer });
  await writeFile(saved2, origCp.note);
  t.equal(fenliu('audit', 'verify', d2).code, 0, 'the hash chain alone accepts the rewritten last record');
  const r3 = fenliu('audit', 'verify', d2, '--since', saved2, '--key', key.vkey);
  t.equal(r3.code, 1, r3.stdout);
  t.match(r3.stdout, /the log does not extend the saved checkpoint \(size 300, root .*\): records 1\.\.300 were rewritten since/);

  // a record rewritten with the tiles left as they were: tile and line named
  const r4dir = join(base, `r4-${prefix}`);
  await cp(orig.dir, r4dir, { recursive: true });
  const seg4 = (await listSegments(r4dir))[0];
  const l4 = (await readFile(join(r4dir, seg4), 'utf8')).split('\n');
  l4[299] = l4[299].replace('"data":{"i":299', '"data":{"i":-1');
  await writeFile(join(r4dir, seg4), l4.join('\n'));
  const r4 = await verifyConsistencySince(r4dir, origCp.note, { key: key.vkey });
  t.equal(r4.ok, false);
  t.match(r4.error, /tile\/0\/001\.p\/44: leaf 299 does not match record seq 300 \(audit-\d+-000001\.jsonl line 300\)/);

  // a corrupted tile
  const ct = join(base, `ct-${prefix}`);
  await cp(dir, ct, { recursive: true });
  const tp = join(ct, 'tile/0/000');
  const buf = await readFile(tp);
  buf[33] ^= 0xff;
  await writeFile(tp, buf);
  const r5 = await verifyConsistencySince(ct, first.note, { key: key.vkey });
  t.equal(r5.ok, false);
  t.match(r5.error, /^tile\/0\/000: does not hash to entry 0 of tile\/1\/000\.p\/1/);
  const r5b = fenliu('audit', 'verify', ct);
  t.equal(r5b.code, 1, 'plain verify checks the tiles too');
  t.match(r5b.stdout, /tile\/0\/000/);

  // a saved checkpoint with a bad signature
  const forged = join(base, `forged-${prefix}`);
  await writeFile(forged, first.note.replace('\n300\n', '\n299\n'));
  const r6 = await verifyConsistencySince(dir, await readFile(forged, 'utf8'), { key: key.vkey });
  t.equal(r6.ok, false);
  t.match(r6.error, `saved checkpoint: signature of ${ORIGIN} does not verify`);
});

t.test('a witness checks consistency and cosigns; proofs can require the cosignature', async (t) => {
  const { dir, prefix, archiver, cp: first } = await log(50);
  const w = generateKey('witness.12345.example/w1', SIG_COSIGNATURE_V1);
  const wKeyFile = join(base, 'witness.key');
  await writeFile(wKeyFile, w.privateKey);
  const firstFile = join(base, 'w-first');
  const r0 = fenliu('audit', 'witness', dir, '--key', key.vkey, '--witness-key', wKeyFile, '--out', firstFile);
  t.equal(r0.code, 0, r0.stdout + r0.stderr);
  t.match(await readFile(firstFile, 'utf8'), /^— witness\.12345\.example\/w1 /m);
  await write(prefix, 50, 30);
  await archiver.flushOnce();
  await refreshCheckpoint(dir, { signer });
  const r1 = fenliu('audit', 'witness', dir, '--key', key.vkey, '--witness-key', wKeyFile, '--since', firstFile, '--write');
  t.equal(r1.code, 0, r1.stdout + r1.stderr);
  const note = await readFile(join(dir, 'checkpoint'), 'utf8');
  t.match(note, new RegExp(`^${ORIGIN}\\n80\\n`));
  t.equal(note.split('\n').filter((l) => l.startsWith('\u2014 ')).length, 2, 'both signatures');
  const kept = await refreshCheckpoint(dir, { signer });
  t.equal(kept.signed, false, 'the cosigned checkpoint is kept (published as is)');
  const proof = await proveAlert(dir, 'HS-3');
  t.ok(verifyAlertProof(proof, key.vkey, { witnesses: [w.vkey] }).ok);
  const other = generateKey('witness.12345.example/w1', SIG_COSIGNATURE_V1);
  t.match(verifyAlertProof(proof, key.vkey, { witnesses: [other.vkey] }).error, /not signed by witness/);
  // a rewritten log is refused by the witness
  const seg = (await listSegments(dir))[0];
  const lines = (await readFile(join(dir, seg), 'utf8')).split('\n');
  lines[79] = lines[79].replace('"data":{"i":79', '"data":{"i":-1');
  await writeFile(join(dir, seg), lines.join('\n'));
  await rm(join(dir, 'tile'), { recursive: true });
  await rm(join(dir, 'tree.json'));
  await syncTree(dir);
  await rm(join(dir, 'checkpoint'));
  await refreshCheckpoint(dir, { signer });
  const r2 = fenliu('audit', 'witness', dir, '--key', key.vkey, '--witness-key', wKeyFile, '--since', join(base, 'w-first'));
  t.equal(r2.code, 0, 'still extends the first (size 50) checkpoint');
  const second = join(base, 'w-second');
  await writeFile(second, note);
  const r3 = fenliu('audit', 'witness', dir, '--key', key.vkey, '--witness-key', wKeyFile, '--since', second);
  t.equal(r3.code, 1);
  t.match(r3.stdout, /REFUSED .*does not extend the saved checkpoint \(size 80/);
});

t.test('pruning: old segments go, verify --since and proofs of kept alerts still work', async (t) => {
  const { dir, prefix, archiver, cp: early } = await log(400, { segmentMaxBytes: 8_000 });
  const saved = join(base, `prune-saved-${prefix}`);
  await writeFile(saved, early.note);
  await write(prefix, 400, 200, (i) => `LATE-${i % 4}`);
  await archiver.flushOnce();
  await refreshCheckpoint(dir, { signer });
  const before = (await listSegments(dir)).length;
  const cold = join(base, `cold-${prefix}`);
  // all closed segments whose last record is older than a day from now
  const pr = fenliu('audit', 'prune', dir, '--before', new Date(Date.now() + 86_400_000).toISOString(), '--move-to', cold, '--json');
  t.equal(pr.code, 0, pr.stderr);
  const pruned = JSON.parse(pr.stdout).pruned as { segment: string }[];
  t.ok(pruned.length >= 2 && pruned.length < before, `${pruned.length} of ${before} segments pruned`);
  t.equal((await readdir(cold)).length, pruned.length, 'moved to cold storage');
  const v = fenliu('audit', 'verify', dir);
  t.equal(v.code, 0, v.stdout);
  t.match(v.stdout, /records in pruned segments/);
  const s = fenliu('audit', 'verify', dir, '--since', saved, '--key', key.vkey);
  t.equal(s.code, 0, s.stdout + s.stderr);
  let kept = 0;
  for (const sg of await listSegments(dir)) kept += (await readFile(join(dir, sg), 'utf8')).split('"alertId":"LATE-1"').length - 1;
  t.ok(kept > 0, `${kept} events of LATE-1 in the kept segments`);
  const proof = await proveAlert(dir, 'LATE-1');
  t.equal(proof.events.length, kept, 'a proof for every kept event');
  t.ok(verifyAlertProof(proof, key.vkey).ok);
  // the archiver goes on after pruning (a new one too: it checks the tiles against kept records)
  await write(prefix, 600, 20, (i) => `LATE-${i % 4}`);
  const next = new AuditArchiver({ redis, prefix, dir, segmentMaxBytes: 8_000 });
  await archiver.stop();
  t.equal(await next.flushOnce(), 20);
  t.equal(fenliu('audit', 'verify', dir).code, 0, 'still verifies after more records');
  // a segment missing without a pruned.jsonl line is still an error
  await rm(join(dir, 'pruned.jsonl'));
  t.equal(fenliu('audit', 'verify', dir).code, 1);
});

t.test('keygen, checkpoint and tree from the compiled CLI', async (t) => {
  const { prefix, dir } = fresh();
  await write(prefix, 0, 30);
  await new AuditArchiver({ redis, prefix, dir, merkle: false }).flushOnce();
  const tree = fenliu('audit', 'tree', dir, '--json');
  t.equal(tree.code, 0, tree.stderr);
  t.match(JSON.parse(tree.stdout), { size: 30, added: 30 });
  const kg = fenliu('audit', 'keygen', 'cli.example/log');
  t.equal(kg.code, 0);
  const [priv, vkey] = kg.stdout.trim().split('\n');
  t.match(priv, /^PRIVATE\+KEY\+cli\.example\/log\+[0-9a-f]{8}\+/);
  t.match(vkey, /^cli\.example\/log\+[0-9a-f]{8}\+/);
  const kf = join(base, 'cli.key');
  await writeFile(kf, priv);
  const c = fenliu('audit', 'checkpoint', '--dir', dir, '--key-file', kf);
  t.equal(c.code, 0, c.stderr);
  t.match(c.stdout, /^cli\.example\/log\n30\n/);
  const proof = await proveAlert(dir, 'HS-2');
  t.ok(verifyAlertProof(proof, vkey).ok, 'a proof against the CLI-signed checkpoint verifies with the CLI-made vkey');
  const usage = fenliu('audit', 'verify-proof');
  t.equal(usage.code, 2);
  t.match(usage.stderr, /missing argument\n\n *fenliu audit verify-proof FILE --key VKEY/);
});

t.test('the publisher never replaces a larger published checkpoint', async (t) => {
  const { prefix, dir } = await log(12);
  const a = new CheckpointPublisher({ redis, prefix, dir, signer });
  t.equal((await a.publishNow()).size, 12);
  const elsewhere = join(base, `empty-${prefix}`);
  const b = new CheckpointPublisher({ redis, prefix, dir: elsewhere, signer });
  t.equal((await b.publishNow()).size, 12, 'a process with an empty directory keeps the published one');
  t.equal((await readPublishedCheckpoint(redis, prefix))!.size, 12);
  const cache = new CheckpointCache(redis, prefix);
  await cache.refresh();
  t.same(cache.current, { size: 12, root: (await readPublishedCheckpoint(redis, prefix))!.root });
});
