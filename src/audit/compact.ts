/**
 * Retention for payload bodies (personal data): in CLOSED segments, bodies of records older than
 * `olderThan` are replaced by {"redacted":true,"sha256":"<hash of the body text>"}.
 *
 * Bodies live outside the chained part of a record (see format.ts), so the chain and the
 * manifest's per-segment chain hash stay valid. The segment file is rewritten (temp file, fsync,
 * rename) and a `compaction` manifest line records the new file hash next to the old one.
 */
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { appendManifestEntry, describeSegment, fsyncDir } from './manifest.js';
import { parseRecord, readManifest, serializeRecord, sha256Hex, streamIdMs, type ManifestEntry } from './format.js';

export interface CompactOptions {
  /** Bodies of records whose event time (`at`, else the stream time) is before this are removed. */
  olderThan: Date;
  /** Body paths to remove (e.g. ["data.alert"]); default: every body. Only paths stored as bodies can be removed. */
  fields?: string[];
}

export interface CompactResult {
  /** segments rewritten */
  segments: string[];
  /** bodies removed */
  redacted: number;
}

export async function compactSegments(dir: string, opts: CompactOptions): Promise<CompactResult> {
  const cutoff = opts.olderThan.getTime();
  if (Number.isNaN(cutoff)) throw new TypeError('olderThan must be a valid Date');
  const fields = opts.fields ? new Set(opts.fields) : null;
  const { entries } = await readManifest(dir);
  const latest = new Map<string, ManifestEntry>();
  for (const e of entries) latest.set(e.segment, e);
  const result: CompactResult = { segments: [], redacted: 0 };

  for (const [name, entry] of latest) {
    const path = join(dir, name);
    const buf = await readFile(path);
    const fileHash = sha256Hex(buf);
    if (fileHash !== entry.sha256) {
      // A compaction that crashed between rename and manifest append leaves a file that differs
      // from the manifest only by redactions; anything else is damage that verify must report.
      const d = await describeSegment(dir, name);
      if (d.count !== entry.count || d.lastHash !== entry.lastHash || d.firstSeq !== entry.firstSeq) {
        throw new Error(`${name} does not match its manifest entry; run "fenliu audit verify" before compacting`);
      }
    }
    const lines = buf.toString('utf8').split('\n');
    lines.pop();
    let redacted = 0;
    const out = lines.map((line) => {
      const r = parseRecord(line);
      const at = Date.parse(r.event.at);
      const t = Number.isNaN(at) ? streamIdMs(r.streamId) : at;
      if (t >= cutoff) return line;
      let changed = false;
      for (const [p, b] of Object.entries(r.bodies)) {
        if (typeof b !== 'string' || (fields && !fields.has(p))) continue;
        r.bodies[p] = { redacted: true, sha256: sha256Hex(b) };
        changed = true;
        redacted++;
      }
      return changed ? serializeRecord(r) : line;
    });
    if (redacted === 0 && fileHash === entry.sha256) continue;
    const data = out.join('\n') + '\n';
    const tmp = join(dir, `.${name}.compact.tmp`);
    const fh = await open(tmp, 'w');
    try {
      await fh.write(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await rename(tmp, path);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    await fsyncDir(dir);
    const d = await describeSegment(dir, name);
    await appendManifestEntry(dir, {
      ...d,
      type: 'compaction',
      at: new Date().toISOString(),
      replacedSha256: entry.sha256,
      redacted,
    });
    result.segments.push(name);
    result.redacted += redacted;
  }
  return result;
}
