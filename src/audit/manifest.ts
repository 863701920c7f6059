/** Manifest appends (shared by the archiver and compaction) and segment descriptions. */
import { open, readFile, stat, truncate, unlink } from 'node:fs/promises';
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

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Appends `data` and fsyncs; returns true when the file was empty (new) before. */
export async function appendDurably(path: string, data: string | Buffer): Promise<boolean> {
  const fh = await open(path, 'a');
  let created = false;
  try {
    created = (await fh.stat()).size === 0;
    if (typeof data === 'string') await fh.write(data);
    else for (let off = 0; off < data.length; ) off += (await fh.write(data, off)).bytesWritten;
    await fh.sync();
  } finally {
    await fh.close();
  }
  return created;
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

/** Describes a segment file from its content (the file is the truth). */
export async function describeSegment(dir: string, name: string): Promise<Omit<ManifestEntry, 'type' | 'at' | 'prev'>> {
  const buf = await readFile(join(dir, name));
  const lines = buf.toString('utf8').split('\n');
  if (lines.pop() !== '') throw new Error(`${name}: last line is not terminated`);
  if (lines.length === 0) throw new Error(`${name}: empty segment`);
  const first = parseRecord(lines[0]);
  const lastLine = lines[lines.length - 1];
  const last = parseRecord(lastLine);
  return {
    segment: name,
    firstSeq: first.seq,
    lastSeq: last.seq,
    count: lines.length,
    firstStreamId: first.streamId,
    lastStreamId: last.streamId,
    lastHash: chainHash(lastLine),
    sha256: sha256Hex(buf),
  };
}
