#!/usr/bin/env node
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';

// Command modules are imported when their command runs: --help, --version and usage errors
// answer at once, without loading fastify, BullMQ or the adapters.

type Options = NonNullable<ParseArgsConfig['options']>;

interface Command {
  /** Usage lines, shown by `--help`, `fenliu help CMD` and after a usage error. */
  usage: string;
  /** The options it takes: checked here, before the command runs, so every command refuses an unknown one alike. */
  options: Options;
  /** Positional arguments required / allowed. */
  args: [min: number, max: number];
  /** The first argument is a folder that must exist (an audit folder: a typo must not read as "0 records, intact"). */
  dirArg?: boolean;
  run(argv: string[]): Promise<number | void>;
}

const str = { type: 'string' } as const;
const bool = { type: 'boolean' } as const;

const COMMANDS: Record<string, Command> = {
  serve: {
    usage: `fenliu serve [--config FILE] [--role all|api|worker|archiver]
  Starts fenliu: the HTTP API, the delivery workers and, with sandbox.enabled, the simulated
  platforms. Without REDIS_URL (or redis.url) it starts its own redis-server (data in redis.dataDir).
  --config FILE   the config (default config/demo.yaml)
  --role ROLE     all (default), api, worker or archiver`,
    options: { config: str, role: str },
    args: [0, 0],
    async run(argv) {
      const { values } = parseArgs({ args: argv, options: { config: { type: 'string', default: 'config/demo.yaml' }, role: { type: 'string', default: 'all' } } });
      const { ROLES } = await import('./roles.js');
      const role = values.role as (typeof ROLES)[number];
      if (!ROLES.includes(role)) throw new UsageError(`--role must be ${ROLES.join(', ')}, not ${role}`);
      const { serve } = await import('./server.js');
      await serve(values.config!, role);
    },
  },
  'config check': {
    usage: `fenliu config check FILE
  Runs every check fenliu serve runs before it starts anything: the schema, references between
  sections, each platform's adapter and its options. Prints "ok" or each problem with its JSON pointer.`,
    options: {},
    args: [1, 1],
    run: async (argv) => (await import('./kit/config-check.js')).configCheckCommand(argv[0]),
  },
  'audit verify': {
    usage: `fenliu audit verify DIR [--json] [--since CHECKPOINT [--key VKEY] [--origin O]]
  Verifies the hash chain, manifest and Merkle tiles of an audit folder offline. With --since,
  also proves (RFC 9162 consistency) that the log extends a checkpoint saved earlier.
  Exit 0 intact, 1 broken.`,
    options: { json: bool, since: str, key: str, origin: str },
    args: [1, 1],
    dirArg: true,
    run: async (argv) => (await import('./audit/cli.js')).auditVerifyCommand(argv),
  },
  'audit compact': {
    usage: `fenliu audit compact DIR --older-than 30d|12h|ISO [--fields data.alert,data.body] [--json]
  Removes bodies older than the limit from closed segments, keeping the chain verifiable.`,
    options: { 'older-than': str, fields: str, json: bool },
    args: [1, 1],
    dirArg: true,
    run: async (argv) => (await import('./audit/cli.js')).auditCompactCommand(argv),
  },
  'audit index': {
    usage: `fenliu audit index DIR [--json]
  Rebuilds the SQLite index (DIR/index.sqlite) of the audit records from the segments. Timelines,
  audit queries and replay read through it; it also catches up by itself.`,
    options: { json: bool },
    args: [1, 1],
    dirArg: true,
    run: async (argv) => (await import('./audit/cli.js')).auditIndexCommand(argv),
  },
  'audit tree': {
    usage: `fenliu audit tree DIR [--json]
  Builds (once, for logs written before the tree existed) or catches up the Merkle tree tiles.`,
    options: { json: bool },
    args: [1, 1],
    dirArg: true,
    run: async (argv) => (await import('./audit/merkle-cli.js')).auditTreeCommand('tree', argv) as Promise<number>,
  },
  'audit keygen': {
    usage: `fenliu audit keygen NAME [--cosigner]
  Prints a new Ed25519 signing key (PRIVATE+KEY+…, keep secret) and its public vkey.`,
    options: { cosigner: bool },
    args: [1, 1],
    run: async (argv) => (await import('./audit/merkle-cli.js')).auditTreeCommand('keygen', argv) as Promise<number>,
  },
  'audit checkpoint': {
    usage: `fenliu audit checkpoint (--config FILE | --dir DIR --key-file FILE [--origin O])
  Signs a checkpoint of the audit tree now and writes it to DIR/checkpoint.`,
    options: { config: str, dir: str, 'key-file': str, origin: str },
    args: [0, 0],
    run: async (argv) => (await import('./audit/merkle-cli.js')).auditTreeCommand('checkpoint', argv) as Promise<number>,
  },
  'audit prove': {
    usage: `fenliu audit prove ALERT_ID (--config FILE | --dir DIR) [--out FILE]
  Writes every audit event of the alert with its inclusion proof against one signed checkpoint.`,
    options: { config: str, dir: str, out: str },
    args: [1, 1],
    run: async (argv) => (await import('./audit/merkle-cli.js')).auditTreeCommand('prove', argv) as Promise<number>,
  },
  'audit verify-proof': {
    usage: `fenliu audit verify-proof FILE --key VKEY [--origin O] [--witness VKEY,…] [--json]
  Checks a proof file offline, without the log. Exit 0 valid, 1 invalid.`,
    options: { key: str, origin: str, witness: str, json: bool },
    args: [1, 1],
    run: async (argv) => (await import('./audit/merkle-cli.js')).auditTreeCommand('verify-proof', argv) as Promise<number>,
  },
  'audit witness': {
    usage: `fenliu audit witness DIR --key LOG_VKEY --witness-key FILE [--since CHECKPOINT] [--out FILE] [--write]
  Checks that the log extends the last checkpoint this witness saw, then cosigns it (C2SP tlog-cosignature).`,
    options: { key: str, 'witness-key': str, since: str, out: str, write: bool, origin: str },
    args: [1, 1],
    dirArg: true,
    run: async (argv) => (await import('./audit/merkle-cli.js')).auditTreeCommand('witness', argv) as Promise<number>,
  },
  'audit prune': {
    usage: `fenliu audit prune DIR --before ISO|30d [--move-to DIR] [--json]
  Deletes (or moves) closed segments older than the date; tiles and checkpoints stay verifiable.`,
    options: { before: str, 'move-to': str, json: bool },
    args: [1, 1],
    dirArg: true,
    run: async (argv) => (await import('./audit/merkle-cli.js')).auditTreeCommand('prune', argv) as Promise<number>,
  },
  replay: {
    usage: `fenliu replay DIR [--from ISO] [--to ISO] [--source ID] [--platform ID] --mode diff|redeliver
              [--config FILE] [--json] [--reason TEXT --key KEY --url URL] [--dry-run]
              [--redis URL | --report FILE]
  diff: re-translates the logged alerts with today's code and config and prints every difference
  (exit 1 when any); the run is audited through Redis (--redis or redis.url), else written to a
  hashed report file. redeliver: asks a running fenliu (--url) to send them again (admin key).`,
    options: { from: str, to: str, source: str, platform: str, mode: str, config: str, json: bool, reason: str, 'dry-run': bool, url: str, key: str, redis: str, report: str },
    args: [1, 1],
    dirArg: true,
    run: async (argv) => (await import('./audit/replay-cli.js')).replayCommand(argv),
  },
  'adapter new': {
    usage: `fenliu adapter new ID [--dir DIR]
  Scaffolds a TypeScript adapter folder (default ./ID) that passes \`fenliu adapter test\` as
  generated, and lists the TODOs to fill in. Nothing is written unless it all succeeded.`,
    options: { dir: str },
    args: [1, 1],
    run: async (argv) => (await import('./kit/adapter-new.js')).adapterNewCommand(argv),
  },
  'adapter test': {
    usage: `fenliu adapter test PATH [--golden DIR] [--json] [--url PLATFORM_URL [--options JSON]]
  Runs the conformance suite over an adapter (a folder with index.ts, or a module file).
  With --url, also asks the platform what it offers (e.g. Open311 service discovery) and warns
  about configured options it does not know; warnings do not fail the run.
  Exit 0 when every check passes, 1 otherwise.`,
    options: { golden: str, json: bool, url: str, options: str },
    args: [1, 1],
    run: async (argv) => (await import('./kit/adapter-test.js')).adapterTestCommand(argv),
  },
  'adapter golden': {
    usage: `fenliu adapter golden DIR
  Rewrites DIR/golden/ from the adapter's fixtures; review the diff before committing.`,
    options: {},
    args: [1, 1],
    run: async (argv) => (await import('./kit/adapter-new.js')).adapterGoldenCommand(argv),
  },
  send: {
    usage: `fenliu send FILE --to PLATFORM [--config FILE] [--source ID] [--format fenliu|eido|cap|vendor]
            [--show-secrets] [--timeout-ms N]
  Sends one alert to one platform through the engine's own steps (no Redis, no retries) and
  prints the exact request and response. Exit 0 only when the platform accepted it.`,
    options: { to: str, config: str, source: str, format: str, 'show-secrets': bool, 'timeout-ms': str },
    args: [1, 1],
    run: async (argv) => (await import('./kit/send.js')).sendCommand(argv),
  },
};

/** Commands that take a subcommand. */
const GROUPS = ['config', 'audit', 'adapter'];

const USAGE = `fenliu — interagency integration gateway

Usage:
  fenliu serve [--config FILE] [--role all|api|worker|archiver]
  fenliu config check FILE
  fenliu audit verify DIR [--json] [--since CHECKPOINT --key VKEY]
  fenliu audit compact DIR --older-than 30d [--fields a,b] [--json]
  fenliu audit index DIR [--json]
  fenliu audit tree|keygen|checkpoint|prove|verify-proof|witness|prune …   (fenliu help audit)
  fenliu replay DIR [--from ISO] [--to ISO] [--source ID] [--platform ID] --mode diff|redeliver
                [--config FILE] [--json] [--reason TEXT --key KEY --url URL] [--dry-run]
  fenliu adapter test PATH [--golden DIR] [--json] [--url PLATFORM_URL [--options JSON]]
  fenliu adapter new ID [--dir DIR]
  fenliu adapter golden DIR
  fenliu send FILE --to PLATFORM [--config FILE] [--source ID] [--show-secrets]
  fenliu --version
  fenliu help COMMAND        (or fenliu COMMAND --help)
`;

class UsageError extends Error {}

function groupUsage(group: string): string {
  return Object.entries(COMMANDS)
    .filter(([k]) => k.startsWith(`${group} `))
    .map(([, c]) => c.usage)
    .join('\n\n');
}

/** The command named by the words of argv: `serve`, `config check`, … or the group alone. */
function resolveCommand(words: string[]): { key?: string; group?: string; unknown?: string } {
  const [name, sub] = words;
  if (GROUPS.includes(name)) {
    if (sub !== undefined && COMMANDS[`${name} ${sub}`]) return { key: `${name} ${sub}` };
    return { group: name, unknown: sub };
  }
  if (COMMANDS[name]) return { key: name };
  return { unknown: name };
}

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
const err = (s: string) => process.stderr.write(s.endsWith('\n') ? s : `${s}\n`);

function version(): string {
  // dist/src/cli.js or src/cli.ts: package.json is two or one folders up.
  const here = dirname(fileURLToPath(import.meta.url));
  const file = [join(here, '..', '..', 'package.json'), join(here, '..', 'package.json')].find((f) => existsSync(f))!;
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

/** Errors that are the user's situation, not a bug: said in one line (by class name, so their modules load lazily). */
const PLAIN_ERRORS = new Set(['RedisServerMissingError', 'PersistenceError', 'PortInUseError', 'DataDirInUseError']);

/** One line saying what is wrong, then the usage: exit 2. */
function usageError(message: string, usage: string): number {
  err(`fenliu: ${message}\n\n${usage}`);
  return 2;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name) {
    err(USAGE);
    return 2;
  }
  if (name === '--version' || name === '-V' || name === 'version') {
    out(`fenliu ${version()}`);
    return 0;
  }
  if (name === '--help' || name === '-h') {
    out(USAGE);
    return 0;
  }
  if (name === 'help') {
    if (!rest.length) {
      out(USAGE);
      return 0;
    }
    const r = resolveCommand(rest);
    if (r.key) out(COMMANDS[r.key].usage);
    else if (r.group && r.unknown === undefined) out(groupUsage(r.group));
    else return usageError(`no command "${rest.join(' ')}"`, USAGE);
    return 0;
  }
  const r = resolveCommand(argv);
  const helpAsked = argv.some((a) => a === '--help' || a === '-h');
  if (!r.key) {
    if (r.group) {
      if (helpAsked && (r.unknown === undefined || r.unknown.startsWith('-'))) return (out(groupUsage(r.group)), 0);
      return usageError(r.unknown === undefined ? `${r.group} needs a subcommand` : `unknown subcommand "${r.group} ${r.unknown}"`, groupUsage(r.group));
    }
    return usageError(`unknown command "${name}"`, USAGE);
  }
  const cmd = COMMANDS[r.key];
  const args = argv.slice(r.key.split(' ').length);
  if (helpAsked) {
    out(cmd.usage);
    return 0;
  }
  // Every command's arguments are checked the same way, whatever parser the command uses inside.
  try {
    const { positionals } = parseArgs({ args, options: cmd.options, allowPositionals: true, strict: true });
    const [min, max] = cmd.args;
    if (positionals.length < min) return usageError(`${r.key}: missing argument`, cmd.usage);
    if (positionals.length > max) return usageError(`${r.key}: unexpected argument "${positionals[max]}"`, cmd.usage);
    if (cmd.dirArg && !(existsSync(positionals[0]) && statSync(positionals[0]).isDirectory())) return usageError(`${r.key}: ${positionals[0]}: no such folder`, cmd.usage);
  } catch (e) {
    return usageError(`${r.key}: ${(e as Error).message.split('\n')[0].replace(/\. To specify a positional.*/, '')}`, cmd.usage);
  }
  try {
    const code = await cmd.run(args);
    // -1 means "keep running" (serve).
    return typeof code === 'number' ? code : -1;
  } catch (e) {
    const kind = (e as Error | undefined)?.constructor?.name ?? '';
    if (e instanceof UsageError || kind === 'KitUsageError' || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      return usageError(`${r.key}: ${(e as Error).message.replace(/^usage: .*$/m, 'missing argument')}`, cmd.usage);
    }
    if (kind === 'ConfigError') {
      err(`fenliu: ${(e as Error).message.replace(/^config: /, 'config error: ')}`);
      return 1;
    }
    if (PLAIN_ERRORS.has(kind)) {
      err(`fenliu: ${(e as Error).message}`);
      return 1;
    }
    // A programming error deserves its stack; anything else is said in one line.
    if (e instanceof Error && !(e instanceof TypeError) && !(e instanceof ReferenceError)) err(`fenliu: ${e.message}`);
    else err(`fenliu: ${(e as Error | undefined)?.stack ?? String(e)}`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  if (code >= 0) process.exit(code);
});
