/** Manifest appends (shared by the archiver and compaction) and segment descriptions. */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, fsync, openSync, writeSync } from 'node:fs';
import { open, stat, truncate, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { GENESIS, MANIFEST, chainHash, parseRecord, readLastLine, sha256Hex, type ManifestEntry } from './format.js';

const LOCK = '.manifest.lock';
const STALE_MS = 30_000;

/** Short-lived directory lock around manifest appends (the archiver and compaction both append). */
export async function withManifestLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const p = join(dir, LOCK);
  for (;;) {
    try {
      const fh = await open(p, 'wx');
      await fh.writeFile(String(process.pid));
      await fh.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const st = await stat(p).catch(() => null);
      if (st && Date.now() - st.mtimeMs > STALE_MS) {
        await unlink(p).catch(() => undefined);
        continue;
      }
      await sleep(10); // lock contention (rare, short): poll
    }
  }
  try {
    return await fn();
  } finally {
    await unlink(p).catch(() => undefined);
  }
}

/**
 * fsync off the main thread (it can take milliseconds). The archiver's other file calls around
 * it (open, a write into the page cache, close, rename) are synchronous: each takes microseconds
 * of the kernel, while the promise API's FileHandle, thread-pool hop and wake-up cost the worker
 * process ~4× that in CPU, and the archiver makes ~20 of them per batch (segment, tiles, tree).
 */
export function fsyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())));
}

export async function fsyncDir(dir: string): Promise<void> {
  const fd = openSync(dir, 'r');
  try {
    await fsyncFd(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes all of `data` at the file position (a short write is continued). */
export function writeAllSync(fd: number, data: string | Buffer): void {
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off);
}

/** Appends `data` and fsyncs; returns true when the file was empty (new) before. */
export async function appendDurably(path: string, data: string | Buffer): Promise<boolean> {
  const fd = openSync(path, 'a');
  try {
    const created = fstatSync(fd).size === 0;
    writeAllSync(fd, data);
    await fsyncFd(fd);
    return created;
  } finally {
    closeSync(fd);
  }
}

/**
 * Appends one manifest entry, chained to the current last manifest line (read under the lock).
 * A torn last line (an append interrupted by a crash) is cut off first.
 */
export async function appendManifestEntry(dir: string, entry: Omit<ManifestEntry, 'prev'>): Promise<ManifestEntry> {
  return withManifestLock(dir, async () => {
    const path = join(dir, MANIFEST);
    let prev = GENESIS;
    try {
      const { line, size, completeSize } = await readLastLine(path);
      if (size !== completeSize) await truncate(path, completeSize);
      if (line !== null) prev = sha256Hex(line + '\n');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const full: ManifestEntry = { ...entry, prev };
    const created = await appendDurably(path, JSON.stringify(full) + '\n');
    if (created) await fsyncDir(dir);
    return full;
  });
}

/** Bytes read per step when a segment is described: the event loop runs between steps. */
const DESCRIBE_CHUNK = 1 << 20;

/**
 * Describes a segment file from its content (the file is the truth). Read in steps of
 * DESCRIBE_CHUNK bytes, hashed and counted as bytes: a closed segment is up to
 * `segmentMaxBytes` (64 MB), and decoding it whole into one string and its lines blocked the
 * archiving process's event loop for ~180 ms per roll and held it several times over in memory.
 */
export async function describeSegment(dir: string, name: string): Promise<Omit<ManifestEntry, 'type' | 'at' | 'prev'>> {
  const fh = await open(join(dir, name), 'r');
  const h = createHash('sha256');
  let count = 0;
  let firstLine: string | undefined;
  const head: Buffer[] = [];
  let lastByte = -1;
  let size = 0;
  try {
    const buf = Buffer.allocUnsafe(DESCRIBE_CHUNK);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, size);
      if (bytesRead === 0) break;
      const chunk = buf.subarray(0, bytesRead);
      h.update(chunk);
      let nl = chunk.indexOf(0x0a);
      if (firstLine === undefined) {
        // Copied: the buffer is read into again.
        head.push(Buffer.from(nl < 0 ? chunk : chunk.subarray(0, nl)));
        if (nl >= 0) firstLine = Buffer.concat(head).toString('utf8');
      }
      for (; nl >= 0; nl = chunk.indexOf(0x0a, nl + 1)) count++;
      lastByte = chunk[bytesRead - 1];
      size += bytesRead;
    }
  } finally {
    await fh.close();
  }
  if (size === 0) throw new Error(`${name}: empty segment`);
  if (lastByte !== 0x0a) throw new Error(`${name}: last line is not terminated`);
  const { line: lastLine } = await readLastLine(join(dir, name));
  const firstRec = parseRecord(firstLine!);
  const last = parseRecord(lastLine!);
  return {
    segment: name,
    firstSeq: firstRec.seq,
    lastSeq: last.seq,
    count,
    firstStreamId: firstRec.streamId,
    lastStreamId: last.streamId,
    lastHash: chainHash(lastLine!),
    sha256: h.digest('hex'),
  };
}
