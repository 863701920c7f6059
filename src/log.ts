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

function scrubDeep(v: unknown, depth = 0): unknown {
  if (typeof v === 'string') return scrub(v);
  if (depth > 6 || v === null || typeof v !== 'object') return v;
  if (v instanceof Error) return { type: v.name, message: scrub(v.message), stack: v.stack ? scrub(v.stack) : undefined, code: (v as { code?: string }).code };
  // Copy on write: a plain object or array with nothing to scrub is logged as it is, so the
  // common line (ids, routes, numbers) allocates nothing here.
  if (Array.isArray(v)) {
    let out: unknown[] | undefined;
    v.forEach((x, i) => {
      const y = scrubDeep(x, depth + 1);
      if (y !== x) (out ??= v.slice())[i] = y;
    });
    return out ?? v;
  }
  const proto = Object.getPrototypeOf(v);
  const plain = proto === Object.prototype || proto === null;
  let out: Record<string, unknown> | undefined = plain ? undefined : {};
  for (const [k, x] of Object.entries(v)) {
    const y = scrubDeep(x, depth + 1);
    if (out) out[k] = y;
    else if (y !== x) {
      out = { ...(v as Record<string, unknown>) };
      out[k] = y;
    }
  }
  return out ?? v;
}

export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    base: { service: 'fenliu' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    hooks: {
      logMethod(args, method) {
        method.apply(this, args.map((a) => scrubDeep(a)) as Parameters<typeof method>);
      },
    },
  };
}

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  // stdout written asynchronously: lines logged while a write is in flight go out together in the
  // next one (one system call per burst, not per request line); pino flushes it at exit.
  return pino(loggerOptions(level), destination ?? pino.destination({ dest: 1, sync: false }));
}
