#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config/load.js';
import { RedisServerMissingError } from './redis/embedded.js';
import { PersistenceError } from './redis/persistence.js';
import { serve, type Role } from './server.js';
import { ROLES } from './roles.js';
import { auditCompactCommand, auditIndexCommand, auditVerifyCommand } from './audit/cli.js';
import { replayCommand } from './audit/replay-cli.js';
import { adapterTestCommand, KitUsageError } from './kit/adapter-test.js';
import { adapterGoldenCommand, adapterNewCommand } from './kit/adapter-new.js';
import { sendCommand } from './kit/send.js';

const USAGE = `fenliu — interagency integration gateway

Usage:
  fenliu serve [--config FILE] [--role all|api|worker|archiver]
  fenliu config check FILE
  fenliu audit verify DIR [--json]
  fenliu audit compact DIR --older-than 30d [--fields a,b] [--json]
  fenliu audit index DIR [--json]
  fenliu replay DIR [--from ISO] [--to ISO] [--source ID] [--platform ID] --mode diff|redeliver
                [--config FILE] [--json] [--reason TEXT --key KEY --url URL] [--dry-run]
  fenliu adapter test PATH [--golden DIR] [--json]
  fenliu adapter new ID [--dir DIR]
  fenliu adapter golden DIR
  fenliu send FILE --to PLATFORM [--config FILE] [--source ID] [--show-secrets]
`;

type Command = (argv: string[]) => Promise<number | void>;

const commands: Record<string, Command> = {
  async serve(argv) {
    const { values } = parseArgs({ args: argv, options: { config: { type: 'string', default: 'config/demo.yaml' }, role: { type: 'string', default: 'all' } } });
    const role = values.role as Role;
    if (!ROLES.includes(role)) throw new UsageError(`--role must be ${ROLES.join(', ')}, not ${role}`);
    await serve(values.config!, role);
  },
  async config(argv) {
    const [sub, file] = argv;
    if (sub !== 'check' || !file) throw new UsageError('usage: fenliu config check FILE');
    const cfg = await loadConfig(file);
    process.stdout.write(`${file}: ok (${cfg.sources.length} sources, ${cfg.platforms.length} platforms, ${cfg.routes.length} routes)\n`);
    return 0;
  },
  async audit(argv) {
    const [sub, ...rest] = argv;
    if (sub === 'verify') return auditVerifyCommand(rest);
    if (sub === 'compact') return auditCompactCommand(rest);
    if (sub === 'index') return auditIndexCommand(rest);
    throw new UsageError('usage: fenliu audit verify DIR | fenliu audit compact DIR --older-than 30d');
  },
};

commands.replay = (argv) => replayCommand(argv);
commands.adapter = async ([sub, ...rest]) => {
  if (sub === 'test') return adapterTestCommand(rest);
  if (sub === 'new') return adapterNewCommand(rest);
  if (sub === 'golden') return adapterGoldenCommand(rest);
  throw new UsageError('usage: fenliu adapter test PATH | fenliu adapter new ID [--dir DIR] | fenliu adapter golden DIR');
};
commands.send = (argv) => sendCommand(argv);

class UsageError extends Error {}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE);
    return name ? 0 : 2;
  }
  const cmd = commands[name];
  if (!cmd) {
    process.stderr.write(`fenliu: unknown command "${name}"\n${USAGE}`);
    return 2;
  }
  try {
    const code = await cmd(rest);
    return typeof code === 'number' ? code : -1;
  } catch (err) {
    if (err instanceof ConfigError || err instanceof RedisServerMissingError || err instanceof UsageError || err instanceof KitUsageError || err instanceof PersistenceError) {
      process.stderr.write(`fenliu: ${err.message.replace(/^config: /, 'config error: ')}\n`);
      return err instanceof UsageError || err instanceof KitUsageError ? 2 : 1;
    }
    const e = err as Error;
    if (/unreachable/.test(e.message)) {
      process.stderr.write(`fenliu: ${e.message}\n`);
      return 1;
    }
    process.stderr.write(`fenliu: ${e.stack ?? e.message}\n`);
    return 1;
  }
}

// -1 means "keep running" (serve).
main(process.argv.slice(2)).then((code) => {
  if (code >= 0) process.exit(code);
});
