/**
 * Moves audit events from the Redis Stream into hash-chained JSON Lines segment files.
 *
 * - One writer at a time: a Redis lock (SET NX PX, renewed, token-checked release).
 * - The files are the source of truth: whoever takes the lock re-reads the tail of the last
 *   segment (seq, chain hash, stream id) and continues after it, so a crash at any point
 *   (mid-write, between fsync and trim, mid-roll) leaves neither a gap nor a duplicate.
 * - The stream is trimmed (XTRIM MINID) only after the lines are fsynced.
 * - After each batch the archiver stores {seq, hash, streamId} under `<prefix>:{audit}:head`;
 *   on start it refuses to continue if the files are behind that head (lost or truncated files).
 */
import { hash as cryptoHash, randomBytes } from 'node:crypto';
import { mkdir, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { duplicateConnection } from '../redis/connect.js';
import {
  auditHeadKey,
  auditLockKey,
  auditStreamKey,
  type AuditEvent,
} from './events.js';
import type { ArchivedLine } from './event-index.js';
import { appendDurably, appendManifestEntry, describeSegment, fsyncDir } from './manifest.js';
import { relayAllAudit } from '../store/audit-relay.js';
import { ARCHIVE_PHASES, bus, type ArchivePhase, type FenliuEvents } from '../events.js';
import {
  BODIES_MARK,
  DEFAULT_BODY_PATHS,
  GENESIS,
  decodeStreamEntry,
  placeholderAt,
  sha256Hex,
  sealedEntryParts,
  SEGMENT_RE,
  chainHash,
  listSegments,
  nextStreamId,
  parseRecord,
  readLastLine,
  readManifest,
  recordParts,
  sealEvent,
  type AuditKeyring,
  segmentName,
  segmentNumber,
  streamIdMs,
  utcDay,
  utcDayCached,
} from './format.js';
import { MerkleAppender } from './merkle-log.js';
import { ARCHIVER_TOKEN_PREFIX } from './stream-format.js';

export interface AuditLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface AuditArchiverOptions {
  redis: Redis;
  prefix: string;
  dir: string;
  /** Roll to a new segment when the current one would exceed this size. Default 64 MB. */
  segmentMaxBytes?: number;
  /** Roll at each UTC day (of the stream entry time). Default true. */
  rollDaily?: boolean;
  /** Lock time-to-live; renewed every third of it. Default 30 s. */
  lockTtlMs?: number;
  /**
   * Stream entries read per batch. Default 2000: each batch costs a segment fsync, the tile
   * writes, an index transaction and its Redis calls, whatever its size (the record loop yields
   * to the event loop every 500 records, so a big batch does not stall the process).
   */
  batchSize?: number;
  /** XREAD BLOCK timeout of the running loop. Default 5 s (stop() interrupts it at once). */
  blockMs?: number;
  /**
   * Least time between the starts of two batches. Default 250 ms. Events are durable in Redis
   * already; waiting a little gathers them into fewer, larger batches (one fsync each) instead of
   * one batch per trickle, which under load cost the worker process more CPU than the events.
   */
  minIntervalMs?: number;
  /** Event paths whose values are payload bodies (stored apart, removable by compaction). */
  bodyPaths?: string[];
  /** Store bodies encrypted with the keyring's current key (AES-256-GCM). */
  keyring?: AuditKeyring;
  /** Start even when the files are behind the head recorded in Redis (after a deliberate restore). */
  allowBehindHead?: boolean;
  logger?: AuditLogger;
  /** Keep the Merkle tree over the records (tiles and tree.json next to the segments). Default true. */
  merkle?: boolean;
  /**
   * Told about every line once it is durable (before the stream is trimmed): the SQLite index
   * (event-index.ts). A failure here is logged, never stops archiving: the index catches up
   * from the files.
   */
  index?: { add(lines: ArchivedLine[]): void };
  /** Test hooks: `afterFsync` runs after lines are durable and before the stream is trimmed. */
  hooks?: { afterFsync?(info: { lastSeq: number; lastStreamId: string; written: number }): void | Promise<void> };
}

interface Tail {
  seq: number;
  hash: string;
  streamId: string | null;
  /** the open (not yet manifested) segment, if any */
  open: { name: string; day: string; size: number } | null;
  nextSegNo: number;
}

/** Largest batch buffer kept for the next batch (a bigger one, grown by a batch of huge events, is dropped). */
const BATCH_BUF_KEEP = 16 * 1024 * 1024;
/** Records encoded between two turns of the event loop (≈15 ms of work). */
const YIELD_EVERY = 500;

const RENEW_LUA = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;
const ACQUIRE_LUA = `local v = redis.call('get', KEYS[1])
if v == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2]) return 1 end
if v then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1`;
const RELEASE_LUA = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;

export class AuditArchiver {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly dir: string;
  private readonly segmentMaxBytes: number;
  private readonly rollDaily: boolean;
  private readonly lockTtlMs: number;
  private readonly batchSize: number;
  private readonly blockMs: number;
  private readonly minIntervalMs: number;
  private lastBatchAt = 0;
  private readonly bodyPaths: string[];
  /** Producers seal with the default paths: an entry they sealed is archived as it is only when this archiver uses the same. */
  private readonly defaultBodyPaths: boolean;
  private readonly keyring?: AuditKeyring;
  private readonly log: AuditLogger | undefined;
  private readonly opts: AuditArchiverOptions;
  // Its prefix tells producers this archiver reads sealed entries (stream-format.ts).
  private readonly token = ARCHIVER_TOKEN_PREFIX + randomBytes(16).toString('hex');

  private holding = false;
  private tail: Tail | null = null;
  private renewTimer: NodeJS.Timeout | null = null;
  private blockConn: Redis | null = null;
  private running: Promise<void> | null = null;
  private stopping = false;
  private wake: (() => void) | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  /** The stream id up to which this archiver trimmed the stream last (the next batch need not trim again). */
  private trimmedTo: string | null = null;
  /** Reused between batches: the batch's lines are encoded into it. */
  private batchBuf: Buffer = Buffer.allocUnsafe(1 << 20);
  /** The Merkle tree (src/audit/merkle-log.ts); null when `merkle: false`. */
  readonly merkle: MerkleAppender | null;

  constructor(opts: AuditArchiverOptions) {
    this.opts = opts;
    this.redis = opts.redis;
    this.prefix = opts.prefix;
    this.dir = opts.dir;
    this.segmentMaxBytes = opts.segmentMaxBytes ?? 64 * 1024 * 1024;
    this.rollDaily = opts.rollDaily ?? true;
    this.lockTtlMs = opts.lockTtlMs ?? 30_000;
    this.batchSize = opts.batchSize ?? 2_000;
    this.blockMs = opts.blockMs ?? 5_000;
    this.minIntervalMs = opts.minIntervalMs ?? 250;
    this.bodyPaths = opts.bodyPaths ?? DEFAULT_BODY_PATHS;
    this.defaultBodyPaths = this.bodyPaths.join('\n') === DEFAULT_BODY_PATHS.join('\n');
    this.keyring = opts.keyring;
    this.log = opts.logger;
    this.merkle = opts.merkle === false ? null : new MerkleAppender(opts.dir);
  }

  /** Starts the background loop: wait for the lock, archive, block on the stream for more. */
  async start(): Promise<void> {
    if (this.running) return;
    this.stopping = false;
    await mkdir(this.dir, { recursive: true });
    this.blockConn = duplicateConnection(this.redis, {
      lazyConnect: false,
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
      commandTimeout: undefined,
    });
    this.blockConn.on('error', () => undefined);
    this.running = this.loop();
  }

  /** Stops promptly (interrupts the blocking read), finishes the batch in hand, releases the lock. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    this.blockConn?.disconnect();
    await this.running?.catch(() => undefined);
    this.running = null;
    this.blockConn = null;
    await this.chain.catch(() => undefined);
    await this.releaseLock();
  }

  /** Archives everything now in the stream; returns how many records were written (0 if another process holds the lock). */
  async flushOnce(): Promise<number> {
    return this.exclusive(async () => {
      await mkdir(this.dir, { recursive: true });
      if (!(await this.ensureLock())) return 0;
      try {
        return await this.drain();
      } finally {
        if (!this.running) await this.releaseLock();
      }
    });
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn, fn);
    this.chain = p.catch(() => undefined);
    return p;
  }

  private async loop(): Promise<void> {
    let backoff = 100;
    while (!this.stopping) {
      try {
        const wait = this.lastBatchAt + this.minIntervalMs - Date.now();
        if (wait > 0) await this.pause(wait);
        if (this.stopping) break;
        const got = await this.exclusive(async () => {
          if (this.stopping) return false;
          if (!(await this.ensureLock())) return false;
          this.lastBatchAt = Date.now();
          await this.drain();
          return true;
        });
        if (this.stopping) break;
        if (!got) {
          await this.pause(Math.min(1_000, this.lockTtlMs / 3));
          continue;
        }
        backoff = 100;
        const after = this.tail?.streamId ?? '0-0';
        await this.blockConn!.xread('COUNT', 1, 'BLOCK', this.blockMs, 'STREAMS', auditStreamKey(this.prefix), after);
      } catch (err) {
        if (this.stopping) break;
        this.log?.error({ err }, 'audit archiver: batch failed; will retry from the files');
        this.tail = null; // re-read the files before writing again
        await this.pause(backoff);
        backoff = Math.min(backoff * 2, 5_000);
      }
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = done;
    });
  }

  // ---- lock ----

  private async ensureLock(): Promise<boolean> {
    const ok = (await this.redis.eval(ACQUIRE_LUA, 1, auditLockKey(this.prefix), this.token, String(this.lockTtlMs))) === 1;
    if (!ok) {
      this.holding = false;
      this.tail = null;
      this.stopRenewal();
      return false;
    }
    if (!this.holding || !this.tail) {
      this.holding = true;
      this.tail = null;
      await this.loadTail();
      this.startRenewal();
    }
    return true;
  }

  private startRenewal(): void {
    if (this.renewTimer) return;
    this.renewTimer = setInterval(() => {
      this.redis
        .eval(RENEW_LUA, 1, auditLockKey(this.prefix), this.token, String(this.lockTtlMs))
        .then((r) => {
          if (r !== 1) {
            this.log?.warn({}, 'audit archiver: lost the lock');
            this.holding = false;
            this.tail = null;
            this.stopRenewal();
          }
        })
        .catch(() => undefined);
    }, Math.max(50, Math.floor(this.lockTtlMs / 3)));
    this.renewTimer.unref();
  }

  private stopRenewal(): void {
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.renewTimer = null;
  }

  private async releaseLock(): Promise<void> {
    this.stopRenewal();
    const was = this.holding;
    this.holding = false;
    this.tail = null;
    if (!was) return;
    try {
      await this.redis.eval(RELEASE_LUA, 1, auditLockKey(this.prefix), this.token);
    } catch {
      // the lock expires by itself
    }
  }

  // ---- files ----

  /** Reads the state from the files; repairs a torn last line and un-manifested closed segments. */
  private async loadTail(): Promise<void> {
    this.trimmedTo = null;
    await mkdir(this.dir, { recursive: true });
    // (a torn manifest line, from an interrupted append, is cut off by the next append)
    const manifest = await readManifest(this.dir);
    const closed = new Set(manifest.entries.map((e) => e.segment));
    const segments = await listSegments(this.dir);
    const tail: Tail = {
      seq: 0,
      hash: GENESIS,
      streamId: null,
      open: null,
      nextSegNo: segments.length ? segmentNumber(segments[segments.length - 1]) + 1 : 1,
    };
    for (let i = 0; i < segments.length; i++) {
      const name = segments[i];
      const path = join(this.dir, name);
      const last = i === segments.length - 1;
      if (!closed.has(name)) {
        const { size, completeSize } = await readLastLine(path);
        if (size !== completeSize) {
          if (!last) throw new Error(`audit: ${name} has a torn last line but is not the last segment`);
          this.log?.warn({ segment: name, size, completeSize }, 'audit archiver: cutting a torn last line (it is still in the stream)');
          await truncate(path, completeSize);
        }
        if (!last && completeSize > 0) {
          // a segment that was rolled but whose manifest line was lost: close it now
          await this.closeSegment(name);
        }
      }
      if (last) {
        const { line, size } = await readLastLine(path);
        if (!closed.has(name)) tail.open = { name, day: SEGMENT_RE.exec(name)![1], size };
        if (line !== null) this.setTailFrom(tail, line);
        else if (i > 0) {
          const prev = await readLastLine(join(this.dir, segments[i - 1]));
          if (prev.line !== null) this.setTailFrom(tail, prev.line);
        }
      }
    }
    const headRaw = await this.redis.get(auditHeadKey(this.prefix));
    if (headRaw) {
      const head = JSON.parse(headRaw) as { seq: number; hash: string; streamId: string };
      if (head.seq > tail.seq && !this.opts.allowBehindHead) {
        throw new Error(
          `audit: the files in ${this.dir} end at seq ${tail.seq} but seq ${head.seq} was archived before; segment files were lost or truncated (restore them, or start with allowBehindHead)`,
        );
      }
    }
    await this.merkle?.prepare(tail.seq);
    this.tail = tail;
  }

  private setTailFrom(tail: Tail, line: string): void {
    const r = parseRecord(line);
    tail.seq = r.seq;
    tail.hash = chainHash(line);
    tail.streamId = r.streamId;
  }

  private async closeSegment(name: string): Promise<void> {
    const d = await describeSegment(this.dir, name);
    await appendManifestEntry(this.dir, { type: 'segment', ...d, at: new Date().toISOString() });
    this.log?.info({ segment: name, lastSeq: d.lastSeq }, 'audit archiver: segment closed');
  }

  /** Archives until the stream has nothing newer than the files. */
  private async drain(): Promise<number> {
    try {
      return await this.drainInner();
    } catch (err) {
      this.tail = null; // re-read the files before writing again
      throw err;
    }
  }

  private async drainInner(): Promise<number> {
    let total = 0;
    const key = auditStreamKey(this.prefix);
    for (;;) {
      if (!this.holding || !this.tail) throw new Error('audit archiver: lock lost during a batch');
      const tail = this.tail;
      const clock = new PhaseClock();
      if (tail.streamId && tail.streamId !== this.trimmedTo) {
        // entries up to the tail are on disk already (a crash may have come between fsync and trim)
        await this.redis.xtrim(key, 'MINID', nextStreamId(tail.streamId));
        this.trimmedTo = tail.streamId;
        clock.lap('trim');
      }
      const start = tail.streamId ? `(${tail.streamId}` : '-';
      let entries = (await this.redis.xrange(key, start, '+', 'COUNT', this.batchSize)) as [string, string[]][];
      // Nothing waiting: events may still sit in bucket streams (src/store/audit-relay.ts).
      if (entries.length === 0 && (await relayAllAudit(this.redis, this.prefix).catch(() => 0)) > 0) {
        entries = (await this.redis.xrange(key, start, '+', 'COUNT', this.batchSize)) as [string, string[]][];
      }
      if (entries.length === 0) {
        await this.maybeRollIdle(tail);
        return total;
      }
      clock.lap('read');
      const got = entries.length;
      total += await this.writeBatch(tail, entries, clock);
      if (got < this.batchSize) return total;
    }
  }

  /** Closes the open segment when its day is over even if nothing new arrives. */
  private async maybeRollIdle(tail: Tail): Promise<void> {
    if (!this.rollDaily || !tail.open || tail.open.size === 0) return;
    if (tail.open.day < utcDay(Date.now())) {
      await this.closeSegment(tail.open.name);
      tail.open = null;
    }
  }

  private async writeBatch(tail: Tail, entries: [string, string[]][], clock: PhaseClock): Promise<number> {
    // Every line is encoded once, straight into one buffer for the batch; the segments take
    // consecutive ranges of it. segments: [name, start, end, close after writing]
    const segs: { name: string; start: number; end: number; close: boolean }[] = [];
    let seq = tail.seq;
    let hash = tail.hash;
    let open = tail.open ? { ...tail.open } : null;
    let nextSegNo = tail.nextSegNo;
    let lastId = tail.streamId;
    const leaves: Buffer[] = [];
    const archived: ArchivedLine[] = [];
    // byte 0 stays free: the byte before a line is borrowed for the leaf hash's 0x00 prefix
    let out = this.batchBuf;
    let pos = 1;
    const count = entries.length;
    for (let i = 0; i < count; i++) {
      // each entry is let go once encoded: the young-generation GCs during the batch (and across
      // its fsync) copy only what is still to do
      const [id, fields] = entries[i];
      (entries as unknown[])[i] = undefined;
      if (leaves.length % YIELD_EVERY === YIELD_EVERY - 1) await new Promise(setImmediate);
      // An entry its producer sealed is joined as it is (no parse and re-serialise of its bodies)
      // unless its bodies are to be encrypted, which needs the record's seq.
      const pre = this.keyring?.current || !this.defaultBodyPaths ? null : presealed(fields);
      let head: string;
      let rest: string;
      let e: AuditEvent;
      if (pre) {
        e = pre.event;
        head = `{"seq":${seq + 1},"streamId":${JSON.stringify(id)},"prev":"${hash}","event":${pre.json}`;
        rest = `${BODIES_MARK}${pre.bodies}}`;
      } else {
        const sealed = sealEvent(decodeStreamEntry(id, fields), this.bodyPaths, this.keyring, seq + 1, true);
        ({ head, tail: rest } = recordParts({ seq: seq + 1, streamId: id, prev: hash, ...sealed }));
        e = sealed.event;
      }
      const room = 3 * (head.length + rest.length) + 4; // UTF-16 units → at most 3 UTF-8 bytes each
      if (out.length - pos < room) {
        const bigger = Buffer.allocUnsafe(Math.max(2 * out.length, pos + room));
        out.copy(bigger, 0, 0, pos);
        out = bigger;
      }
      // chain input = head + "}\n"; leaf hash = SHA-256(0x00 || chain input) (docs/audit.md)
      const headBytes = out.write(head, pos);
      out[pos + headBytes] = 0x7d;
      out[pos + headBytes + 1] = 0x0a;
      const before = out[pos - 1];
      out[pos - 1] = 0;
      leaves.push(cryptoHash('sha256', out.subarray(pos - 1, pos + headBytes + 2), 'buffer'));
      out[pos - 1] = before;
      const chained = cryptoHash('sha256', out.subarray(pos, pos + headBytes + 2), 'hex');
      const bytes = headBytes + out.write(rest, pos + headBytes) + 1;
      out[pos + bytes - 1] = 0x0a;
      const day = utcDayCached(streamIdMs(id));
      if (open && open.size > 0 && ((this.rollDaily && day !== open.day) || open.size + bytes > this.segmentMaxBytes)) {
        const cur = segs[segs.length - 1];
        if (cur?.name === open.name) cur.close = true;
        else segs.push({ name: open.name, start: pos, end: pos, close: true });
        open = null;
      }
      if (!open) open = { name: segmentName(day, nextSegNo++), day, size: 0 };
      let cur = segs[segs.length - 1];
      if (cur?.name !== open.name) segs.push((cur = { name: open.name, start: pos, end: pos, close: false }));
      cur.end = pos + bytes;
      // only what the index reads: the event's data need not live until the batch is indexed
      const meta: AuditEvent = { type: e.type, at: e.at, alertId: e.alertId, deliveryId: e.deliveryId, platformId: e.platformId, sourceId: e.sourceId };
      archived.push({ seq: seq + 1, streamId: id, segment: open.name, offset: open.size, length: bytes - 1, event: meta });
      open.size += bytes;
      pos += bytes;
      seq += 1;
      hash = chained;
      lastId = id;
    }
    // keep a buffer of the usual size for the next batch (not one grown by an odd huge batch)
    if (out.length <= BATCH_BUF_KEEP) this.batchBuf = out;
    clock.lap('encode');
    for (const p of segs) {
      if (p.end > p.start) {
        const created = await appendDurably(join(this.dir, p.name), out.subarray(p.start, p.end));
        if (created) await fsyncDir(this.dir);
      }
      if (p.close) await this.closeSegment(p.name);
    }
    clock.lap('append');
    await this.onBatchArchived(leaves);
    clock.lap('merkle');
    tail.seq = seq;
    tail.hash = hash;
    tail.streamId = lastId;
    tail.open = open;
    tail.nextSegNo = nextSegNo;
    try {
      this.opts.index?.add(archived);
    } catch (err) {
      this.log?.warn({ err }, 'audit archiver: index update failed; it catches up from the files');
    }
    clock.lap('index');
    await this.opts.hooks?.afterFsync?.({ lastSeq: seq, lastStreamId: lastId!, written: count });
    await this.redis
      .multi()
      .xtrim(auditStreamKey(this.prefix), 'MINID', nextStreamId(lastId!))
      .set(auditHeadKey(this.prefix), JSON.stringify({ seq, hash, streamId: lastId }))
      .exec();
    this.trimmedTo = lastId;
    clock.lap('trim');
    bus.emitEvent('audit.archived', { events: count, phases: clock.phases });
    return count;
  }

  /** After a batch is durable in the segments: the tree grows by its records (a crash before this is caught up by prepare). */
  private async onBatchArchived(leaves: Buffer[]): Promise<void> {
    await this.merkle?.onBatchArchived(leaves);
  }
}

/**
 * Wall time and process CPU time of each phase of one batch (the `audit.archived` event, and so
 * the archiver's metrics). The CPU is the whole process's: where the archiver shares a worker
 * process, what else ran while a phase waited (on Redis, on an fsync) counts too.
 */
class PhaseClock {
  readonly phases = Object.fromEntries(ARCHIVE_PHASES.map((p) => [p, { seconds: 0, cpuSeconds: 0 }])) as FenliuEvents['audit.archived']['phases'];
  private at = performance.now();
  private cpuAt = process.cpuUsage();

  lap(phase: ArchivePhase): void {
    const now = performance.now();
    const cpu = process.cpuUsage();
    const p = this.phases[phase];
    p.seconds += (now - this.at) / 1000;
    p.cpuSeconds += (cpu.user - this.cpuAt.user + cpu.system - this.cpuAt.system) / 1e6;
    this.at = now;
    this.cpuAt = cpu;
  }
}

/**
 * A sealed entry (src/audit/format.ts `sealForStream`) as the archiver writes it: the event JSON
 * as it came, its bodies' JSON, and the event parsed (for the index). Anything else takes the
 * whole path (decodeStreamEntry, sealEvent): an entry that is not an event becomes
 * `audit.malformed`, and one whose placeholders do not hash its bodies is sealed again, so no
 * producer's slip is archived as a record that `fenliu audit verify` would call altered.
 */
function presealed(fields: string[]): { json: string; bodies: string; event: AuditEvent } | null {
  const parts = sealedEntryParts(fields);
  if (!parts) return null;
  let event: AuditEvent;
  try {
    event = JSON.parse(parts.json) as AuditEvent;
  } catch {
    return null;
  }
  if (!event || typeof event !== 'object' || typeof event.type !== 'string') return null;
  // Each body hashes to its placeholder, and each placeholder at a body path has its body: what
  // `fenliu audit verify` checks of the line. (A field repeated in the entry counts once.)
  const bodies = Object.fromEntries(parts.bodies);
  for (const [path, text] of Object.entries(bodies)) if (placeholderAt(event, path) !== sha256Hex(text)) return null;
  for (const path of DEFAULT_BODY_PATHS) if (!(path in bodies) && placeholderAt(event, path) !== undefined) return null;
  return { json: parts.json, bodies: JSON.stringify(bodies), event };
}
