/**
 * RFC 9162 (Certificate Transparency 2.0) Merkle tree hashing, inclusion and consistency proofs.
 * Pure functions: node hashes come from a `NodeReader` (tiles on disk, or memory in tests), so
 * proof generation costs O(log n) node reads whatever the size of the log.
 *
 *   leaf hash  = SHA-256(0x00 || leaf data)
 *   node hash  = SHA-256(0x01 || left || right)
 *   MTH({})    = SHA-256("")
 */
import { createHash, hash } from 'node:crypto';

export const HASH_SIZE = 32;

// One-shot hashing of a reused input buffer: a Hash object and three updates per node cost more
// than the SHA-256 of its 65 bytes (the archiver hashes about one node per record).
const nodeInput = Buffer.alloc(1 + 2 * HASH_SIZE, 1);

export function leafHash(data: Buffer | string): Buffer {
  return createHash('sha256').update(Buffer.from([0])).update(data).digest();
}

export function nodeHash(left: Buffer, right: Buffer): Buffer {
  if (left.length !== HASH_SIZE || right.length !== HASH_SIZE) return createHash('sha256').update(Buffer.from([1])).update(left).update(right).digest();
  left.copy(nodeInput, 1);
  right.copy(nodeInput, 1 + HASH_SIZE);
  return hash('sha256', nodeInput, 'buffer');
}

export const EMPTY_ROOT: Buffer = createHash('sha256').digest();

/**
 * Hash of the perfect subtree of height `level` (2^level leaves) whose leaves start at
 * `index * 2^level`. Must only be asked for subtrees that are complete in the tree at hand.
 */
export type NodeReader = (level: number, index: number) => Promise<Buffer>;

/** Largest power of two strictly smaller than n (n ≥ 2). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function log2(n: number): number {
  let l = 0;
  while (n > 1) {
    n /= 2;
    l++;
  }
  return l;
}

function isPow2(n: number): boolean {
  // (not n & (n-1): sizes may pass 2^31)
  if (n <= 0) return false;
  while (n % 2 === 0) n /= 2;
  return n === 1;
}

/** MTH(D[start:end]); `start` is aligned to the largest power of two ≤ end-start, as in every RFC 9162 recursion. */
export async function subtreeHash(read: NodeReader, start: number, end: number): Promise<Buffer> {
  const n = end - start;
  if (n === 0) return EMPTY_ROOT;
  if (isPow2(n) && start % n === 0) return read(log2(n), start / n);
  const k = splitPoint(n);
  return nodeHash(await subtreeHash(read, start, start + k), await subtreeHash(read, start + k, end));
}

export function rootHash(read: NodeReader, size: number): Promise<Buffer> {
  return subtreeHash(read, 0, size);
}

/** RFC 9162 §2.1.3.1 PATH(m, D[n]): the inclusion proof of leaf `index` in the tree of `size` leaves. */
export async function inclusionProof(read: NodeReader, index: number, size: number): Promise<Buffer[]> {
  if (!(index >= 0 && index < size)) throw new RangeError(`leaf index ${index} is not in a tree of size ${size}`);
  const out: Buffer[] = [];
  const path = async (m: number, start: number, end: number): Promise<void> => {
    const n = end - start;
    if (n <= 1) return;
    const k = splitPoint(n);
    if (m < k) {
      await path(m, start, start + k);
      out.push(await subtreeHash(read, start + k, end));
    } else {
      await path(m - k, start + k, end);
      out.push(await subtreeHash(read, start, start + k));
    }
  };
  await path(index, 0, size);
  return out;
}

/** RFC 9162 §2.1.4.1 PROOF(m, D[n]): consistency proof between the trees of `oldSize` and `newSize` leaves. */
export async function consistencyProof(read: NodeReader, oldSize: number, newSize: number): Promise<Buffer[]> {
  if (!(oldSize >= 0 && oldSize <= newSize)) throw new RangeError(`cannot prove consistency from size ${oldSize} to ${newSize}`);
  const out: Buffer[] = [];
  if (oldSize === 0 || oldSize === newSize) return out;
  const sub = async (m: number, start: number, end: number, b: boolean): Promise<void> => {
    const n = end - start;
    if (m === n) {
      if (!b) out.push(await subtreeHash(read, start, end));
      return;
    }
    const k = splitPoint(n);
    if (m <= k) {
      await sub(m, start, start + k, b);
      out.push(await subtreeHash(read, start + k, end));
    } else {
      await sub(m - k, start + k, end, false);
      out.push(await subtreeHash(read, start, start + k));
    }
  };
  await sub(oldSize, 0, newSize, true);
  return out;
}

/** RFC 9162 §2.1.3.2: recomputes the root from a leaf hash and its inclusion proof. */
export function rootFromInclusionProof(index: number, size: number, leaf: Buffer, proof: Buffer[]): Buffer {
  if (!(index >= 0 && index < size)) throw new Error(`leaf index ${index} is not in a tree of size ${size}`);
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) throw new Error('inclusion proof is too long');
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Error('inclusion proof is too short');
  return r;
}

export function verifyInclusion(index: number, size: number, leaf: Buffer, proof: Buffer[], root: Buffer): boolean {
  try {
    return rootFromInclusionProof(index, size, leaf, proof).equals(root);
  } catch {
    return false;
  }
}

/** RFC 9162 §2.1.4.2: true when the tree (newSize, newRoot) extends (oldSize, oldRoot). */
export function verifyConsistency(oldSize: number, newSize: number, oldRoot: Buffer, newRoot: Buffer, proof: Buffer[]): boolean {
  if (oldSize > newSize) return false;
  if (oldSize === newSize) return proof.length === 0 && oldRoot.equals(newRoot);
  if (oldSize === 0) return proof.length === 0;
  if (proof.length === 0) return false;
  let path = proof;
  if (isPow2(oldSize)) path = [oldRoot, ...proof];
  let fn = oldSize - 1;
  let sn = newSize - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && fr.equals(oldRoot) && sr.equals(newRoot);
}

/** A NodeReader over leaf hashes held in memory (tests, small trees). */
export function memoryReader(leaves: Buffer[]): NodeReader {
  const cache = new Map<string, Buffer>();
  const read: NodeReader = async (level, index) => {
    if (level === 0) return leaves[index];
    const key = `${level}/${index}`;
    let h = cache.get(key);
    if (!h) {
      h = nodeHash(await read(level - 1, index * 2), await read(level - 1, index * 2 + 1));
      cache.set(key, h);
    }
    return h;
  };
  return read;
}
