/**
 * Offline verification of an audit directory: every record chain, every body hash, the manifest
 * chain and each closed segment against its manifest entry. Reports the FIRST broken place.
 * Needs nothing but the files (no Redis, no config).
 */
import { readFile } from 'node:fs/promises';
import { readPruned } from './prune.js';
import { join } from 'node:path';
import {
  GENESIS,
  MANIFEST,
  chainHash,
  compareStreamIds,
  findPlaceholders,
  listSegments,
  parseRecord,
  serializeRecord,
  sha256Hex,
  type AuditRecord,
  type ManifestEntry,
} from './format.js';

export interface VerifyError {
  file: string;
  /** 1-based line in `file`; 0 when the whole file is concerned (e.g. missing). */
  line: number;
  seq?: number;
  message: string;
}

export interface VerifyResult {
  ok: boolean;
  records: number;
  segments: number;
  /** Records in pruned segments (deleted or moved): their chain is taken from the manifest. */
  pruned?: number;
  /** The last record verified: what an external anchor should be compared with. */
  head?: { seq: number; hash: string; streamId: string; file: string };
  error?: VerifyError;
}

class Broken extends Error {
  constructor(readonly where: VerifyError) {
    super(where.message);
  }
}

interface ManifestInfo {
  /** segment -> latest entry and its manifest line */
  latest: Map<string, { entry: ManifestEntry; line: number }>;
}

async function checkManifest(dir: string): Promise<ManifestInfo> {
  const latest = new Map<string, { entry: ManifestEntry; line: number }>();
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { latest };
    throw err;
  }
  const parts = text.split('\n');
  const torn = parts.pop();
  let prev = GENESIS;
  let lastSeq = 0;
  const fail = (line: number, message: string): never => {
    throw new Broken({ file: MANIFEST, line, message });
  };
  for (let i = 0; i < parts.length; i++) {
    const n = i + 1;
    let e: ManifestEntry;
    try {
      e = JSON.parse(parts[i]) as ManifestEntry;
    } catch {
      return fail(n, 'manifest line is not valid JSON');
    }
    if (!e || typeof e.segment !== 'string' || (e.type !== 'segment' && e.type !== 'compaction')) fail(n, 'not a manifest entry');
    if (e.prev !== prev) fail(n, `manifest chain broken: prev is ${e.prev}, the previous manifest line hashes to ${prev} (a line was altered, removed or reordered)`);
    prev = sha256Hex(parts[i] + '\n');
    const seen = latest.get(e.segment);
    if (e.type === 'segment') {
      if (seen) fail(n, `segment ${e.segment} is closed twice`);
      if (e.firstSeq !== lastSeq + 1) fail(n, `manifest sequence gap: ${e.segment} starts at seq ${e.firstSeq}, expected ${lastSeq + 1}`);
      if (e.count !== e.lastSeq - e.firstSeq + 1) fail(n, `count ${e.count} does not match seq ${e.firstSeq}..${e.lastSeq}`);
      lastSeq = e.lastSeq;
    } else {
      if (!seen) fail(n, `compaction of ${e.segment}, which was never closed`);
      const o = seen!.entry;
      if (o.firstSeq !== e.firstSeq || o.lastSeq !== e.lastSeq || o.count !== e.count || o.lastHash !== e.lastHash) {
        fail(n, `compaction of ${e.segment} changed its records (seq, count or chain hash differ from manifest line ${seen!.line})`);
      }
    }
    latest.set(e.segment, { entry: e, line: n });
  }
  if (torn) fail(parts.length + 1, 'last manifest line is truncated (no newline)');
  return { latest };
}

export async function verifyAuditDir(dir: string): Promise<VerifyResult> {
  let records = 0;
  let segments = 0;
  let head: VerifyResult['head'];
  let pruned = 0;
  try {
    const { latest } = await checkManifest(dir);
    const prunedSet = await readPruned(dir);
    const onDisk = await listSegments(dir);
    const names = [...new Set([...onDisk, ...latest.keys()])].sort();
    const present = new Set(onDisk);
    let expectedSeq = 1;
    let prevHash = GENESIS;
    let prevLoc: { file: string; line: number; seq: number } | null = null;
    let lastStreamId: string | null = null;

    for (let s = 0; s < names.length; s++) {
      const name = names[s];
      const m = latest.get(name);
      if (!present.has(name) && m && prunedSet.has(name) && segments === 0) {
        // pruned (fenliu audit prune): the chain resumes from the manifest's numbers
        const e = m.entry;
        expectedSeq = e.lastSeq + 1;
        prevHash = e.lastHash;
        lastStreamId = e.lastStreamId;
        pruned += e.count;
        continue;
      }
      if (!present.has(name)) {
        const e = m!.entry;
        throw new Broken({
          file: name,
          line: 0,
          seq: expectedSeq,
          message: `segment is missing (named in ${MANIFEST} line ${m!.line}, records seq ${e.firstSeq}..${e.lastSeq})`,
        });
      }
      if (!m && s !== names.length - 1) {
        throw new Broken({ file: name, line: 0, seq: expectedSeq, message: 'segment is not in the manifest although later segments exist' });
      }
      segments++;
      const buf = await readFile(join(dir, name));
      const parts = buf.toString('utf8').split('\n');
      const tornTail = parts.pop();
      const lines = tornTail ? [...parts, tornTail] : parts;
      let first: AuditRecord | null = null;
      let lastLine: string | null = null;
      let lastRec: AuditRecord | null = null;
      for (let i = 0; i < lines.length; i++) {
        const n = i + 1;
        const line = lines[i];
        const torn = tornTail !== undefined && tornTail !== '' && i === lines.length - 1;
        const at = (message: string, seq?: number): never => {
          throw new Broken({ file: name, line: n, seq: seq ?? expectedSeq, message });
        };
        let r: AuditRecord;
        try {
          r = parseRecord(line);
        } catch (err) {
          return at(torn ? 'last line is truncated (incomplete record)' : `not a valid record: ${(err as Error).message}`);
        }
        if (torn) at('last line is truncated (no newline at the end of the file)', r.seq);
        if (serializeRecord(r) !== line) at('record is not in canonical form (the line was edited)', r.seq);
        if (r.seq !== expectedSeq) {
          if (r.seq > expectedSeq) at(`sequence gap: expected seq ${expectedSeq}, found ${r.seq} (records ${expectedSeq}..${r.seq - 1} are missing, or lines are out of order)`, r.seq);
          at(`sequence out of order: expected seq ${expectedSeq}, found ${r.seq} (lines swapped or duplicated)`, r.seq);
        }
        if (r.prev !== prevHash) {
          if (prevLoc) {
            throw new Broken({
              file: prevLoc.file,
              line: prevLoc.line,
              seq: prevLoc.seq,
              message: `record seq ${prevLoc.seq} was altered: its hash ${prevHash} is not the prev ${r.prev} recorded by seq ${r.seq} (${name} line ${n})`,
            });
          }
          at(pruned ? `prev ${r.prev} is not the last chain hash ${prevHash} of the pruned segments (manifest)` : `the first record must have prev ${GENESIS}`, r.seq);
        }
        if (lastStreamId !== null && compareStreamIds(r.streamId, lastStreamId) <= 0) at(`stream id ${r.streamId} is not after ${lastStreamId}`, r.seq);
        const placeholders = findPlaceholders(r.event);
        const bodyKeys = Object.keys(r.bodies);
        for (const [path, hash] of placeholders) {
          const b = r.bodies[path];
          if (b === undefined) at(`body ${path} is missing`, r.seq);
          if (typeof b === 'string') {
            if (sha256Hex(b) !== hash) at(`body ${path} does not match its hash ${hash} (the body was altered)`, r.seq);
          } else if (!b || b.redacted !== true || b.sha256 !== hash) {
            at(`body ${path} is neither the body nor a redaction marker with hash ${hash}`, r.seq);
          }
        }
        if (bodyKeys.some((k) => !placeholders.has(k))) at('a body has no {"$body"} placeholder in the event', r.seq);
        first ??= r;
        lastLine = line;
        lastRec = r;
        prevHash = chainHash(line);
        prevLoc = { file: name, line: n, seq: r.seq };
        lastStreamId = r.streamId;
        expectedSeq++;
        records++;
      }
      if (m) {
        const e = m.entry;
        const where = (message: string): never => {
          throw new Broken({ file: name, line: lines.length, seq: lastRec?.seq, message: `${message} (manifest ${MANIFEST} line ${m.line})` });
        };
        if (!first || !lastRec || !lastLine) return where('closed segment is empty');
        if (e.count !== lines.length) where(`segment has ${lines.length} records, the manifest says ${e.count} (records removed or added at the end)`);
        if (e.firstSeq !== first.seq || e.lastSeq !== lastRec.seq) where(`segment holds seq ${first.seq}..${lastRec.seq}, the manifest says ${e.firstSeq}..${e.lastSeq}`);
        if (e.lastHash !== prevHash) where('chain hash of the last record does not match the manifest (the last record was altered)');
        if (e.firstStreamId !== first.streamId || e.lastStreamId !== lastRec.streamId) where('stream ids do not match the manifest');
        if (e.sha256 !== sha256Hex(buf)) where(`file hash ${sha256Hex(buf)} does not match the manifest's ${e.sha256}`);
      }
      if (lastRec && lastLine) head = { seq: lastRec.seq, hash: prevHash, streamId: lastRec.streamId, file: name };
    }
    return { ok: true, records, segments, ...(pruned ? { pruned } : {}), ...(head ? { head } : {}) };
  } catch (err) {
    if (err instanceof Broken) return { ok: false, records, segments, ...(pruned ? { pruned } : {}), error: err.where };
    throw err;
  }
}
