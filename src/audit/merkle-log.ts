/**
 * The Merkle tree over the audit log: leaf i (0-based) is the chain input of the record with
 * seq i+1 (docs/audit.md), hashed as an RFC 9162 leaf. Glue between the segment files, the
 * tiles and the archiver.
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { BODIES_MARK, listSegments, readManifest } from './format.js';
import { readPruned } from './prune.js';
import { leafHash } from './merkle.js';
import { TILE_WIDTH, TileError, TileTree, loadTile, perfectRoot, tilePath, type TreeHead } from './tiles.js';

/** The leaf data of a record line: its chain input (the line without `bodies`, then `}` and a newline). */
export function leafData(line: string): string {
  const i = line.lastIndexOf(BODIES_MARK);
  if (i < 0) throw new Error('record has no "bodies" member');
  return line.slice(0, i) + '}\n';
}

export function recordLeafHash(line: string): Buffer {
  return leafHash(leafData(line));
}

export interface LeafLine {
  seq: number;
  line: string;
  file: string;
  /** 1-based line number in `file` */
  lineNo: number;
}

const SEQ_PREFIX = Buffer.from('{"seq":');

/** The seq of the line buf[start, end) (what /^\{"seq":(\d+),/ would match), or -1. */
function seqOfLine(buf: Buffer, start: number, end: number): number {
  if (end - start < SEQ_PREFIX.length + 2 || buf.compare(SEQ_PREFIX, 0, SEQ_PREFIX.length, start, start + SEQ_PREFIX.length) !== 0) return -1;
  let seq = 0;
  let i = start + SEQ_PREFIX.length;
  for (; i < end; i++) {
    const c = buf[i];
    if (c < 0x30 || c > 0x39) break;
    seq = seq * 10 + (c - 0x30);
  }
  return i > start + SEQ_PREFIX.length && i < end && buf[i] === 0x2c ? seq : -1;
}

/**
 * Record lines with seq ≥ `fromSeq`, in order, from the segment files; closed segments that end
 * before it are skipped through the manifest. Lines before `fromSeq` are only checked for their
 * seq, in the raw bytes (the archiver's start reads up to a whole 64 MB segment to reach the last
 * tile's records: decoding every line of it as text cost more than the rest of the start). A torn
 * last line (no newline) is yielded as it is.
 */
export async function* readRecordLines(dir: string, fromSeq = 1): AsyncGenerator<LeafLine> {
  const { entries } = await readManifest(dir);
  const lastSeqOf = new Map<string, number>();
  for (const e of entries) lastSeqOf.set(e.segment, e.lastSeq);
  const chunk = Buffer.allocUnsafe(1 << 20);
  for (const file of await listSegments(dir)) {
    const last = lastSeqOf.get(file);
    if (last !== undefined && last < fromSeq) continue;
    const fh = await open(join(dir, file), 'r');
    try {
      let lineNo = 0;
      let carry = Buffer.alloc(0);
      const emit = (buf: Buffer, start: number, end: number): LeafLine | null => {
        lineNo++;
        const seq = seqOfLine(buf, start, end);
        if (seq < 0) throw new Error(`${file}:${lineNo}: not an audit record`);
        return seq < fromSeq ? null : { seq, line: buf.toString('utf8', start, end), file, lineNo };
      };
      for (;;) {
        const { bytesRead } = await fh.read(chunk, 0, chunk.length, null);
        if (bytesRead === 0) break;
        const buf = carry.length ? Buffer.concat([carry, chunk.subarray(0, bytesRead)]) : chunk.subarray(0, bytesRead);
        let start = 0;
        for (let nl = buf.indexOf(0x0a, start); nl >= 0; nl = buf.indexOf(0x0a, start)) {
          const l = emit(buf, start, nl);
          start = nl + 1;
          if (l) yield l;
        }
        carry = Buffer.from(buf.subarray(start)); // (chunk is reused by the next read)
      }
      if (carry.length) {
        const l = emit(carry, 0, carry.length);
        if (l) yield l;
      }
    } finally {
      await fh.close();
    }
  }
}

/**
 * Brings the tree up to the records on disk (at most `uptoSeq`): opens the tiles, checks the
 * records of the last level-0 tile against the stored leaf hashes, then appends what is missing.
 * Throws a TileError when the tiles do not match the records or run ahead of them.
 */
export async function syncTree(dir: string, uptoSeq = Infinity, onProgress?: (size: number) => void): Promise<{ tree: TileTree; added: number }> {
  const tree = await TileTree.open(dir);
  const size = tree.size;
  // the records of the last level-0 tile (partial, or the last full one) are checked against it
  let edge = tree.edgeHashes(0);
  if (edge.length === 0 && size > 0) edge = await loadTile(dir, 0, size / TILE_WIDTH - 1);
  // records of pruned segments are gone (their leaves stay in the tiles)
  let firstKept = 1;
  for (const p of (await readPruned(dir)).values()) firstKept = Math.max(firstKept, p.lastSeq + 1);
  const checkFrom = Math.max(size - edge.length + 1, Math.min(firstKept, size + 1));
  let added = 0;
  let expect = checkFrom;
  let batch: Buffer[] = [];
  for await (const r of readRecordLines(dir, checkFrom)) {
    if (r.seq > uptoSeq) break;
    if (r.seq !== expect) throw new Error(`${r.file}:${r.lineNo}: expected seq ${expect}, found ${r.seq}`);
    expect++;
    const h = recordLeafHash(r.line);
    if (r.seq <= size) {
      const stored = edge[(r.seq - 1) % TILE_WIDTH];
      if (!stored.equals(h)) {
        throw new TileError(
          tilePath(0, Math.floor((r.seq - 1) / TILE_WIDTH), edge.length),
          `leaf ${r.seq - 1} does not match record seq ${r.seq} (${r.file} line ${r.lineNo}): the record or the tile was altered; refusing to extend the tree`,
        );
      }
      continue;
    }
    batch.push(h);
    if (batch.length >= 8 * TILE_WIDTH) {
      await tree.append(batch);
      added += batch.length;
      batch = [];
      onProgress?.(tree.size);
    }
  }
  if (expect - 1 < size) {
    throw new TileError(
      tilePath(0, Math.floor((size - 1) / TILE_WIDTH), edge.length),
      `the tree has ${size} leaves but ${expect === checkFrom ? `no record from seq ${checkFrom} is on disk` : `the records end at seq ${expect - 1}`}: the log was truncated (or segments were lost); refusing to extend the tree`,
    );
  }
  if (batch.length) {
    await tree.append(batch);
    added += batch.length;
  }
  return { tree, added };
}

/**
 * What the archiver calls: `prepare` when it (re)reads its tail, `onBatchArchived` after the
 * batch's lines are durable. Kept apart from the archiver so the tree is one small hook there.
 */
export class MerkleAppender {
  private tree: TileTree | null = null;
  head: TreeHead | null = null;

  constructor(private readonly dir: string) {}

  async prepare(tailSeq: number): Promise<void> {
    this.tree = null;
    const { tree } = await syncTree(this.dir, tailSeq);
    if (tree.size !== tailSeq) {
      throw new TileError('tree.json', `the tree has ${tree.size} leaves, the log ends at seq ${tailSeq}: the stored tiles do not match the records; refusing to extend the tree`);
    }
    this.tree = tree;
    this.head = { size: tree.size, root: (await tree.root()).toString('base64') };
  }

  /** `leaves`: the records' leaf hashes (recordLeafHash of each line, in order). */
  async onBatchArchived(leaves: Buffer[]): Promise<void> {
    if (!this.tree) throw new Error('audit tree: not prepared');
    try {
      const root = await this.tree.append(leaves);
      this.head = { size: this.tree.size, root: root.toString('base64') };
    } catch (err) {
      this.tree = null;
      throw err;
    }
  }
}

/**
 * Checks every stored tile against the records on disk (level 0) and against the tiles below it
 * (higher levels), for leaves [firstLeaf, size). Returns the first fault, or null.
 */
export async function verifyTiles(dir: string, size: number, firstLeaf = 0): Promise<{ tile: string; message: string } | null> {
  // level 0 against the records
  let tileIndex = -1;
  let tile: Buffer[] = [];
  let expect = firstLeaf + 1;
  for await (const r of readRecordLines(dir, firstLeaf + 1)) {
    if (r.seq > size) break;
    if (r.seq !== expect) return { tile: `${r.file}:${r.lineNo}`, message: `expected seq ${expect}, found ${r.seq}` };
    expect++;
    const i = r.seq - 1;
    const t = Math.floor(i / TILE_WIDTH);
    if (t !== tileIndex) {
      try {
        tile = await loadTile(dir, 0, t);
      } catch (err) {
        if (err instanceof TileError) return { tile: err.tile, message: err.message };
        throw err;
      }
      tileIndex = t;
    }
    const stored = tile[i - t * TILE_WIDTH];
    const w = Math.min(TILE_WIDTH, size - t * TILE_WIDTH);
    if (!stored) return { tile: tilePath(0, t, w), message: `leaf ${i} (record seq ${r.seq}, ${r.file} line ${r.lineNo}) is missing from the tile` };
    if (!stored.equals(recordLeafHash(r.line))) {
      return { tile: tilePath(0, t, w), message: `leaf ${i} does not match record seq ${r.seq} (${r.file} line ${r.lineNo}): the tile or the record was altered` };
    }
  }
  if (expect - 1 < size) return { tile: tilePath(0, Math.floor((size - 1) / TILE_WIDTH), size % TILE_WIDTH || TILE_WIDTH), message: `the tree has ${size} leaves but the records end at seq ${expect - 1}: the log was truncated` };
  // higher levels: entry j of level L+1 = root of full tile j of level L
  const firstTile = Math.floor(firstLeaf / TILE_WIDTH);
  for (let L = 0, n = size, from = firstTile; n >= TILE_WIDTH; L++, n = Math.floor(n / TILE_WIDTH), from = Math.floor(from / TILE_WIDTH)) {
    const full = Math.floor(n / TILE_WIDTH);
    let parent: Buffer[] = [];
    let parentIndex = -1;
    for (let j = from; j < full; j++) {
      let t: Buffer[];
      try {
        t = await loadTile(dir, L, j);
        const pi = Math.floor(j / TILE_WIDTH);
        if (pi !== parentIndex) {
          parent = await loadTile(dir, L + 1, pi);
          parentIndex = pi;
        }
      } catch (err) {
        if (err instanceof TileError) return { tile: err.tile, message: err.message };
        throw err;
      }
      if (t.length !== TILE_WIDTH) return { tile: tilePath(L, j), message: `full tile missing (${t.length} hashes found)` };
      const e = parent[j - parentIndex * TILE_WIDTH];
      const w = Math.min(TILE_WIDTH, full - parentIndex * TILE_WIDTH);
      if (!e || !e.equals(perfectRoot(t))) return { tile: tilePath(L + 1, parentIndex, w), message: `hash ${j - parentIndex * TILE_WIDTH} is not the root of ${tilePath(L, j)} (a tile was altered)` };
    }
  }
  return null;
}
