/**
 * `fenliu audit verify DIR [--json]` and `fenliu audit compact DIR --older-than <ISO|Nd> [--fields a,b] [--json]`.
 * Each returns the process exit code: 0 ok, 1 broken / failed, 2 usage error.
 */
import { parseArgs, parseOlderThan, std, type Out } from './cli-args.js';
import { compactSegments } from './compact.js';
import { verifyAuditDir } from './verify.js';
import { verifySinceCommand } from './merkle-cli.js';
import { checkStoredTree } from './consistency.js';
import { readTreeHead } from './tiles.js';
import { closeAuditIndexes, rebuildIndex } from './event-index.js';

const BOOLEAN = new Set(['json']);

export async function auditVerifyCommand(argv: string[], io: Out = std): Promise<number> {
  const { positional, flags } = parseArgs(argv, BOOLEAN);
  if (positional.length !== 1) {
    io.err('usage: fenliu audit verify DIR [--json]');
    return 2;
  }
  const dir = positional[0];
  let res;
  try {
    res = await verifyAuditDir(dir);
  } catch (err) {
    io.err(`fenliu audit verify: cannot read ${dir}: ${(err as Error).message}`);
    return 2;
  }
  if (flags.has('since')) {
    // the chain first (it names the broken line), then the tree against the saved checkpoint
    if (!res.ok) return printVerify(dir, res, flags, io);
    const consistency = await verifySinceCommand(dir, flags, res.pruned ?? 0, io);
    if (flags.has('json')) io.out(JSON.stringify({ ...res, ok: consistency.ok, consistency }));
    else printVerify(dir, res, flags, io);
    return consistency.ok ? 0 : 1;
  }
  // the Merkle tree, when there is one (tree.json): every tile against the records
  if (res.ok && (await readTreeHead(dir).catch(() => true))) {
    const tree = await checkStoredTree(dir, res.pruned ?? 0);
    if ('error' in tree) {
      if (flags.has('json')) io.out(JSON.stringify({ ...res, ok: false, tree }));
      else {
        io.out(`BROKEN  ${dir}`);
        io.out(`  what: ${tree.error}`);
        io.out(`  (the chain of ${res.records} records is intact; the Merkle tree does not match it)`);
      }
      return 1;
    }
    if (!flags.has('json')) io.out(`OK  Merkle tree: ${tree.current.size} leaves, root ${tree.current.root}; every tile matches the records`);
  }
  return printVerify(dir, res, flags, io);
}

function printVerify(dir: string, res: Awaited<ReturnType<typeof verifyAuditDir>>, flags: Map<string, string | true>, io: Out): number {
  if (flags.has('json')) {
    io.out(JSON.stringify(res));
    return res.ok ? 0 : 1;
  }
  if (res.ok) {
    io.out(`OK  ${dir}: ${res.records} records in ${res.segments} segments, chain and manifest intact`);
    if (res.pruned) io.out(`    ${res.pruned} records in pruned segments (chain taken from the manifest)`);
    if (res.head) io.out(`    head: seq ${res.head.seq}, hash ${res.head.hash} (${res.head.file}); compare with an external anchor to detect removal at the end`);
    return 0;
  }
  const e = res.error!;
  io.out(`BROKEN  ${dir}`);
  io.out(`  file: ${e.file}`);
  io.out(`  line: ${e.line === 0 ? '(whole file)' : e.line}`);
  if (e.seq !== undefined) io.out(`  seq:  ${e.seq}`);
  io.out(`  what: ${e.message}`);
  io.out(`  (${res.records} records in ${res.segments} segments verified before this point)`);
  return 1;
}

export async function auditCompactCommand(argv: string[], io: Out = std): Promise<number> {
  const { positional, flags } = parseArgs(argv, BOOLEAN);
  const older = flags.get('older-than');
  if (positional.length !== 1 || typeof older !== 'string') {
    io.err('usage: fenliu audit compact DIR --older-than <ISO date|30d|12h> [--fields data.alert,data.body] [--json]');
    return 2;
  }
  let olderThan: Date;
  try {
    olderThan = parseOlderThan(older);
  } catch (err) {
    io.err((err as Error).message);
    return 2;
  }
  const f = flags.get('fields');
  const fields = typeof f === 'string' ? f.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
  try {
    const res = await compactSegments(positional[0], { olderThan, ...(fields ? { fields } : {}) });
    if (flags.has('json')) io.out(JSON.stringify(res));
    else io.out(`compacted ${res.segments.length} segments, removed ${res.redacted} bodies older than ${olderThan.toISOString()}`);
    return 0;
  } catch (err) {
    io.err(`fenliu audit compact: ${(err as Error).message}`);
    return 1;
  }
}

/** `fenliu audit index DIR [--json]`: rebuilds the SQLite index (index.sqlite) from the segments. */
export async function auditIndexCommand(argv: string[], io: Out = std): Promise<number> {
  const { positional, flags } = parseArgs(argv, BOOLEAN);
  if (positional.length !== 1) {
    io.err('usage: fenliu audit index DIR [--json]');
    return 2;
  }
  try {
    const res = await rebuildIndex(positional[0]);
    if (flags.has('json')) io.out(JSON.stringify({ records: res.records, ms: Math.round(res.ms) }));
    else io.out(`indexed ${res.records} records of ${positional[0]} in ${(res.ms / 1000).toFixed(1)} s`);
    return 0;
  } catch (err) {
    io.err(`fenliu audit index: ${(err as Error).message}`);
    return 1;
  } finally {
    closeAuditIndexes();
  }
}
