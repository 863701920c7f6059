/**
 * Pruning: closed segments older than a date are deleted or moved to cold storage. The manifest
 * (with each segment's numbers and last chain hash) and the tiles stay, so the chain of the kept
 * segments, `verify --since` from a retained checkpoint and proofs for retained alerts still work.
 * `pruned.jsonl` lists what was removed, on purpose: any other missing segment is an error.
 */
import { copyFile, mkdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { appendDurably, fsyncDir } from './manifest.js';
import { listSegments, readManifest, streamIdMs } from './format.js';

export const PRUNED_FILE = 'pruned.jsonl';

export interface PrunedEntry {
  segment: string;
  firstSeq: number;
  lastSeq: number;
  sha256: string;
  at: string;
  movedTo?: string;
}

export async function readPruned(dir: string): Promise<Map<string, PrunedEntry>> {
  const out = new Map<string, PrunedEntry>();
  let text: string;
  try {
    text = await readFile(join(dir, PRUNED_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw err;
  }
  for (const l of text.split('\n')) {
    if (!l) continue;
    const e = JSON.parse(l) as PrunedEntry;
    out.set(e.segment, e);
  }
  return out;
}

/**
 * Removes (or, with `moveTo`, moves) the oldest closed segments whose last record is older than
 * `before`: a prefix of the log, never the open segment. Returns the segments pruned.
 */
export async function pruneSegments(dir: string, opts: { before: Date; moveTo?: string }): Promise<PrunedEntry[]> {
  const { entries } = await readManifest(dir);
  const latest = new Map<string, (typeof entries)[number]>();
  for (const e of entries) latest.set(e.segment, e);
  const done: PrunedEntry[] = [];
  if (opts.moveTo) await mkdir(opts.moveTo, { recursive: true });
  for (const name of await listSegments(dir)) {
    const e = latest.get(name);
    if (!e || streamIdMs(e.lastStreamId) >= opts.before.getTime()) break;
    const entry: PrunedEntry = { segment: name, firstSeq: e.firstSeq, lastSeq: e.lastSeq, sha256: e.sha256, at: new Date().toISOString(), ...(opts.moveTo ? { movedTo: opts.moveTo } : {}) };
    if (opts.moveTo) {
      const dest = join(opts.moveTo, name);
      await copyFile(join(dir, name), dest);
      await appendDurably(dest, ''); // fsync the copy before the original goes
      await fsyncDir(opts.moveTo);
    }
    await appendDurably(join(dir, PRUNED_FILE), JSON.stringify(entry) + '\n');
    await unlink(join(dir, name));
    done.push(entry);
  }
  if (done.length) await fsyncDir(dir);
  return done;
}
