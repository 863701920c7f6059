/**
 * The verifiable-log commands: `fenliu audit tree | keygen | checkpoint | prove | verify-proof |
 * witness | prune`, and the `--since` part of `verify`. Each returns the exit code: 0 ok,
 * 1 broken / failed, 2 usage error.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { loadConfig } from '../config/load.js';
import { parseArgs, parseOlderThan, std, type Out } from './cli-args.js';
import { NoteError, SIG_COSIGNATURE_V1, SIG_ED25519, generateKey, parseSigner } from './checkpoint.js';
import { refreshCheckpoint } from './checkpoint-log.js';
import { verifyConsistencySince, witnessCheckpoint, type ConsistencyResult } from './consistency.js';
import { syncTree } from './merkle-log.js';
import { proveAlert, verifyAlertProof } from './proof.js';
import { pruneSegments } from './prune.js';
import { TileError } from './tiles.js';

const BOOLEAN = new Set(['json', 'cosigner', 'write']);

function str(flags: Map<string, string | true>, name: string): string | undefined {
  const v = flags.get(name);
  return typeof v === 'string' ? v : undefined;
}

/** A key given inline (vkey / PRIVATE+KEY+…) or as a file holding it. */
async function keyArg(v: string): Promise<string> {
  if (v.includes('+')) return v.trim();
  return (await readFile(v, 'utf8')).trim();
}

/** audit.dir and audit.signing from --config, or --dir. */
async function context(flags: Map<string, string | true>): Promise<{ dir: string; signingKey?: string; origin?: string }> {
  const cfgFile = str(flags, 'config');
  if (cfgFile) {
    const cfg = await loadConfig(cfgFile);
    const s = cfg.audit.signing;
    const key = s ? (s.privateKeyFile ? await readFile(resolve(cfg.baseDir, s.privateKeyFile), 'utf8') : s.privateKey) : undefined;
    return { dir: resolve(str(flags, 'dir') ?? cfg.audit.dir), ...(key ? { signingKey: key } : {}), ...(s?.origin ? { origin: s.origin } : {}) };
  }
  const dir = str(flags, 'dir');
  if (!dir) throw new NoteError('give --dir DIR or --config FILE');
  return { dir };
}

export const TREE_USAGE = `  fenliu audit tree DIR [--json]
  fenliu audit keygen NAME [--cosigner]
  fenliu audit checkpoint (--config FILE | --dir DIR --key-file FILE [--origin O])
  fenliu audit prove ALERT_ID (--config FILE | --dir DIR) [--out FILE]
  fenliu audit verify-proof FILE --key VKEY [--origin O] [--witness VKEY,…] [--json]
  fenliu audit verify DIR --since CHECKPOINT [--key VKEY] [--origin O]
  fenliu audit witness DIR --key LOG_VKEY --witness-key FILE [--since CHECKPOINT] [--out FILE] [--write]
  fenliu audit prune DIR --before ISO|30d [--move-to DIR] [--json]`;

/** Runs `fenliu audit <sub>` for the commands of this module; undefined when `sub` is not one of them. */
export async function auditTreeCommand(sub: string | undefined, argv: string[], io: Out = std): Promise<number | undefined> {
  const run = handlers[sub ?? ''];
  if (!run) return undefined;
  const { positional, flags } = parseArgs(argv, BOOLEAN);
  try {
    return await run(positional, flags, io);
  } catch (err) {
    if (err instanceof NoteError || err instanceof TileError || err instanceof RangeError) {
      io.err(`fenliu audit ${sub}: ${err.message}`);
      return 1;
    }
    throw err;
  }
}

type Handler = (positional: string[], flags: Map<string, string | true>, io: Out) => Promise<number>;

const handlers: Record<string, Handler> = {
  async tree([dir], flags, io) {
    if (!dir) return usage(io, 'fenliu audit tree DIR [--json]');
    const { tree, added } = await syncTree(dir, Infinity, (n) => io.err(`  ${n} leaves`));
    const root = (await tree.root()).toString('base64');
    if (flags.has('json')) io.out(JSON.stringify({ size: tree.size, root, added }));
    else io.out(`tree of ${dir}: ${tree.size} leaves (${added} added), root ${root}`);
    return 0;
  },

  async keygen([name], flags, io) {
    if (!name) return usage(io, 'fenliu audit keygen NAME [--cosigner]');
    const k = generateKey(name, flags.has('cosigner') ? SIG_COSIGNATURE_V1 : SIG_ED25519);
    io.out(k.privateKey);
    io.out(k.vkey);
    return 0;
  },

  async checkpoint(_p, flags, io) {
    const ctx = await context(flags);
    const keyFile = str(flags, 'key-file');
    const keyText = keyFile ? await readFile(keyFile, 'utf8') : ctx.signingKey;
    if (!keyText) return usage(io, 'fenliu audit checkpoint: no signing key (audit.signing in the config, or --key-file)');
    const cp = await refreshCheckpoint(ctx.dir, { signer: parseSigner(keyText), origin: str(flags, 'origin') ?? ctx.origin });
    io.out(cp.note.trimEnd());
    return 0;
  },

  async prove([alertId], flags, io) {
    if (!alertId) return usage(io, 'fenliu audit prove ALERT_ID (--config FILE | --dir DIR) [--out FILE]');
    const ctx = await context(flags);
    const proof = await proveAlert(ctx.dir, alertId);
    if (!proof.events.length) {
      io.err(`fenliu audit prove: no archived event of alert ${alertId} in the checkpoint${proof.pending ? ` (${proof.pending.length} archived after it: sign a new checkpoint)` : ''}`);
      return 1;
    }
    const text = JSON.stringify(proof, null, 2) + '\n';
    const out = str(flags, 'out');
    if (out) {
      await writeFile(out, text);
      io.err(`${out}: ${proof.events.length} events of ${alertId} against the checkpoint of size ${proof.checkpoint.split('\n')[1]}`);
    } else io.out(text.trimEnd());
    return 0;
  },

  async 'verify-proof'([file], flags, io) {
    const key = str(flags, 'key');
    if (!file || !key) return usage(io, 'fenliu audit verify-proof FILE --key VKEY [--origin O] [--witness VKEY,…] [--json]');
    let proof: unknown;
    try {
      proof = JSON.parse(await readFile(file, 'utf8'));
    } catch (err) {
      io.err(`fenliu audit verify-proof: ${file}: ${(err as Error).message}`);
      return 1;
    }
    const w = str(flags, 'witness');
    const witnesses = w ? await Promise.all(w.split(',').map(keyArg)) : [];
    const r = verifyAlertProof(proof, await keyArg(key), { origin: str(flags, 'origin'), witnesses });
    if (flags.has('json')) io.out(JSON.stringify(r));
    else if (r.ok) io.out(`OK  ${file}: ${r.events} events in ${r.origin} at size ${r.size}`);
    else io.out(`BROKEN  ${file}: ${r.error}`);
    return r.ok ? 0 : 1;
  },

  async witness([dir], flags, io) {
    const key = str(flags, 'key');
    const wk = str(flags, 'witness-key');
    if (!dir || !key || !wk) return usage(io, 'fenliu audit witness DIR --key LOG_VKEY --witness-key FILE [--since CHECKPOINT] [--out FILE] [--write]');
    const sinceFile = str(flags, 'since');
    const r = await witnessCheckpoint(dir, {
      logKey: await keyArg(key),
      witness: parseSigner(await keyArg(wk)),
      ...(sinceFile ? { since: await readFile(sinceFile, 'utf8') } : {}),
      ...(str(flags, 'origin') ? { origin: str(flags, 'origin') } : {}),
    });
    if (!r.ok) {
      io.out(`REFUSED  ${dir}: ${r.error}`);
      return 1;
    }
    const out = str(flags, 'out');
    if (out) await writeFile(out, r.note);
    if (flags.has('write')) {
      const { writeDurably } = await import('./tiles.js');
      await writeDurably(join(dir, 'checkpoint'), r.note);
    }
    if (!out && !flags.has('write')) io.out(r.note.trimEnd());
    else io.err(`cosigned the checkpoint of size ${r.size}`);
    return 0;
  },

  async prune([dir], flags, io) {
    const before = str(flags, 'before');
    if (!dir || !before) return usage(io, 'fenliu audit prune DIR --before ISO|30d [--move-to DIR] [--json]');
    const moveTo = str(flags, 'move-to');
    const done = await pruneSegments(dir, { before: parseOlderThan(before), ...(moveTo ? { moveTo } : {}) });
    if (flags.has('json')) io.out(JSON.stringify({ pruned: done }));
    else io.out(`pruned ${done.length} segments${done.length ? ` (seq ${done[0].firstSeq}..${done[done.length - 1].lastSeq})` : ''}${moveTo ? `, moved to ${moveTo}` : ''}`);
    return 0;
  },
};

function usage(io: Out, text: string): number {
  io.err(`usage: ${text}`);
  return 2;
}

/** `fenliu audit verify DIR --since FILE`: the consistency part (the chain is checked by verifyAuditDir). */
export async function verifySinceCommand(dir: string, flags: Map<string, string | true>, firstLeaf: number, io: Out): Promise<ConsistencyResult> {
  const since = flags.get('since') as string;
  const key = str(flags, 'key');
  const r = await verifyConsistencySince(dir, await readFile(since, 'utf8'), { ...(key ? { key: await keyArg(key) } : {}), origin: str(flags, 'origin'), firstLeaf });
  if (flags.has('json')) return r;
  if (r.ok) {
    io.out(`OK  the log (size ${r.current!.size}, root ${r.current!.root}) extends ${since} (size ${r.old!.size})${r.signatureChecked ? '' : ' — signature not checked (no --key)'}`);
  } else {
    io.out(`BROKEN  ${dir} against ${since}`);
    io.out(`  what: ${r.error}`);
  }
  return r;
}
