/**
 * The Merkle tree's hashes stored as C2SP tlog-tiles (c2sp.org/tlog-tiles): tiles of height 8,
 * 256 hashes of 32 bytes each, at `tile/<L>/<N>` (full) or `tile/<L>/<N>.p/<W>` (partial, W < 256
 * hashes). Level 0 holds the RFC 9162 leaf hashes; an entry of level L+1 is the root of a full
 * level-L tile. Full tiles never change; partial tiles of a tile are removed once it is full.
 *
 * `tree.json` ({size, root}) records how far the tiles are complete; it is written after the
 * tiles (temp file, fsync, rename), so a crash leaves tiles ahead of it, never behind.
 */
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { EMPTY_ROOT, HASH_SIZE, nodeHash, rootHash, type NodeReader } from './merkle.js';
import { fsyncFd, writeAllSync } from './manifest.js';

export const TILE_HEIGHT = 8;
export const TILE_WIDTH = 1 << TILE_HEIGHT;
export const TREE_FILE = 'tree.json';

/** A fault in the stored tiles, with the tile's path (relative to the audit directory). */
export class TileError extends Error {
  constructor(
    readonly tile: string,
    message: string,
  ) {
    super(`${tile}: ${message}`);
  }
}

/** "tile/0/x001/x234/067" for level 0, index 1234067; with `width` < 256, the partial tile. */
export function tilePath(level: number, index: number, width = TILE_WIDTH): string {
  const s = String(index);
  const groups: string[] = [];
  let n = s.padStart(Math.ceil(s.length / 3) * 3, '0');
  while (n.length > 3) {
    groups.push('x' + n.slice(0, 3));
    n = n.slice(3);
  }
  groups.push(n);
  const p = `tile/${level}/${groups.join('/')}`;
  return width < TILE_WIDTH ? `${p}.p/${width}` : p;
}

export interface TreeHead {
  size: number;
  /** base64 */
  root: string;
}

export async function readTreeHead(dir: string): Promise<TreeHead | null> {
  try {
    const t = JSON.parse(await readFile(join(dir, TREE_FILE), 'utf8')) as TreeHead;
    if (!Number.isSafeInteger(t.size) || t.size < 0 || typeof t.root !== 'string') throw new TileError(TREE_FILE, 'not a tree head ({size, root})');
    return t;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    if (err instanceof TileError) throw err;
    throw new TileError(TREE_FILE, `unreadable: ${(err as Error).message}`);
  }
}

/**
 * Temp file, fsync, rename: readers (proofs, the publisher) never see a half-written tile or
 * checkpoint. Only the fsync leaves the main thread (see fsyncFd); the directory is made when
 * the open finds it missing, not asked for on every write.
 */
export async function writeDurably(path: string, data: Buffer | string): Promise<void> {
  const tmp = `${path}.tmp`;
  let fd: number;
  try {
    fd = openSync(tmp, 'w');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    mkdirSync(dirname(path), { recursive: true });
    fd = openSync(tmp, 'w');
  }
  try {
    writeAllSync(fd, data);
    await fsyncFd(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/** The file's bytes, or null when there is none. */
function readIfExists(path: string): Buffer | null {
  try {
    return readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Hash of the perfect subtree over `hashes` (a power-of-two count). */
export function perfectRoot(hashes: Buffer[]): Buffer {
  let level = hashes;
  while (level.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i < level.length; i += 2) next.push(nodeHash(level[i], level[i + 1]));
    level = next;
  }
  return level[0];
}

function splitTile(buf: Buffer, path: string): Buffer[] {
  if (buf.length % HASH_SIZE !== 0 || buf.length === 0 || buf.length > TILE_WIDTH * HASH_SIZE) {
    throw new TileError(path, `is ${buf.length} bytes, not a whole number (1–256) of 32-byte hashes (corrupted tile)`);
  }
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += HASH_SIZE) out.push(buf.subarray(i, i + HASH_SIZE));
  return out;
}

/** Inner nodes of full tiles above level 0 (≤ 8 KB each; 1,024 cover 67M leaves), keyed by the tile's content: a rebuilt tree never meets stale nodes. */
const sharedInner = new Map<string, Map<string, Buffer>>();
const SHARED_INNER_TILES = 1024;

/**
 * Reads tile hashes from `dir`: the full tile, else the widest partial one. `override` serves
 * tiles still in memory (the archiver's right edge).
 */
export function tileReader(dir: string, override?: (level: number, index: number) => Buffer[] | undefined): NodeReader {
  const cache = new Map<string, Buffer[]>();
  const tile = async (level: number, index: number, need: number): Promise<Buffer[]> => {
    const mem = override?.(level, index);
    if (mem && mem.length >= need) return mem;
    const full = tilePath(level, index);
    let t = cache.get(full);
    if (!t || t.length < need) {
      t = await loadTile(dir, level, index);
      cache.set(full, t);
    }
    if (t.length < need) throw new TileError(full, `holds ${t.length} hashes, ${need} needed: the tiles are behind the log (run fenliu audit tree)`);
    return t;
  };
  // Nodes inside a tile, memoised: a proof's paths through one tile share them, so each of its
  // 255 inner nodes is hashed at most once (not up to 2^r per read). Tiles only grow at the right,
  // so a node over hashes that exist never changes. Full tiles above level 0 (one per 65,536
  // leaves) keep theirs across readers: every proof crosses them, and they are few.
  const local = new Map<string, Map<string, Buffer>>();
  const prints = new WeakMap<Buffer[], string>();
  const fingerprint = (t: Buffer[]): string => {
    let f = prints.get(t);
    if (!f) prints.set(t, (f = createHash('sha256').update(Buffer.concat(t)).digest('base64')));
    return f;
  };
  const node = (memo: Map<string, Buffer>, t: Buffer[], r: number, off: number): Buffer => {
    if (r === 0) return t[off];
    const k = `${r}/${off}`;
    let v = memo.get(k);
    if (!v) {
      const half = 2 ** (r - 1);
      v = nodeHash(node(memo, t, r - 1, off), node(memo, t, r - 1, off + half));
      memo.set(k, v);
    }
    return v;
  };
  return async (h, i) => {
    const L = Math.floor(h / TILE_HEIGHT);
    const r = h - L * TILE_HEIGHT;
    const first = i * 2 ** r;
    const index = Math.floor(first / TILE_WIDTH);
    const off = first - index * TILE_WIDTH;
    const t = await tile(L, index, off + 2 ** r);
    if (r === 0) return t[off];
    const shared = L > 0 && t.length === TILE_WIDTH && !override;
    const memos = shared ? sharedInner : local;
    const key = shared ? fingerprint(t) : `${L}/${index}`;
    let memo = memos.get(key);
    if (!memo) {
      if (shared && memos.size >= SHARED_INNER_TILES) memos.clear();
      memos.set(key, (memo = new Map()));
    }
    return node(memo, t, r, off);
  };
}

/** The full tile, else the widest partial one; [] when there is none. */
export async function loadTile(dir: string, level: number, index: number): Promise<Buffer[]> {
  try {
    return await loadTileOnce(dir, level, index);
  } catch (err) {
    // the tile became full and its partials were removed while we read: the full one is there now
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return loadTileOnce(dir, level, index);
    throw err;
  }
}

async function loadTileOnce(dir: string, level: number, index: number): Promise<Buffer[]> {
  const full = tilePath(level, index);
  try {
    return splitTile(await readFile(join(dir, full)), full);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  let widths: number[] = [];
  try {
    widths = (await readdir(join(dir, full + '.p'))).filter((n) => /^\d+$/.test(n)).map(Number).filter((w) => Number.isInteger(w) && w > 0 && w < TILE_WIDTH);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (!widths.length) return [];
  const w = Math.max(...widths);
  const p = tilePath(level, index, w);
  const t = splitTile(await readFile(join(dir, p)), p);
  if (t.length !== w) throw new TileError(p, `holds ${t.length} hashes, its name says ${w} (corrupted tile)`);
  return t;
}

/**
 * The tree kept by the archiver: its size, the right edge (the hashes of each level's current,
 * not yet full tile) in memory, everything else in tile files.
 */
export class TileTree {
  private constructor(
    readonly dir: string,
    private count: number,
    /** per level: the hashes of its current (partial) tile */
    private readonly edge: Buffer[][],
  ) {}

  get size(): number {
    return this.count;
  }

  /** Opens the tree recorded in tree.json (an empty tree without one) and loads its right edge. */
  static async open(dir: string): Promise<TileTree> {
    const head = await readTreeHead(dir);
    const size = head?.size ?? 0;
    const edge: Buffer[][] = [];
    for (let L = 0, n = size; n > 0; L++, n = Math.floor(n / TILE_WIDTH)) {
      const w = n % TILE_WIDTH;
      const index = Math.floor(n / TILE_WIDTH);
      if (w === 0) {
        edge.push([]);
        continue;
      }
      const t = await loadTile(dir, L, index);
      if (t.length < w) throw new TileError(tilePath(L, index, w), `missing or short (${t.length} of ${w} hashes) for the tree of size ${size} in ${TREE_FILE}`);
      edge.push(t.slice(0, w));
    }
    // the last full tile of each level must hash to its entry one level up (the right edge;
    // `fenliu audit verify` checks every tile)
    for (let L = 0, n = size; n >= TILE_WIDTH; L++, n = Math.floor(n / TILE_WIDTH)) {
      const j = Math.floor(n / TILE_WIDTH) - 1;
      const t = await loadTile(dir, L, j);
      if (t.length !== TILE_WIDTH) throw new TileError(tilePath(L, j), `missing or not full (${t.length} hashes) in the tree of size ${size}`);
      const pi = Math.floor(j / TILE_WIDTH);
      const parent = edge[L + 1]?.length && Math.floor(Math.floor(n / TILE_WIDTH) / TILE_WIDTH) === pi ? edge[L + 1] : await loadTile(dir, L + 1, pi);
      const e = parent[j - pi * TILE_WIDTH];
      if (!e || !e.equals(perfectRoot(t))) {
        throw new TileError(tilePath(L, j), `does not hash to entry ${j - pi * TILE_WIDTH} of ${tilePath(L + 1, pi, Math.min(TILE_WIDTH, Math.floor(n / TILE_WIDTH) - pi * TILE_WIDTH))}: a tile was altered; refusing to extend the tree`);
      }
    }
    const tree = new TileTree(dir, size, edge);
    if (head) {
      const root = await tree.root();
      if (root.toString('base64') !== head.root) {
        throw new TileError(TREE_FILE, `root ${head.root} does not match the root ${root.toString('base64')} computed from the stored tiles at size ${size} (a tile was altered)`);
      }
    }
    return tree;
  }

  /** Hashes of the current partial tile of `level` at the current size (the archiver's check against its records). */
  edgeHashes(level: number): Buffer[] {
    return this.edge[level] ?? [];
  }

  reader(): NodeReader {
    return tileReader(this.dir, (L, index) => (index === Math.floor(Math.floor(this.count / TILE_WIDTH ** L) / TILE_WIDTH) ? this.edge[L] : undefined));
  }

  root(): Promise<Buffer> {
    return this.count === 0 ? Promise.resolve(EMPTY_ROOT) : rootHash(this.reader(), this.count);
  }

  /**
   * Appends leaf hashes: writes each tile that becomes full (refusing to overwrite a stored tile
   * with different hashes), the new partial tiles, then tree.json. Returns the new root.
   */
  async append(leaves: Buffer[]): Promise<Buffer> {
    if (leaves.length === 0) return this.root();
    const writes = new Map<string, Buffer>();
    const fullDone: string[] = [];
    const counts: number[] = [];
    for (let L = 0, n = this.count; L === 0 || n > 0; L++, n = Math.floor(n / TILE_WIDTH)) counts.push(n);
    const push = (L: number, h: Buffer): void => {
      if (counts[L] === undefined) counts[L] = 0;
      if (!this.edge[L]) this.edge[L] = [];
      const e = this.edge[L];
      e.push(h);
      counts[L]++;
      if (e.length === TILE_WIDTH) {
        const index = counts[L] / TILE_WIDTH - 1;
        const p = tilePath(L, index);
        writes.set(p, Buffer.concat(e));
        fullDone.push(p);
        this.edge[L] = [];
        push(L + 1, perfectRoot(e));
      }
    };
    for (const h of leaves) push(0, h);
    this.count += leaves.length;
    for (let L = 0; L < this.edge.length; L++) {
      const e = this.edge[L];
      if (e.length) writes.set(tilePath(L, Math.floor(counts[L] / TILE_WIDTH), e.length), Buffer.concat(e));
    }
    const fresh: [string, Buffer][] = [];
    for (const [p, data] of writes) {
      const path = join(this.dir, p);
      const old = readIfExists(path);
      if (old && !old.equals(data)) {
        this.count -= leaves.length; // unusable now; the caller re-opens from the files
        throw new TileError(p, 'is stored with different hashes than the records give: the stored tiles do not match the log (refusing to extend the tree)');
      }
      if (!old) fresh.push([path, data]);
    }
    // The batch's tiles at once: their fsyncs wait on the file system together (one journal
    // commit can serve several), not one after another. The tree head follows once all are durable.
    // All settle before a failure is thrown: none is left running when the caller re-opens the tree.
    const failed = (await Promise.allSettled(fresh.map(([path, data]) => writeDurably(path, data)))).find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    const root = await this.root();
    await writeDurably(join(this.dir, TREE_FILE), JSON.stringify({ size: this.count, root: root.toString('base64') } satisfies TreeHead) + '\n');
    // a full tile replaces its partial versions
    for (const p of fullDone) rmSync(join(this.dir, p + '.p'), { recursive: true, force: true });
    return root;
  }
}
