/**
 * Does the log in a directory extend a checkpoint saved earlier? Checks, offline: the stored tiles
 * against tree.json and against every kept record, then an RFC 9162 consistency proof from the
 * saved checkpoint to the current tree. Truncation (fewer leaves) and any rewritten record
 * (tiles rebuilt: the proof fails; tiles left: they no longer match the record) are reported.
 * Also the witness: check consistency, then cosign (C2SP tlog-cosignature).
 */
import { NoteError, cosignNote, openCheckpoint, parseCheckpointBody, parseNote, parseVerifier, type Checkpoint, type NoteSigner } from './checkpoint.js';
import { verifyTiles } from './merkle-log.js';
import { consistencyProof, rootHash, verifyConsistency } from './merkle.js';
import { readCheckpointFile } from './proof.js';
import { TileError, TileTree } from './tiles.js';

export interface ConsistencyResult {
  ok: boolean;
  old?: { size: number; root: string };
  current?: { size: number; root: string };
  /** the consistency proof (base64), for the record */
  proof?: string[];
  /** what is wrong, naming the tile, file or checkpoint */
  error?: string;
  signatureChecked: boolean;
}

/** Reads a checkpoint note; with `key`, its signature and origin (default the key name) are checked. */
export function readCheckpoint(note: string, key?: string, origin?: string): Checkpoint {
  if (!key) return parseCheckpointBody(parseNote(note).text);
  const v = parseVerifier(key);
  const cp = openCheckpoint(note, [v]);
  const want = origin ?? v.name;
  if (cp.origin !== want) throw new NoteError(`checkpoint is for origin "${cp.origin}", not "${want}" (a checkpoint of another log)`);
  return cp;
}

/**
 * The tiles against tree.json (root) and against every record kept on disk from `firstLeaf` on.
 * The error names the tile, and the record where one is concerned.
 */
export async function checkStoredTree(
  dir: string,
  firstLeaf = 0,
): Promise<{ tree: TileTree; root: Buffer; current: { size: number; root: string } } | { error: string; current?: { size: number; root: string } }> {
  let tree: TileTree;
  try {
    tree = await TileTree.open(dir);
  } catch (err) {
    if (err instanceof TileError) return { error: err.message };
    throw err;
  }
  const root = await tree.root();
  const current = { size: tree.size, root: root.toString('base64') };
  const fault = await verifyTiles(dir, tree.size, firstLeaf).catch((err: unknown) => {
    if (err instanceof TileError) return { tile: err.tile, message: err.message };
    throw err;
  });
  if (fault) return { current, error: fault.message.startsWith(fault.tile) ? fault.message : `${fault.tile}: ${fault.message}` };
  return { tree, root, current };
}

/**
 * `firstLeaf`: the first leaf whose record is still on disk (after pruning); tiles below it are
 * taken as they are (the consistency proof still binds them to the old checkpoint).
 */
export async function verifyConsistencySince(dir: string, oldNote: string, opts: { key?: string; origin?: string; firstLeaf?: number } = {}): Promise<ConsistencyResult> {
  const signatureChecked = !!opts.key;
  let old: Checkpoint;
  try {
    old = readCheckpoint(oldNote, opts.key, opts.origin);
  } catch (err) {
    if (err instanceof NoteError) return { ok: false, signatureChecked, error: `saved checkpoint: ${err.message}` };
    throw err;
  }
  const oldOut = { size: old.size, root: old.root.toString('base64') };
  const checked = await checkStoredTree(dir, opts.firstLeaf ?? 0);
  if ('error' in checked) return { ok: false, signatureChecked, old: oldOut, ...(checked.current ? { current: checked.current } : {}), error: checked.error };
  const { tree, root, current } = checked;
  if (tree.size < old.size) {
    return { ok: false, signatureChecked, old: oldOut, current, error: `the log has ${tree.size} records, the saved checkpoint ${old.size}: records ${tree.size + 1}..${old.size} were removed (truncated log)` };
  }
  let proof: Buffer[];
  try {
    proof = await consistencyProof(tree.reader(), old.size, tree.size);
  } catch (err) {
    if (err instanceof TileError) return { ok: false, signatureChecked, old: oldOut, current, error: err.message };
    throw err;
  }
  if (!verifyConsistency(old.size, tree.size, old.root, root, proof)) {
    return {
      ok: false,
      signatureChecked,
      old: oldOut,
      current,
      error: `the log does not extend the saved checkpoint (size ${old.size}, root ${oldOut.root}): records 1..${old.size} were rewritten since`,
    };
  }
  return { ok: true, signatureChecked, old: oldOut, current, proof: proof.map((h) => h.toString('base64')) };
}

/**
 * The witness: verifies the log's current checkpoint in `dir` (signed by `logKey`), checks that
 * it extends `since` (the last checkpoint this witness cosigned, if any) and that the tiles match
 * the records, then returns the checkpoint with the witness's cosignature added.
 */
export async function witnessCheckpoint(
  dir: string,
  opts: { logKey: string; witness: NoteSigner; since?: string; origin?: string; time?: number },
): Promise<{ ok: true; note: string; size: number } | { ok: false; error: string }> {
  const note = await readCheckpointFile(dir);
  if (!note) return { ok: false, error: `no checkpoint in ${dir}` };
  let cur: Checkpoint;
  try {
    cur = readCheckpoint(note, opts.logKey, opts.origin);
  } catch (err) {
    if (err instanceof NoteError) return { ok: false, error: `${dir}/checkpoint: ${err.message}` };
    throw err;
  }
  const tree = await TileTree.open(dir).catch((err: unknown) => {
    if (err instanceof TileError) return err;
    throw err;
  });
  if (tree instanceof TileError) return { ok: false, error: tree.message };
  if (tree.size < cur.size) return { ok: false, error: `the tiles hold ${tree.size} leaves, the checkpoint says ${cur.size}` };
  // the checkpoint must be a tree the tiles hold
  const rootAt = await rootHash(tree.reader(), cur.size);
  if (!rootAt.equals(cur.root)) return { ok: false, error: `the checkpoint's root is not the root of the stored tree at size ${cur.size}` };
  if (opts.since) {
    const r = await verifyConsistencySince(dir, opts.since, { key: opts.logKey, origin: opts.origin });
    if (!r.ok) return { ok: false, error: r.error! };
    if (cur.size < r.old!.size) return { ok: false, error: `the checkpoint (size ${cur.size}) is older than the one already cosigned (size ${r.old!.size})` };
    const proof = await consistencyProof(tree.reader(), r.old!.size, cur.size);
    if (!verifyConsistency(r.old!.size, cur.size, Buffer.from(r.old!.root, 'base64'), cur.root, proof)) {
      return { ok: false, error: `the checkpoint (size ${cur.size}) does not extend the one already cosigned (size ${r.old!.size})` };
    }
  }
  return { ok: true, note: cosignNote(note, opts.witness, opts.time), size: cur.size };
}
