/**
 * The one error catalogue. Codes are stable and never reused: retire a code by leaving it here
 * with `retired: true`, never by renaming it. docs/errors.md lists every code (a test checks).
 */

export interface ErrorSpec {
  status: number;
  title: string;
  retired?: boolean;
}

export const ERRORS = {
  FENLIU_ERR_MALFORMED_JSON: { status: 400, title: 'The request body is not valid JSON' },
  FENLIU_ERR_BAD_REQUEST: { status: 400, title: 'The request is malformed' },
  FENLIU_ERR_UNAUTHENTICATED: { status: 401, title: 'A valid API key is required' },
  FENLIU_ERR_FORBIDDEN: { status: 403, title: 'The API key may not do this' },
  FENLIU_ERR_SOURCE_MISMATCH: { status: 403, title: 'The API key is not bound to this source system' },
  FENLIU_ERR_NOT_FOUND: { status: 404, title: 'No such resource' },
  FENLIU_ERR_IDEMPOTENCY_CONFLICT: { status: 409, title: 'This idempotency key was used with a different alert' },
  FENLIU_ERR_IDEMPOTENCY_IN_PROGRESS: { status: 409, title: 'An alert with this idempotency key is still being stored' },
  FENLIU_ERR_ILLEGAL_TRANSITION: { status: 409, title: 'This state change is not allowed' },
  FENLIU_ERR_CONFLICT: { status: 409, title: 'The resource is not in a state that allows this' },
  FENLIU_ERR_PAYLOAD_TOO_LARGE: { status: 413, title: 'The request body is larger than allowed' },
  FENLIU_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'The content type is not supported' },
  FENLIU_ERR_VALIDATION: { status: 422, title: 'The alert does not match the schema' },
  FENLIU_ERR_POLICE_ONLY: { status: 422, title: 'This category stays with the police and is never diverted' },
  FENLIU_ERR_NO_ROUTE: { status: 422, title: 'No route matches this alert' },
  FENLIU_ERR_RATE_LIMITED: { status: 429, title: 'Too many requests' },
  FENLIU_ERR_INTERNAL: { status: 500, title: 'Internal error' },
  FENLIU_ERR_UNAVAILABLE: { status: 503, title: 'The gateway cannot store alerts right now' },
  FENLIU_ERR_SHUTTING_DOWN: { status: 503, title: 'The gateway is shutting down' },
  FENLIU_ERR_BAD_SIGNATURE: { status: 401, title: 'The callback signature is missing, invalid or too old' },
  FENLIU_ERR_REPLAYED: { status: 409, title: 'This callback was already received' },
  FENLIU_ERR_MALFORMED_XML: { status: 400, title: 'The request body is not well-formed XML' },
  FENLIU_ERR_XML_DOCTYPE: { status: 400, title: 'XML with a DOCTYPE or entity declarations is refused' },
  FENLIU_ERR_TOO_DEEP: { status: 400, title: 'The request body is nested too deeply' },
  FENLIU_ERR_NOT_A_SOURCE: { status: 403, title: 'Only a source key submits alerts' },
  FENLIU_ERR_NOT_REPLICATED: { status: 503, title: 'The alert did not reach enough Redis replicas in time' },
  FENLIU_ERR_NO_CHECKPOINT_SIGNER: { status: 503, title: 'No archiving process signed an audit checkpoint' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/** One offending field: RFC 6901 JSON pointer into the request document. */
export interface FieldError {
  pointer: string;
  message: string;
  /**
   * For alerts sent in another format (EIDO, CAP, vendor JSON): the alert.v1 field the problem
   * was found in, while `pointer` points into the document as sent.
   */
  field?: string;
}

/** An error that becomes an RFC 9457 problem+json response. */
export class ProblemError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly errors?: FieldError[];
  readonly headers?: Record<string, string>;
  readonly extra?: Record<string, unknown>;

  constructor(
    code: ErrorCode,
    detail?: string,
    opts: { errors?: FieldError[]; headers?: Record<string, string>; extra?: Record<string, unknown> } = {},
  ) {
    super(detail ?? ERRORS[code].title);
    this.name = 'ProblemError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.errors = opts.errors;
    this.headers = opts.headers;
    this.extra = opts.extra;
  }
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  code: ErrorCode;
  errors?: FieldError[];
  [k: string]: unknown;
}

export function problemType(code: ErrorCode): string {
  return `https://fenliu.dev/errors#${code.toLowerCase().replace(/_/g, '-')}`;
}

export function toProblem(err: ProblemError, instance?: string): Problem {
  const p: Problem = {
    type: problemType(err.code),
    title: ERRORS[err.code].title,
    status: err.status,
    detail: err.message,
    code: err.code,
    ...err.extra,
  };
  if (instance) p.instance = instance;
  if (err.errors) p.errors = err.errors;
  return p;
}
