/**
 * The audit index: an embedded SQLite database (`index.sqlite` in the audit directory) of every
 * archived record by seq, with its alert, delivery, platform, source, type and times, and WHERE
 * it is (segment file, byte offset, length). Queries look records up here and read just those
 * lines back from the segments, instead of scanning every file.
 *
 * The segments stay the only source of truth: the index holds nothing that cannot be rebuilt
 * from them (`fenliu audit index DIR`), and every read first catches up with the files, so a
 * missing, stale or outdated index is built or brought up to date automatically:
 * - new lines at the end of a segment, or new segments, are indexed from the byte where the
 *   index stopped (the archiver also adds each batch right after it is durable: `add`);
 * - a compaction rewrites a segment (shorter bodies, new offsets) and appends a manifest line:
 *   a manifest that grew makes the index re-read every segment whose file changed;
 * - a schema version mismatch or an unreadable database file makes it start again from scratch.
 * Rows are keyed by seq and inserted with OR IGNORE, so the archiver and a reader catching up in
 * another process may both write the same rows (SQLite's locking serialises them).
 */
import { mkdirSync, unlinkSync } from 'node:fs';
import { open, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { AuditEvent } from './events.js';
import { BODIES_MARK, MANIFEST, SEGMENT_RE, parseRecord, type AuditRecord } from './format.js';

export const INDEX_FILE = 'index.sqlite';
/** Bump when the table layout changes: an index of another version is rebuilt. */
const SCHEMA_VERSION = '1';

/** One archived line as the archiver wrote it (the hook's argument). */
export interface ArchivedLine {
  seq: number;
  streamId: string;
  segment: string;
  /** byte offset of the line in the segment */
  offset: number;
  /** bytes of the line, without its newline */
  length: number;
  /** the record's event (bodies may be placeholders; only the metadata is indexed) */
  event: AuditEvent;
}

/** A record read back through the index. */
export interface IndexedRecord {
  seq: number;
  streamId: string;
  segment: string;
  offset: number;
  /** the exact line (no newline): chain input, proofs and leaf hashes are computed from it */
  line: string;
  record: AuditRecord;
}

export interface IndexFilter {
  alertId?: string;
  deliveryId?: string;
  platform?: string;
  source?: string;
  /** exact type, or a prefix ending in ".*" */
  type?: string;
  /** event time, ms, inclusive */
  fromMs?: number;
  /** event time, ms, exclusive */
  toMs?: number;
  /** only records after this stream id */
  afterStreamId?: string | null;
}

const DDL = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS segments (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
  indexed INTEGER NOT NULL, -- bytes indexed (always at a line end)
  ino TEXT, mtime REAL);
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY, sid_ms INTEGER NOT NULL, sid_n INTEGER NOT NULL, at_ms INTEGER,
  type TEXT NOT NULL, alert_id TEXT, delivery_id TEXT, platform_id TEXT, source_id TEXT,
  segment INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL);
`;

/**
 * Secondary indexes: created after the rows on a full rebuild (sorting once beats inserting into
 * seven B-trees). Stream ids grow with seq (the archiver appends in stream order), so a cursor is
 * found by a binary search over the primary key: an index on them (`events_sid`, dropped when an
 * index is opened) cost every insert a B-tree for nothing.
 */
const INDEX_DDL = `
CREATE INDEX IF NOT EXISTS events_alert ON events(alert_id, seq) WHERE alert_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_delivery ON events(delivery_id, seq) WHERE delivery_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_platform ON events(platform_id, seq) WHERE platform_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_source ON events(source_id, seq) WHERE source_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_type ON events(type, seq);
CREATE INDEX IF NOT EXISTS events_at ON events(at_ms, seq);
CREATE INDEX IF NOT EXISTS events_segment ON events(segment, seq);
`;

const ROWS_PER_INSERT = 64;

type Row = { seq: number; sid_ms: number; sid_n: number; segment: number; offset: number; length: number };

function splitStreamId(id: string): [number, number] {
  const [ms, n] = id.split('-');
  return [Number(ms), Number(n ?? 0)];
}

/** The event of a line, parsed from its chained part only (bodies can be large). */
function eventOfLine(line: string): { seq: number; streamId: string; event: AuditEvent } {
  const i = line.lastIndexOf(BODIES_MARK);
  const r = JSON.parse(i >= 0 ? line.slice(0, i) + '}' : line) as { seq: number; streamId: string; event: AuditEvent };
  if (!Number.isSafeInteger(r.seq) || typeof r.streamId !== 'string' || !r.event) throw new Error('not an audit record');
  return r;
}

export class AuditIndex {
  readonly dir: string;
  private db: Database.Database;
  private segIds = new Map<string, number>();
  private segNames = new Map<number, string>();
  private chain: Promise<unknown> = Promise.resolve();
  private insert!: Database.Statement;
  /** ROWS_PER_INSERT rows in one statement: a call per row into SQLite cost more than the row. */
  private insertMany!: Database.Statement;
  private upsertSeg!: Database.Statement;

  private constructor(dir: string, db: Database.Database) {
    this.dir = dir;
    this.db = db;
    this.prepare();
  }

  /**
   * Opens (creating or rebuilding as needed) the index of an audit directory. Does not catch up.
   * `bulk`: for a fresh database about to be filled at once; call `finishBulk()` after.
   */
  static open(dir: string, opts: { bulk?: boolean } = {}): AuditIndex {
    mkdirSync(dir, { recursive: true });
    const path = join(dir, INDEX_FILE);
    let db: Database.Database;
    try {
      db = AuditIndex.connect(path, opts.bulk);
      const v = db.prepare(`SELECT value FROM meta WHERE key = 'version'`).get() as { value: string } | undefined;
      if (v && v.value !== SCHEMA_VERSION) throw new Error(`index schema ${v.value}, want ${SCHEMA_VERSION}`);
    } catch {
      // unreadable or of another version: it is only derived data, start again from the segments
      for (const f of [path, `${path}-wal`, `${path}-shm`]) {
        try {
          unlinkSync(f);
        } catch {
          // absent
        }
      }
      db = AuditIndex.connect(path, opts.bulk);
    }
    db.prepare(`INSERT OR IGNORE INTO meta(key, value) VALUES ('version', ?)`).run(SCHEMA_VERSION);
    return new AuditIndex(dir, db);
  }

  private static connect(path: string, bulk = false): Database.Database {
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    // The index can always be rebuilt from the fsynced segments: no need to fsync it too.
    db.pragma('synchronous = OFF');
    db.pragma('busy_timeout = 5000');
    // 64 MB of page cache (default 2 MB): inserts into the per-column B-trees stay in memory.
    db.pragma('cache_size = -65536');
    db.exec(DDL);
    if (!bulk) db.exec(INDEX_DDL);
    db.exec('DROP INDEX IF EXISTS events_sid');
    return db;
  }

  /** Creates the secondary indexes after a bulk load. */
  finishBulk(): void {
    this.db.exec(INDEX_DDL);
  }

  private prepare(): void {
    const insert = (rows: number) =>
      this.db.prepare(
        `INSERT OR IGNORE INTO events(seq, sid_ms, sid_n, at_ms, type, alert_id, delivery_id, platform_id, source_id, segment, offset, length)
         VALUES ${Array(rows).fill('(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)').join(', ')}`,
      );
    this.insert = insert(1);
    this.insertMany = insert(ROWS_PER_INSERT);
    this.upsertSeg = this.db.prepare(
      `INSERT INTO segments(name, indexed, ino, mtime) VALUES (?, ?, ?, ?)
       ON CONFLICT(name) DO UPDATE SET indexed = max(indexed, excluded.indexed), ino = coalesce(excluded.ino, ino), mtime = coalesce(excluded.mtime, mtime)`,
    );
    for (const r of this.db.prepare('SELECT id, name FROM segments').all() as { id: number; name: string }[]) {
      this.segIds.set(r.name, r.id);
      this.segNames.set(r.id, r.name);
    }
  }

  close(): void {
    this.db.close();
  }

  private segId(name: string): number {
    let id = this.segIds.get(name);
    if (id === undefined) {
      this.upsertSeg.run(name, 0, null, null);
      id = (this.db.prepare('SELECT id FROM segments WHERE name = ?').get(name) as { id: number }).id;
      this.segIds.set(name, id);
      this.segNames.set(id, name);
    }
    return id;
  }

  /** Adds lines the archiver has just made durable (idempotent). */
  add(lines: ArchivedLine[]): void {
    if (!lines.length) return;
    const ends = new Map<string, number>();
    this.db.transaction(() => {
      const many = lines.length - (lines.length % ROWS_PER_INSERT);
      let args: unknown[] = [];
      for (let i = 0; i < lines.length; i++) {
        const l = lines[i];
        const [ms, n] = splitStreamId(l.streamId);
        const e = l.event;
        const at = Date.parse(e.at);
        args.push(l.seq, ms, n, Number.isNaN(at) ? null : at, e.type, e.alertId ?? null, e.deliveryId ?? null, e.platformId ?? null, e.sourceId ?? null, this.segId(l.segment), l.offset, l.length);
        if (i < many ? (i + 1) % ROWS_PER_INSERT === 0 : true) {
          (i < many ? this.insertMany : this.insert).run(args);
          args = [];
        }
        ends.set(l.segment, Math.max(ends.get(l.segment) ?? 0, l.offset + l.length + 1));
      }
      for (const [name, end] of ends) this.upsertSeg.run(name, end, null, null);
    })();
  }

  /** Highest indexed seq (0 when empty) and its stream id. */
  head(): { seq: number; streamId: string | null } {
    const r = this.db.prepare('SELECT seq, sid_ms, sid_n FROM events ORDER BY seq DESC LIMIT 1').get() as Row | undefined;
    return r ? { seq: r.seq, streamId: `${r.sid_ms}-${r.sid_n}` } : { seq: 0, streamId: null };
  }

  count(): number {
    return (this.db.prepare('SELECT count(*) AS n FROM events').get() as { n: number }).n;
  }

  /** Brings the index up to date with the files; returns the number of lines indexed. Serialised per index. */
  catchUp(): Promise<number> {
    const p = this.chain.then(() => this.catchUpInner());
    this.chain = p.catch(() => undefined);
    return p;
  }

  private async catchUpInner(): Promise<number> {
    const names = (await readdir(this.dir).catch(() => [] as string[])).filter((n) => SEGMENT_RE.test(n)).sort();
    // A manifest that grew may record a compaction (a rewritten file): compare file identities then.
    const mstat = await stat(join(this.dir, MANIFEST)).catch(() => null);
    const msize = String(mstat?.size ?? 0);
    const seen = (this.db.prepare(`SELECT value FROM meta WHERE key = 'manifestSize'`).get() as { value: string } | undefined)?.value;
    const checkAll = seen !== msize;
    const known = new Map((this.db.prepare('SELECT name, indexed, ino, mtime FROM segments').all() as { name: string; indexed: number; ino: string | null; mtime: number | null }[]).map((r) => [r.name, r]));
    const present = new Set(names);
    let added = 0;
    for (const [name] of known) if (!present.has(name)) this.dropSegment(name); // pruned or moved away
    for (let i = 0; i < names.length; i++) {
      const name = names[i];
      const k = known.get(name);
      const last = i === names.length - 1;
      // Closed, fully indexed segments only change through compaction (seen in the manifest).
      if (k && !last && !checkAll && k.ino !== null) continue;
      const st = await stat(join(this.dir, name)).catch(() => null);
      if (!st) continue;
      const ino = String(st.ino);
      let from = k?.indexed ?? 0;
      if (k && k.ino !== null && (k.ino !== ino || st.size < k.indexed)) {
        // rewritten (compaction: same records, other offsets): index it again
        this.dropSegment(name);
        from = 0;
      }
      if (from < st.size) added += await this.indexFile(name, from);
      if (!k || k.ino !== ino || k.mtime !== st.mtimeMs) this.db.prepare('UPDATE segments SET ino = ?, mtime = ? WHERE name = ?').run(ino, st.mtimeMs, name);
    }
    if (checkAll) this.db.prepare(`INSERT INTO meta(key, value) VALUES ('manifestSize', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`).run(msize);
    return added;
  }

  private dropSegment(name: string): void {
    const id = this.segIds.get(name);
    this.db.transaction(() => {
      if (id !== undefined) this.db.prepare('DELETE FROM events WHERE segment = ?').run(id);
      this.db.prepare('DELETE FROM segments WHERE name = ?').run(name);
    })();
    if (id !== undefined) {
      this.segIds.delete(name);
      this.segNames.delete(id);
    }
  }

  /** Indexes the complete lines of a segment from byte `from` on. */
  private async indexFile(name: string, from: number): Promise<number> {
    const fh = await open(join(this.dir, name), 'r');
    let added = 0;
    try {
      const chunk = Buffer.alloc(8 * 1024 * 1024);
      let pos = from;
      let carry = Buffer.alloc(0);
      let carryAt = from;
      for (;;) {
        const { bytesRead } = await fh.read(chunk, 0, chunk.length, pos);
        if (bytesRead === 0) break;
        pos += bytesRead;
        const buf = carry.length ? Buffer.concat([carry, chunk.subarray(0, bytesRead)]) : chunk.subarray(0, bytesRead);
        const batch: ArchivedLine[] = [];
        let start = 0;
        for (let nl = buf.indexOf(0x0a, start); nl >= 0; nl = buf.indexOf(0x0a, start)) {
          const line = buf.toString('utf8', start, nl);
          if (line) {
            const r = eventOfLine(line);
            batch.push({ seq: r.seq, streamId: r.streamId, event: r.event, segment: name, offset: carryAt + start, length: nl - start });
          }
          start = nl + 1;
        }
        this.add(batch);
        added += batch.length;
        carry = Buffer.from(buf.subarray(start)); // a torn or still-being-written line waits
        carryAt += start;
      }
    } finally {
      await fh.close();
    }
    return added;
  }

  /** Rows matching a filter, in seq order, at most `limit`. */
  find(f: IndexFilter, limit: number): { seq: number; streamId: string; segment: string; offset: number; length: number }[] {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (f.alertId !== undefined) (where.push('alert_id = ?'), args.push(f.alertId));
    if (f.deliveryId !== undefined) (where.push('delivery_id = ?'), args.push(f.deliveryId));
    if (f.platform !== undefined) (where.push('platform_id = ?'), args.push(f.platform));
    if (f.source !== undefined) (where.push('source_id = ?'), args.push(f.source));
    if (f.type !== undefined) {
      if (f.type.endsWith('.*')) {
        // "delivery.*": every type from "delivery." up to (not incl.) "delivery/" ('/' follows '.')
        const p = f.type.slice(0, -1);
        where.push('type >= ? AND type < ?');
        args.push(p, p.slice(0, -1) + '/');
      } else (where.push('type = ?'), args.push(f.type));
    }
    if (f.fromMs !== undefined) (where.push('at_ms >= ?'), args.push(f.fromMs));
    if (f.toMs !== undefined) (where.push('at_ms < ?'), args.push(f.toMs));
    if (f.afterStreamId) {
      const [ms, n] = splitStreamId(f.afterStreamId);
      const first = this.firstSeqAfter(ms, n);
      if (first === null) return [];
      where.push('seq >= ?');
      args.push(first);
    }
    const sql = `SELECT seq, sid_ms, sid_n, segment, offset, length FROM events ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY seq LIMIT ?`;
    const rows = this.db.prepare(sql).all(...args, limit) as Row[];
    return rows.map((r) => ({ seq: r.seq, streamId: `${r.sid_ms}-${r.sid_n}`, segment: this.segNames.get(r.segment) ?? this.segName(r.segment), offset: r.offset, length: r.length }));
  }

  /** The first seq whose stream id is after ms-n (null if none): a binary search over seq, as stream ids grow with it. */
  private firstSeqAfter(ms: number, n: number): number | null {
    const after = (r: Row) => r.sid_ms > ms || (r.sid_ms === ms && r.sid_n > n);
    const at = this.db.prepare('SELECT seq, sid_ms, sid_n FROM events WHERE seq >= ? ORDER BY seq LIMIT 1');
    const last = this.db.prepare('SELECT seq, sid_ms, sid_n FROM events ORDER BY seq DESC LIMIT 1').get() as Row | undefined;
    if (!last || !after(last)) return null;
    let best = last.seq;
    let lo = (at.get(0) as Row).seq;
    let hi = last.seq - 1;
    // invariant: the answer is `best` or in [lo, hi]; a probe lands on the first row at or after mid (seqs may have gaps)
    while (lo <= hi) {
      const mid = lo + Math.floor((hi - lo) / 2);
      const r = at.get(mid) as Row;
      if (after(r)) {
        best = Math.min(best, r.seq);
        hi = mid - 1;
      } else lo = r.seq + 1;
    }
    return best;
  }

  private segName(id: number): string {
    const r = this.db.prepare('SELECT name FROM segments WHERE id = ?').get(id) as { name: string } | undefined;
    if (!r) throw new Error(`audit index: unknown segment id ${id}`);
    this.segIds.set(r.name, id);
    this.segNames.set(id, r.name);
    return r.name;
  }

  /** Alert ids of `alert.received` events in a time range (for replay selection), in log order. */
  receivedAlerts(f: { fromMs?: number; toMs?: number; source?: string }): string[] {
    const where = [`type = 'alert.received'`, 'alert_id IS NOT NULL'];
    const args: (string | number)[] = [];
    if (f.fromMs !== undefined) (where.push('at_ms >= ?'), args.push(f.fromMs));
    if (f.toMs !== undefined) (where.push('at_ms < ?'), args.push(f.toMs));
    if (f.source !== undefined) (where.push('source_id = ?'), args.push(f.source));
    const rows = this.db.prepare(`SELECT alert_id FROM events WHERE ${where.join(' AND ')} ORDER BY seq`).all(...args) as { alert_id: string }[];
    return rows.map((r) => r.alert_id);
  }

  /**
   * Reads the lines of index rows back from the segments (one open per segment). A line that is
   * not the record the index promised (a segment rewritten meanwhile) throws `StaleIndexError`.
   */
  async read(rows: { seq: number; segment: string; offset: number; length: number }[]): Promise<IndexedRecord[]> {
    const out: IndexedRecord[] = [];
    const bySeg = new Map<string, typeof rows>();
    for (const r of rows) {
      const l = bySeg.get(r.segment);
      if (l) l.push(r);
      else bySeg.set(r.segment, [r]);
    }
    for (const [segment, rs] of bySeg) {
      let fh;
      try {
        fh = await open(join(this.dir, segment), 'r');
      } catch {
        throw new StaleIndexError(`${segment} is gone`);
      }
      try {
        for (const r of rs) {
          const buf = Buffer.alloc(r.length);
          const { bytesRead } = await fh.read(buf, 0, r.length, r.offset);
          const line = buf.toString('utf8', 0, bytesRead);
          let record: AuditRecord;
          try {
            record = parseRecord(line);
          } catch {
            throw new StaleIndexError(`${segment} at ${r.offset} holds no record`);
          }
          if (record.seq !== r.seq) throw new StaleIndexError(`${segment} at ${r.offset} holds seq ${record.seq}, not ${r.seq}`);
          out.push({ seq: r.seq, streamId: record.streamId, segment, offset: r.offset, line, record });
        }
      } finally {
        await fh.close();
      }
    }
    return out.sort((a, b) => a.seq - b.seq);
  }
}

export class StaleIndexError extends Error {}


const opened = new Map<string, AuditIndex>();

/** The (cached, per process) index of an audit directory, as it is (the archiver's hook adds to it). */
export function openAuditIndex(dir: string): AuditIndex {
  let idx = opened.get(dir);
  if (!idx) {
    idx = AuditIndex.open(dir);
    opened.set(dir, idx);
  }
  return idx;
}

/** The (cached, per process) index of an audit directory, caught up with the files. */
export async function auditIndex(dir: string): Promise<AuditIndex> {
  const idx = openAuditIndex(dir);
  await idx.catchUp();
  return idx;
}

/** Closes every cached index (tests, shutdown). */
export function closeAuditIndexes(): void {
  for (const i of opened.values()) i.close();
  opened.clear();
}

/**
 * Rows found, read back, and the index head (the last archived stream id) as of the catch-up
 * that preceded the search. A segment rewritten between catch-up and read (compaction) is caught
 * up and read once more.
 */
export async function findRecords(dir: string, f: IndexFilter, limit: number): Promise<{ records: IndexedRecord[]; head: string | null }> {
  for (let attempt = 0; ; attempt++) {
    const idx = await auditIndex(dir);
    try {
      const head = idx.head().streamId;
      return { records: await idx.read(idx.find(f, limit)), head };
    } catch (err) {
      if (!(err instanceof StaleIndexError) || attempt > 0) throw err;
    }
  }
}

/**
 * Every archived record of one alert, in seq order, with its exact line and place (for proofs:
 * the chain input and leaf hash are computed from `line`). Not-yet-archived events (still only in
 * the Redis Stream) are not included.
 */
export async function eventsOfAlert(dir: string, alertId: string): Promise<IndexedRecord[]> {
  return (await findRecords(dir, { alertId }, Number.MAX_SAFE_INTEGER)).records;
}

/** Deletes and rebuilds the index of `dir` from its segments (`fenliu audit index DIR`). */
export async function rebuildIndex(dir: string): Promise<{ records: number; ms: number }> {
  const t0 = performance.now();
  const cached = opened.get(dir);
  if (cached) {
    cached.close();
    opened.delete(dir);
  }
  for (const f of [INDEX_FILE, `${INDEX_FILE}-wal`, `${INDEX_FILE}-shm`]) await rm(join(dir, f), { force: true });
  const idx = AuditIndex.open(dir, { bulk: true });
  try {
    const records = await idx.catchUp();
    idx.finishBulk();
    return { records, ms: performance.now() - t0 };
  } finally {
    idx.close();
  }
}
