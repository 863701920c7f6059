/**
 * What the audit subcommands share: their output sink, their flag parser and the age argument of
 * `compact` and `prune`. A module of its own so that cli.ts and merkle-cli.ts, which call each
 * other's commands, need not import each other for these.
 */

export type Out = { out: (s: string) => void; err: (s: string) => void };
export const std: Out = { out: (s) => process.stdout.write(s + '\n'), err: (s) => process.stderr.write(s + '\n') };

/**
 * `--name=value`, `--name value`, or `--name` alone. A flag takes no value when it is one of
 * `booleans`, when it is last, or when the next word is itself a flag.
 */
export function parseArgs(argv: string[], booleans: ReadonlySet<string>): { positional: string[]; flags: Map<string, string | true> } {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      if (eq > 0) flags.set(name, a.slice(eq + 1));
      else if (!booleans.has(name) && i + 1 < argv.length && !argv[i + 1].startsWith('--')) flags.set(name, argv[++i]);
      else flags.set(name, true);
    } else positional.push(a);
  }
  return { positional, flags };
}

/** "2024-01-01", an ISO time, or a duration back from now: "30d", "12h". */
export function parseOlderThan(v: string, now = Date.now()): Date {
  const m = /^(\d+)([dh])$/.exec(v);
  if (m) return new Date(now - Number(m[1]) * (m[2] === 'd' ? 86_400_000 : 3_600_000));
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) throw new RangeError(`--older-than: not a date or duration: ${v}`);
  return d;
}
