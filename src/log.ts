import pino, { type Logger, type LoggerOptions } from 'pino';

/**
 * Personal data never reaches a log line. Known fields are censored by path; as a second net,
 * every logged string is scrubbed of anything shaped like a phone or resident ID number.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'headers.authorization',
  'headers["x-api-key"]',
  '*.caller.name',
  '*.caller.phone',
  '*.parties[*].name',
  '*.parties[*].phone',
  '*.parties[*].idNumber',
  'caller.name',
  'caller.phone',
  'alert.caller',
  'alert.parties',
  'secret',
  '*.secret',
  'password',
  '*.password',
  'token',
  '*.token',
];

const PHONE = /(?<![0-9])(?:\+?86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]){8}(?![0-9])/g;
const ID_NUMBER = /(?<![0-9])[1-9][0-9]{16}[0-9Xx](?![0-9])/g;
const LANDLINE = /(?<![0-9])0[1-9][0-9]{1,2}-?[0-9]{7,8}(?![0-9])/g;

/** Every pattern above holds seven digits in a row, single spaces or hyphens allowed between them. */
const MAYBE = /[0-9](?:[ -]?[0-9]){6}/;

export function scrub(s: string): string {
  // Most logged strings (ids, routes, messages) hold no such run: one test instead of three replaces.
  if (!MAYBE.test(s)) return s;
  return s.replace(ID_NUMBER, '[id]').replace(PHONE, '[phone]').replace(LANDLINE, '[phone]');
}

/**
 * REDACT_PATHS compiled into a small automaton over object keys (paths are few and fixed, so
 * every reachable set of path positions is built up front). Walking a logged value with it
 * censors exactly what pino's `redact` option would, in the walk that scrubs strings anyway:
 * pino's own redaction runs a wildcard redactor on every top-level value of every line
 * (the `*.` paths), about 8 µs per access line, most of the logging cost per request.
 */
interface PathState {
  /** The value at this position is replaced by the censor. */
  censor: boolean;
  /** Next state for a key named in some path. */
  keys: Map<string, PathState>;
  /** Next state for any other key (`*` in a path), or null: nothing below is redacted by path. */
  other: PathState | null;
}

const CENSOR = '[redacted]';

function pathSegments(path: string): string[] {
  return [...path.matchAll(/[^.[\]]+|\[([^[\]]*?)\]/g)].map((m) => (m[1] !== undefined ? m[1].replace(/^(["'`])(.*)\1$/, '$2') : m[0]));
}

function compilePaths(paths: string[]): PathState {
  const segs = paths.map(pathSegments);
  // A position is (path index, segments matched so far); a state is a set of positions.
  const memo = new Map<string, PathState | null>();
  const build = (pos: [number, number][]): PathState | null => {
    if (!pos.length) return null;
    const id = pos.map(([p, i]) => `${p}.${i}`).sort().join(' ');
    if (memo.has(id)) return memo.get(id)!;
    const state: PathState = { censor: pos.some(([p, i]) => i === segs[p].length), keys: new Map(), other: null };
    memo.set(id, state);
    const open = pos.filter(([p, i]) => i < segs[p].length);
    const step = (key: string | undefined) => open.filter(([p, i]) => segs[p][i] === '*' || segs[p][i] === key).map(([p, i]) => [p, i + 1] as [number, number]);
    for (const key of new Set(open.map(([p, i]) => segs[p][i]).filter((k) => k !== '*'))) state.keys.set(key, build(step(key))!);
    state.other = build(step(undefined));
    return state;
  };
  return build(segs.map((_, p) => [p, 0]))!;
}

const ROOT_PATHS = compilePaths(REDACT_PATHS);

function scrubDeep(v: unknown, at: PathState | null, depth: number): unknown {
  if (typeof v === 'string') return scrub(v);
  if (depth > 6 || v === null || typeof v !== 'object') return v;
  if (v instanceof Error) return { type: v.name, message: scrub(v.message), stack: v.stack ? scrub(v.stack) : undefined, code: (v as { code?: string }).code };
  // Copy on write: a plain object or array with nothing to scrub or censor is logged as it is,
  // so the common line (ids, routes, numbers) allocates nothing here.
  if (Array.isArray(v)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < v.length; i++) {
      const x = v[i];
      const next = at && (at.keys.size ? (at.keys.get(String(i)) ?? at.other) : at.other);
      const y = next?.censor && x !== undefined ? CENSOR : scrubDeep(x, next, depth + 1);
      if (y !== x) (out ??= v.slice())[i] = y;
    }
    return out ?? v;
  }
  const proto = Object.getPrototypeOf(v);
  const plain = proto === Object.prototype || proto === null;
  let out: Record<string, unknown> | undefined = plain ? undefined : {};
  for (const k in v) {
    if (!Object.prototype.hasOwnProperty.call(v, k)) continue;
    const x = (v as Record<string, unknown>)[k];
    const next = at && (at.keys.get(k) ?? at.other);
    const y = next?.censor && x !== undefined ? CENSOR : scrubDeep(x, next, depth + 1);
    if (out) out[k] = y;
    else if (y !== x) {
      out = { ...(v as Record<string, unknown>) };
      out[k] = y;
    }
  }
  return out ?? v;
}

/** What the logger does to each argument of a log call: censor REDACT_PATHS, scrub every string. */
export function cleanForLog(v: unknown): unknown {
  return scrubDeep(v, ROOT_PATHS, 0);
}

export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    base: { service: 'fenliu' },
    // No pino `redact`: REDACT_PATHS are censored by the hook below (see compilePaths).
    hooks: {
      logMethod(args, method) {
        method.apply(this, args.map(cleanForLog) as Parameters<typeof method>);
      },
    },
  };
}

/**
 * stdout, written asynchronously and in blocks: lines wait until 4 KiB are buffered or 100 ms have
 * passed, so a busy API makes one write system call per ~20 access lines instead of one per line
 * (each was ~8% of the API's CPU per request). pino writes what is buffered synchronously at exit
 * (process.exit, a fatal error, the end of a graceful stop); only a SIGKILL loses the last 100 ms.
 */
function stdoutDestination(): pino.DestinationStream {
  return pino.destination({ dest: 1, sync: false, minLength: 4096, periodicFlush: 100 });
}

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  const log = pino(loggerOptions(level), destination ?? stdoutDestination());
  // Child bindings (fastify's reqId, taken from the x-request-id header) are cleaned too: every
  // child inherits this method, as pino builds children with Object.create(parent).
  const child = log.child;
  log.child = function (this: Logger, bindings, options) {
    return child.call(this, cleanForLog(bindings) as typeof bindings, options);
  } as typeof log.child;
  return log;
}

const LEVEL_METHODS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
type LevelMethod = (typeof LEVEL_METHODS)[number];

/**
 * A request's logger (fastify's `childLoggerFactory`) that becomes a pino child only when
 * something logs through it. The access line is written by the root logger with the request id
 * in the line itself (src/app.ts), the same JSON a child would write, so a request that logs
 * nothing else makes no child: pino builds one per request otherwise (bindings serialised, a
 * level set up), a few µs of every request.
 */
export class LazyChildLogger {
  private made?: Logger;

  constructor(
    private readonly parent: Logger,
    private readonly bindings: pino.Bindings,
    private readonly options: pino.ChildLoggerOptions,
  ) {}

  private get log(): Logger {
    return (this.made ??= this.parent.child(this.bindings, this.options));
  }

  get level(): string {
    return this.made?.level ?? this.options.level ?? this.parent.level;
  }

  set level(level: string) {
    this.log.level = level;
  }

  isLevelEnabled(level: string): boolean {
    return this.log.isLevelEnabled(level);
  }

  child(bindings: pino.Bindings, options?: pino.ChildLoggerOptions): Logger {
    return this.log.child(bindings, options);
  }

  /** Logs through the child, made now if not yet. */
  call(method: LevelMethod, args: unknown[]): void {
    (this.log[method] as (...a: unknown[]) => void)(...args);
  }

  silent(): void {}
}

// The level methods (fatal … trace), each logging through the child.
export interface LazyChildLogger extends Record<LevelMethod, (...args: unknown[]) => void> {}
for (const m of LEVEL_METHODS) {
  LazyChildLogger.prototype[m] = function (this: LazyChildLogger, ...args: unknown[]) {
    this.call(m, args);
  };
}
