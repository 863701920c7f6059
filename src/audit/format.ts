/**
 * The on-disk audit format, shared by the archiver, the verifier, compaction and queries.
 * docs/audit.md is the normative description; keep the two in step.
 *
 * Segment line (one record, JSON, members in exactly this order, no whitespace):
 *   {"seq":N,"streamId":"…","prev":"<hex>","event":{…},"bodies":{"<path>":"<body JSON text>"|{"redacted":true,"sha256":"<hex>"}}}
 * Inside `event`, each body is replaced by the placeholder {"$body":"<sha256 of the body text>"}.
 * Chain input of a record = the line bytes before its LAST `,"bodies":` + `}` + "\n";
 * the next record's `prev` is the SHA-256 (hex) of that. Redacting a body only touches `bodies`,
 * so the chain input, and with it the whole chain, is unchanged by compaction.
 */
import { createCipheriv, createDecipheriv, hash, randomBytes } from 'node:crypto';
import { open, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AUDIT_BODY_FIELD_PREFIX, AUDIT_FIELD, AUDIT_SEALED_FIELD, type AuditEvent } from './events.js';

export const GENESIS = '0'.repeat(64);
export const MANIFEST = 'manifest.jsonl';
export const SEGMENT_RE = /^audit-(\d{8})-(\d{6})\.jsonl$/;
export const BODIES_MARK = ',"bodies":';
export const DEFAULT_BODY_PATHS = ['data.alert', 'data.body', 'data.request', 'data.response'];

export type BodyValue = string | { redacted: true; sha256: string };

export interface AuditRecord {
  seq: number;
  streamId: string;
  prev: string;
  event: AuditEvent;
  bodies: Record<string, BodyValue>;
}

export interface ManifestEntry {
  type: 'segment' | 'compaction';
  segment: string;
  firstSeq: number;
  lastSeq: number;
  count: number;
  firstStreamId: string;
  lastStreamId: string;
  /** Chain hash of the segment's last record (what the next record's prev must be). */
  lastHash: string;
  /** SHA-256 of the segment file bytes. */
  sha256: string;
  at: string;
  /** compaction only: the file hash it replaced, and how many bodies were removed. */
  replacedSha256?: string;
  redacted?: number;
  prev: string;
}

export function sha256Hex(data: string | Buffer): string {
  // one-shot: a Hash object per call cost more than hashing a short record
  return hash('sha256', data, 'hex');
}

export function segmentName(day: string, n: number): string {
  return `audit-${day}-${String(n).padStart(6, '0')}.jsonl`;
}

export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10).replaceAll('-', '');
}

let dayFrom = 0;
let dayTo = 0;
let dayName = '';

/** utcDay, remembering the last day's bounds (the archiver asks once per record, nearly always for the same day). */
export function utcDayCached(ms: number): string {
  if (!(ms >= dayFrom && ms < dayTo)) {
    dayName = utcDay(ms);
    dayFrom = ms - (((ms % 86_400_000) + 86_400_000) % 86_400_000);
    dayTo = dayFrom + 86_400_000;
  }
  return dayName;
}

export function streamIdMs(id: string): number {
  return Number(id.split('-')[0]);
}

/** Compares two Redis stream ids ("ms-seq"). */
export function compareStreamIds(a: string, b: string): number {
  const [am, as] = a.split('-');
  const [bm, bs] = b.split('-');
  const d = BigInt(am) - BigInt(bm);
  if (d !== 0n) return d < 0n ? -1 : 1;
  const e = BigInt(as ?? '0') - BigInt(bs ?? '0');
  return e === 0n ? 0 : e < 0n ? -1 : 1;
}

/** The smallest stream id greater than `id` (for XTRIM MINID / exclusive ranges). */
export function nextStreamId(id: string): string {
  const [ms, seq] = id.split('-');
  return `${ms}-${BigInt(seq ?? '0') + 1n}`;
}

const splitPaths = new Map<string, string[]>();

function splitPath(p: string): string[] {
  let path = splitPaths.get(p);
  if (!path) splitPaths.set(p, (path = p.split('.')));
  return path;
}

function getPath(obj: unknown, path: string[]): unknown {
  let cur: unknown = obj;
  for (const k of path) {
    if (cur === null || typeof cur !== 'object' || !Object.prototype.hasOwnProperty.call(cur, k)) return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

function setPath(obj: Record<string, unknown>, path: string[], value: unknown): void {
  let cur: Record<string, unknown> = obj;
  for (const k of path.slice(0, -1)) cur = cur[k] as Record<string, unknown>;
  cur[path[path.length - 1]] = value;
}

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

/**
 * Keys for bodies stored encrypted (AES-256-GCM). `current` encrypts new bodies; every key in
 * `keys` can still decrypt (rotation). Deleting a key makes its bodies unreadable for good.
 */
export interface AuditKeyring {
  current?: string;
  keys: Map<string, Buffer>;
}

/** Process-wide keyring used when reading records back (queries, replay). */
export const auditKeyring: AuditKeyring = { keys: new Map() };

/** Loads keys given as base64 of 32 bytes; throws on a key of the wrong size. */
export function setAuditKeys(current: string | undefined, keys: Record<string, string>): void {
  auditKeyring.keys.clear();
  for (const [kid, b64] of Object.entries(keys)) {
    const k = Buffer.from(b64, 'base64');
    if (k.length !== 32) throw new Error(`audit key ${kid} must be 32 bytes, base64-encoded (got ${k.length})`);
    auditKeyring.keys.set(kid, k);
  }
  auditKeyring.current = current;
}

interface SealedBody {
  enc: 'A256GCM';
  kid: string;
  iv: string;
  ct: string;
  tag: string;
}

function aad(seq: number, path: string): Buffer {
  return Buffer.from(`${seq}:${path}`);
}

export function encryptBody(text: string, ring: AuditKeyring, seq: number, path: string): string {
  const key = ring.keys.get(ring.current!)!;
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(aad(seq, path));
  const ct = Buffer.concat([c.update(text, 'utf8'), c.final()]);
  const sealed: SealedBody = { enc: 'A256GCM', kid: ring.current!, iv: iv.toString('base64'), ct: ct.toString('base64'), tag: c.getAuthTag().toString('base64') };
  return JSON.stringify(sealed);
}

function decryptBody(v: unknown, ring: AuditKeyring, seq: number, path: string): unknown {
  const s = v as SealedBody;
  if (!s || typeof s !== 'object' || s.enc !== 'A256GCM') return v;
  const key = ring.keys.get(s.kid);
  if (!key) return v;
  try {
    const d = createDecipheriv('aes-256-gcm', key, Buffer.from(s.iv, 'base64'));
    d.setAAD(aad(seq, path));
    d.setAuthTag(Buffer.from(s.tag, 'base64'));
    return JSON.parse(Buffer.concat([d.update(Buffer.from(s.ct, 'base64')), d.final()]).toString('utf8'));
  } catch {
    return v;
  }
}

/**
 * Splits an event into the chained part (bodies replaced by {"$body": hash}) and the bodies.
 * With a keyring, bodies are stored encrypted and the hash covers the ciphertext, so verifying
 * the chain never needs a key.
 */
/** `owned`: the caller gives `ev` away (freshly parsed), so it is changed in place instead of copied. */
export function sealEvent(ev: AuditEvent, bodyPaths: string[], ring?: AuditKeyring, seq = 0, owned = false): { event: AuditEvent; bodies: Record<string, string> } {
  const event = owned ? ev : clone(ev);
  const bodies: Record<string, string> = {};
  for (const p of bodyPaths) {
    const path = splitPath(p);
    const v = getPath(event, path);
    if (v === undefined) continue;
    const clear = JSON.stringify(v);
    const text = ring?.current ? encryptBody(clear, ring, seq, p) : clear;
    bodies[p] = text;
    setPath(event as unknown as Record<string, unknown>, path, { $body: sha256Hex(text) });
  }
  return { event, bodies };
}

/**
 * An event as its producer writes it to the stream, sealed the way the archiver would seal it
 * without encryption: `event` with each body replaced by its placeholder, and the stream entry's
 * body fields (`b:<path>`, the body's JSON text, in DEFAULT_BODY_PATHS order). The archiver then
 * joins strings instead of parsing and re-serialising (docs/audit.md, "Stream entries"). The
 * event is changed in place.
 */
export function sealForStream(ev: AuditEvent): { event: AuditEvent; bodyFields: string[] } {
  const { event, bodies } = sealEvent(ev, DEFAULT_BODY_PATHS, undefined, 0, true);
  const bodyFields: string[] = [];
  for (const p in bodies) bodyFields.push(AUDIT_BODY_FIELD_PREFIX + p, bodies[p]);
  return { event, bodyFields };
}

/**
 * A sealed stream entry's parts: its event JSON (placeholders in place of the bodies) and its
 * bodies (path → body JSON text), or null when the entry is not one.
 */
export function sealedEntryParts(fields: string[]): { json: string; bodies: [string, string][] } | null {
  if (fields[0] !== AUDIT_SEALED_FIELD || fields.length % 2 !== 0) return null;
  const bodies: [string, string][] = [];
  for (let i = 2; i < fields.length; i += 2) {
    if (!fields[i].startsWith(AUDIT_BODY_FIELD_PREFIX)) return null;
    bodies.push([fields[i].slice(AUDIT_BODY_FIELD_PREFIX.length), fields[i + 1]]);
  }
  return { json: fields[1], bodies };
}

/** The hash of the placeholder at a body path of a sealed event, or undefined when there is none. */
export function placeholderAt(ev: AuditEvent, path: string): string | undefined {
  const v = getPath(ev, splitPath(path));
  if (!v || typeof v !== 'object') return undefined;
  const h = (v as { $body?: unknown }).$body;
  return typeof h === 'string' && Object.keys(v).length === 1 ? h : undefined;
}

/**
 * The event a stream entry holds, complete (bodies in place): an event written whole (`e`) or
 * sealed by its producer (`s` and `b:<path>`). An entry that is neither, or not JSON, is an
 * `audit.malformed` event holding the entry's fields (archived, never dropped).
 */
export function decodeStreamEntry(id: string, fields: string[]): AuditEvent {
  try {
    const sealed = sealedEntryParts(fields);
    if (sealed) {
      const ev = JSON.parse(sealed.json) as AuditEvent;
      if (ev && typeof ev === 'object' && typeof ev.type === 'string') {
        // a body goes back where its placeholder is; one with no place makes the entry malformed
        let placed = true;
        for (const [p, text] of sealed.bodies) {
          if (placeholderAt(ev, p) === undefined) placed = false;
          else setPath(ev as unknown as Record<string, unknown>, splitPath(p), JSON.parse(text));
        }
        if (placed) return ev;
      }
    } else {
      const idx = fields.indexOf(AUDIT_FIELD);
      if (idx >= 0 && idx % 2 === 0) {
        const ev = JSON.parse(fields[idx + 1]) as AuditEvent;
        if (ev && typeof ev === 'object' && typeof ev.type === 'string') return ev;
      }
    }
  } catch {
    // malformed: below
  }
  return { type: 'audit.malformed', at: new Date(streamIdMs(id)).toISOString(), data: { fields } };
}

export function serializeRecord(r: AuditRecord): string {
  return JSON.stringify({ seq: r.seq, streamId: r.streamId, prev: r.prev, event: r.event, bodies: r.bodies });
}

/**
 * serializeRecord's line in two parts, `head + tail`: `head` runs through the event, `tail` is
 * `,"bodies":{…}}`. The chain input is `head + '}\n'`, so the archiver hashes it without looking
 * for the bodies mark in the line. (verify checks every line against serializeRecord.)
 */
export function recordParts(r: AuditRecord): { head: string; tail: string } {
  return {
    head: `{"seq":${r.seq},"streamId":${JSON.stringify(r.streamId)},"prev":${JSON.stringify(r.prev)},"event":${JSON.stringify(r.event)}`,
    tail: `${BODIES_MARK}${JSON.stringify(r.bodies)}}`,
  };
}

/** Chain hash of a record line (without its trailing newline). */
export function chainHash(line: string): string {
  const i = line.lastIndexOf(BODIES_MARK);
  if (i < 0) throw new Error('record has no "bodies" member');
  return sha256Hex(line.slice(0, i) + '}\n');
}

/** Walks an event and returns the path -> hash of every {"$body": hash} placeholder. */
export function findPlaceholders(v: unknown, base: string[] = [], out: Map<string, string> = new Map()): Map<string, string> {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && keys[0] === '$body' && typeof o.$body === 'string') {
      out.set(base.join('.'), o.$body);
      return out;
    }
    for (const k of keys) findPlaceholders(o[k], [...base, k], out);
  }
  return out;
}

/** Restores an event for readers: placeholders become the parsed body, or the redaction marker. */
export function openRecord(r: AuditRecord, ring: AuditKeyring = auditKeyring): AuditEvent {
  const ev = clone(r.event);
  for (const [p, b] of Object.entries(r.bodies)) {
    const path = p.split('.');
    if (getPath(ev, path) === undefined) continue;
    // An encrypted body stays sealed ({"enc":…}) for readers without its key.
    setPath(ev as unknown as Record<string, unknown>, path, typeof b === 'string' ? decryptBody(JSON.parse(b), ring, r.seq, p) : b);
  }
  return ev;
}

export function parseRecord(line: string): AuditRecord {
  const r = JSON.parse(line) as AuditRecord;
  if (!r || typeof r !== 'object' || !Number.isSafeInteger(r.seq) || typeof r.streamId !== 'string' || typeof r.prev !== 'string' || !r.event || typeof r.event !== 'object' || !r.bodies || typeof r.bodies !== 'object') {
    throw new Error('not an audit record (needs seq, streamId, prev, event, bodies)');
  }
  return r;
}

/** Segment file names in `dir`, in order. */
export async function listSegments(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return names.filter((n) => SEGMENT_RE.test(n)).sort();
}

export function segmentNumber(name: string): number {
  const m = SEGMENT_RE.exec(name);
  return m ? Number(m[2]) : 0;
}

/** Reads manifest lines (raw and parsed); a torn last line is returned as `torn`. */
export async function readManifest(dir: string): Promise<{ lines: string[]; entries: ManifestEntry[]; torn: string | null }> {
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { lines: [], entries: [], torn: null };
    throw err;
  }
  const parts = text.split('\n');
  const last = parts.pop() ?? '';
  const entries: ManifestEntry[] = [];
  for (const l of parts) entries.push(JSON.parse(l) as ManifestEntry);
  return { lines: parts, entries, torn: last === '' ? null : last };
}

/** The last complete line of a file (and the file size), reading backwards in growing chunks. */
export async function readLastLine(path: string): Promise<{ line: string | null; size: number; completeSize: number }> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    if (size === 0) return { line: null, size, completeSize: 0 };
    let chunk = 64 * 1024;
    for (;;) {
      const start = Math.max(0, size - chunk);
      const buf = Buffer.alloc(size - start);
      await fh.read(buf, 0, buf.length, start);
      // completeSize: the file up to and including the last newline (a torn tail is cut off)
      const lastNl = buf.lastIndexOf(0x0a);
      if (lastNl < 0) {
        if (start === 0) return { line: null, size, completeSize: 0 };
        chunk *= 4;
        continue;
      }
      const prevNl = buf.lastIndexOf(0x0a, lastNl - 1);
      if (prevNl < 0 && start > 0) {
        chunk *= 4;
        continue;
      }
      return { line: buf.subarray(prevNl + 1, lastNl).toString('utf8'), size, completeSize: start + lastNl + 1 };
    }
  } finally {
    await fh.close();
  }
}
