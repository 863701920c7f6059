/**
 * C2SP signed notes (c2sp.org/signed-note), checkpoints (c2sp.org/tlog-checkpoint) and Ed25519
 * cosignatures (c2sp.org/tlog-cosignature), with node:crypto only.
 *
 *   checkpoint body:  <origin>\n<size>\n<base64 root>\n
 *   signed note:      <body>\n— <key name> base64(key id (4 bytes) || signature)\n …
 *   key id:           SHA-256(name || 0x0A || type || public key)[:4]; type 0x01 log, 0x04 cosigner
 *   vkey:             <name>+<key id hex>+base64(type || public key)
 *   private key:      PRIVATE+KEY+<name>+<key id hex>+base64(type || 32-byte seed)
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';

export const SIG_ED25519 = 0x01;
export const SIG_COSIGNATURE_V1 = 0x04;

/** A bad key, note or checkpoint; the message says what is wrong. */
export class NoteError extends Error {}

export interface NoteSigner {
  name: string;
  type: number;
  keyId: Buffer;
  privateKey: KeyObject;
  publicKey: Buffer;
}

export interface NoteVerifier {
  name: string;
  type: number;
  keyId: Buffer;
  publicKey: KeyObject;
}

const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export function keyId(name: string, type: number, pub: Buffer): Buffer {
  return createHash('sha256').update(name).update(Buffer.from([0x0a, type])).update(pub).digest().subarray(0, 4);
}

function checkName(name: string): void {
  if (!name || /[\s+]/u.test(name)) throw new NoteError(`key name "${name}" must be non-empty, without spaces or "+"`);
}

function publicFromSeed(seed: Buffer): { priv: KeyObject; pub: Buffer } {
  const priv = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(priv).export({ format: 'der', type: 'spki' });
  return { priv, pub: spki.subarray(spki.length - 32) };
}

/** A new Ed25519 key pair as `PRIVATE+KEY+…` and vkey strings. */
export function generateKey(name: string, type = SIG_ED25519): { privateKey: string; vkey: string } {
  checkName(name);
  const { privateKey } = generateKeyPairSync('ed25519');
  const seed = Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url');
  const { pub } = publicFromSeed(seed);
  const id = keyId(name, type, pub).toString('hex');
  return {
    privateKey: `PRIVATE+KEY+${name}+${id}+${Buffer.concat([Buffer.from([type]), seed]).toString('base64')}`,
    vkey: `${name}+${id}+${Buffer.concat([Buffer.from([type]), pub]).toString('base64')}`,
  };
}

export function parseSigner(text: string): NoteSigner {
  // base64 may hold "+": the key data is everything after the fourth "+"
  const all = text.trim().split('+');
  const parts = [...all.slice(0, 4), all.slice(4).join('+')];
  if (all.length < 5 || parts[0] !== 'PRIVATE' || parts[1] !== 'KEY') throw new NoteError('private key must look like PRIVATE+KEY+<name>+<key id>+<base64> (fenliu audit keygen)');
  const [, , name, idHex, b64] = parts;
  checkName(name);
  const raw = Buffer.from(b64, 'base64');
  if (raw.length !== 33 || (raw[0] !== SIG_ED25519 && raw[0] !== SIG_COSIGNATURE_V1)) throw new NoteError(`private key ${name}: not an Ed25519 key (type 0x01 or 0x04 and 32 bytes)`);
  const { priv, pub } = publicFromSeed(raw.subarray(1));
  const id = keyId(name, raw[0], pub);
  if (id.toString('hex') !== idHex.toLowerCase()) throw new NoteError(`private key ${name}: key id ${idHex} does not match the key (expected ${id.toString('hex')})`);
  return { name, type: raw[0], keyId: id, privateKey: priv, publicKey: pub };
}

export function parseVerifier(vkey: string): NoteVerifier {
  const all = vkey.trim().split('+');
  const parts = [all[0], all[1], all.slice(2).join('+')];
  if (all.length < 3) throw new NoteError('public key must be a vkey: <name>+<key id>+<base64> (fenliu audit keygen)');
  const [name, idHex, b64] = parts;
  checkName(name);
  const raw = Buffer.from(b64, 'base64');
  if (raw.length !== 33 || (raw[0] !== SIG_ED25519 && raw[0] !== SIG_COSIGNATURE_V1)) throw new NoteError(`vkey ${name}: not an Ed25519 key (type 0x01 or 0x04 and 32 bytes)`);
  const pub = raw.subarray(1);
  const id = keyId(name, raw[0], pub);
  if (id.toString('hex') !== idHex.toLowerCase()) throw new NoteError(`vkey ${name}: key id ${idHex} does not match the key (expected ${id.toString('hex')})`);
  return { name, type: raw[0], keyId: id, publicKey: createPublicKey({ key: Buffer.concat([SPKI_PREFIX, pub]), format: 'der', type: 'spki' }) };
}

export function verifierOf(s: NoteSigner): string {
  return `${s.name}+${s.keyId.toString('hex')}+${Buffer.concat([Buffer.from([s.type]), s.publicKey]).toString('base64')}`;
}

export interface Checkpoint {
  origin: string;
  size: number;
  /** 32 bytes */
  root: Buffer;
}

export function formatCheckpoint(c: Checkpoint): string {
  return `${c.origin}\n${c.size}\n${c.root.toString('base64')}\n`;
}

export function parseCheckpointBody(body: string): Checkpoint {
  const lines = body.split('\n');
  if (lines.length < 4 || lines[lines.length - 1] !== '') throw new NoteError('checkpoint: needs origin, size and root hash lines');
  const [origin, sizeText, rootText] = lines;
  if (!origin) throw new NoteError('checkpoint: empty origin line');
  if (!/^(0|[1-9]\d*)$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) throw new NoteError(`checkpoint: size "${sizeText}" is not a decimal number`);
  const root = Buffer.from(rootText, 'base64');
  if (root.length !== 32 || root.toString('base64') !== rootText) throw new NoteError('checkpoint: root hash is not base64 of 32 bytes');
  return { origin, size: Number(sizeText), root };
}

export interface SignedNote {
  /** the note text, ending in a newline */
  text: string;
  sigs: { name: string; keyId: Buffer; sig: Buffer; line: string }[];
}

export function parseNote(note: string): SignedNote {
  const i = note.lastIndexOf('\n\n');
  if (i < 0 || !note.endsWith('\n')) throw new NoteError('signed note: no blank line before the signatures, or no final newline');
  const text = note.slice(0, i + 1);
  const sigs: SignedNote['sigs'] = [];
  for (const line of note.slice(i + 2, -1).split('\n')) {
    const m = /^\u2014 (\S+) (\S+)$/u.exec(line);
    if (!m) throw new NoteError(`signed note: malformed signature line "${line}"`);
    const raw = Buffer.from(m[2], 'base64');
    if (raw.length < 5) throw new NoteError(`signed note: signature of ${m[1]} is too short`);
    sigs.push({ name: m[1], keyId: raw.subarray(0, 4), sig: raw.subarray(4), line });
  }
  if (!sigs.length) throw new NoteError('signed note: no signature lines');
  return { text, sigs };
}

function sigLine(name: string, id: Buffer, sig: Buffer): string {
  return `\u2014 ${name} ${Buffer.concat([id, sig]).toString('base64')}\n`;
}

export function signNote(text: string, signer: NoteSigner): string {
  if (signer.type !== SIG_ED25519) throw new NoteError(`key ${signer.name} is a cosigner key (type 0x04), not a log key`);
  return `${text}\n${sigLine(signer.name, signer.keyId, sign(null, Buffer.from(text), signer.privateKey))}`;
}

function cosignedMessage(text: string, time: number): Buffer {
  return Buffer.from(`cosignature/v1\ntime ${time}\n${text}`);
}

/** Adds a tlog-cosignature (timestamped Ed25519, type 0x04) to a signed checkpoint. */
export function cosignNote(note: string, signer: NoteSigner, time = Math.floor(Date.now() / 1000)): string {
  if (signer.type !== SIG_COSIGNATURE_V1) throw new NoteError(`key ${signer.name} is not a cosigner key (type 0x04; fenliu audit keygen --witness)`);
  const n = parseNote(note);
  const ts = Buffer.alloc(8);
  ts.writeBigUInt64BE(BigInt(time));
  const sig = sign(null, cosignedMessage(n.text, time), signer.privateKey);
  const others = n.sigs.filter((s) => !(s.name === signer.name && s.keyId.equals(signer.keyId))).map((s) => s.line + '\n');
  return `${n.text}\n${others.join('')}${sigLine(signer.name, signer.keyId, Buffer.concat([ts, sig]))}`;
}

/**
 * Verifies the signatures of the given keys (each must be present and valid: a log key as a
 * note signature, a 0x04 key as a cosignature) and returns the checkpoint. Unknown signatures are ignored.
 */
export function openCheckpoint(note: string, verifiers: NoteVerifier[]): Checkpoint & { text: string; cosignedAt: Record<string, number> } {
  const n = parseNote(note);
  const cosignedAt: Record<string, number> = {};
  for (const v of verifiers) {
    const s = n.sigs.find((x) => x.name === v.name && x.keyId.equals(v.keyId));
    if (!s) throw new NoteError(`checkpoint is not signed by ${v.name} (key id ${v.keyId.toString('hex')})`);
    if (v.type === SIG_COSIGNATURE_V1) {
      if (s.sig.length !== 72) throw new NoteError(`cosignature of ${v.name} has the wrong length`);
      const time = Number(s.sig.readBigUInt64BE(0));
      if (!verify(null, cosignedMessage(n.text, time), v.publicKey, s.sig.subarray(8))) throw new NoteError(`cosignature of ${v.name} does not verify (bad signature or altered checkpoint)`);
      cosignedAt[v.name] = time;
    } else if (!verify(null, Buffer.from(n.text), v.publicKey, s.sig)) {
      throw new NoteError(`signature of ${v.name} does not verify (bad signature or altered checkpoint)`);
    }
  }
  return { ...parseCheckpointBody(n.text), text: n.text, cosignedAt };
}
