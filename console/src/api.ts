/** Calls fenliu's API with the console session (cookie) and the CSRF token on every change. */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  code?: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem,
  ) {
    super(problem.detail ?? problem.title ?? `HTTP ${status}`);
  }
}

export interface Me {
  keyId: string;
  kind: 'source' | 'platform' | 'operator';
  ownerId: string | null;
  scopes: string[];
  csrfToken: string;
  expiresAt: string;
  sources: { id: string; name: string }[];
  platforms: { id: string; name: string }[];
  routes?: { id: string; name: string }[];
  /** The installation's category table: code → names. */
  categories?: Record<string, { zh: string; en: string }>;
}

let csrf = '';
let onUnauthenticated: () => void = () => undefined;

export function setCsrf(token: string): void {
  csrf = token;
}

export function whenSignedOut(fn: () => void): void {
  onUnauthenticated = fn;
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (method !== 'GET') headers['x-csrf-token'] = csrf;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin', cache: 'no-store' });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!res.ok) {
    const err = new ApiError(res.status, (parsed as Problem) ?? { title: text });
    if (res.status === 401 && !path.startsWith('/console/api/session')) onUnauthenticated();
    throw err;
  }
  return parsed as T;
}

export const get = <T>(path: string) => api<T>('GET', path);
export const post = <T>(path: string, body?: unknown) => api<T>('POST', path, body ?? {});

export function qs(params: Record<string, string | number | undefined | null>): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, String(v));
  const s = u.toString();
  return s ? `?${s}` : '';
}
