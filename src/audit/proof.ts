/**
 * Inclusion proofs of an alert's audit events against one signed checkpoint, in one
 * self-contained JSON file modelled on C2SP tlog-proof: the checkpoint verbatim (signed note),
 * and per event its leaf index, its leaf data (the record's chain input) and the RFC 9162
 * inclusion proof, sibling first. Checking it needs SHA-256, Ed25519 and the log's public key.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NoteError, openCheckpoint, parseVerifier, type NoteVerifier } from './checkpoint.js';
import { eventsOfAlert } from './event-index.js';
import { leafData } from './merkle-log.js';
import { inclusionProof, leafHash, rootFromInclusionProof } from './merkle.js';
import { tileReader } from './tiles.js';

export const PROOF_FORMAT = 'fenliu.audit-proof/v1';
export const CHECKPOINT_FILE = 'checkpoint';

export interface ProofEvent {
  /** 0-based leaf index (= seq − 1) */
  index: number;
  /** the record's chain input (leaf data), ending in a newline */
  leaf: string;
  /** base64 hashes, from the leaf's sibling up to the root's child */
  proof: string[];
}

export interface AlertProof {
  format: typeof PROOF_FORMAT;
  alertId: string;
  /** the signed checkpoint, verbatim (C2SP signed note) */
  checkpoint: string;
  events: ProofEvent[];
  /** events archived after the checkpoint (seq), not covered by it yet */
  pending?: number[];
}

export interface AlertRecordLine {
  seq: number;
  line: string;
}

/**
 * The archived record lines of one alert, through the index (`eventsOfAlert`: one B-tree lookup
 * and a short read per event, whatever the size of the log). Records in pruned segments are not
 * in the index any more and so not in the proof.
 */
export async function findAlertRecords(dir: string, alertId: string): Promise<AlertRecordLine[]> {
  return (await eventsOfAlert(dir, alertId)).map((r) => ({ seq: r.seq, line: r.line }));
}

export async function readCheckpointFile(dir: string): Promise<string | null> {
  try {
    return await readFile(join(dir, CHECKPOINT_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Builds the proof file for `alertId` against the checkpoint in `dir` (or the one given). */
export async function proveAlert(
  dir: string,
  alertId: string,
  opts: { checkpoint?: string; find?: (dir: string, alertId: string) => Promise<AlertRecordLine[]> } = {},
): Promise<AlertProof> {
  const note = opts.checkpoint ?? (await readCheckpointFile(dir));
  if (!note) throw new NoteError(`no checkpoint in ${dir} (configure audit.signing, or run fenliu audit checkpoint)`);
  // the size comes from the note; its signature is the verifier's business
  const size = Number(note.split('\n')[1]);
  const records = await (opts.find ?? findAlertRecords)(dir, alertId);
  const read = tileReader(dir);
  const events: ProofEvent[] = [];
  const pending: number[] = [];
  for (const r of records) {
    if (r.seq > size) {
      pending.push(r.seq);
      continue;
    }
    const proof = await inclusionProof(read, r.seq - 1, size);
    events.push({ index: r.seq - 1, leaf: leafData(r.line), proof: proof.map((h) => h.toString('base64')) });
  }
  return { format: PROOF_FORMAT, alertId, checkpoint: note, events, ...(pending.length ? { pending } : {}) };
}

export interface ProofCheck {
  ok: boolean;
  origin?: string;
  size?: number;
  events?: number;
  /** what failed and where (event index), when not ok */
  error?: string;
}

/**
 * Checks a proof offline: the checkpoint's signature by `key` (and by each witness key), its
 * origin (default: the key's name), and each event's inclusion and that it belongs to the alert.
 */
export function verifyAlertProof(p: unknown, key: string | NoteVerifier, opts: { origin?: string; witnesses?: string[] } = {}): ProofCheck {
  try {
    const proof = p as AlertProof;
    if (!proof || typeof proof !== 'object' || proof.format !== PROOF_FORMAT) throw new NoteError(`not a ${PROOF_FORMAT} file`);
    if (typeof proof.checkpoint !== 'string' || !Array.isArray(proof.events) || typeof proof.alertId !== 'string') throw new NoteError('proof needs alertId, checkpoint and events');
    const v = typeof key === 'string' ? parseVerifier(key) : key;
    const cp = openCheckpoint(proof.checkpoint, [v, ...(opts.witnesses ?? []).map(parseVerifier)]);
    const origin = opts.origin ?? v.name;
    if (cp.origin !== origin) throw new NoteError(`checkpoint is for origin "${cp.origin}", not "${origin}" (a proof for another log)`);
    const root = cp.root;
    for (const [i, e] of proof.events.entries()) {
      const where = `event ${i + 1} (leaf index ${e?.index})`;
      if (!e || !Number.isSafeInteger(e.index) || typeof e.leaf !== 'string' || !Array.isArray(e.proof)) throw new NoteError(`${where}: malformed`);
      let rec: { seq?: number; event?: { alertId?: string } };
      try {
        rec = JSON.parse(e.leaf) as typeof rec;
      } catch {
        throw new NoteError(`${where}: leaf is not a record`);
      }
      if (rec.seq !== e.index + 1) throw new NoteError(`${where}: the record has seq ${rec.seq}, the leaf index says ${e.index + 1}`);
      if (rec.event?.alertId !== proof.alertId) throw new NoteError(`${where}: the record belongs to alert ${rec.event?.alertId}, not ${proof.alertId}`);
      let got: Buffer;
      try {
        got = rootFromInclusionProof(e.index, cp.size, leafHash(e.leaf), e.proof.map((h) => Buffer.from(h, 'base64')));
      } catch (err) {
        throw new NoteError(`${where}: ${(err as Error).message}`);
      }
      if (!got.equals(root)) throw new NoteError(`${where}: inclusion proof does not lead to the checkpoint's root (the record or the proof was altered)`);
    }
    return { ok: true, origin: cp.origin, size: cp.size, events: proof.events.length };
  } catch (err) {
    if (err instanceof NoteError) return { ok: false, error: err.message };
    throw err;
  }
}
