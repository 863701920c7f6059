/**
 * What a process does, chosen with `fenliu serve --role`:
 * - `all`: everything (the default; one process for small installs and the demo);
 * - `api`: the HTTP API, the console and the sandbox;
 * - `worker`: delivery workers, the lifecycle worker (SLA, polling, retention) and, unless
 *   `audit.archiveIn` is `archiver`, the audit archiver;
 * - `archiver`: only the audit archiver, for installs busy enough to keep its hashing and fsyncs
 *   off the delivery workers.
 */
export type Role = 'all' | 'api' | 'worker' | 'archiver';

export const ROLES: readonly Role[] = ['all', 'api', 'worker', 'archiver'];

/** Serves the HTTP API (and the console, the sandbox, /metrics). */
export function servesApi(role: Role): boolean {
  return role === 'all' || role === 'api';
}

/** Runs the delivery engine and the lifecycle worker. */
export function delivers(role: Role): boolean {
  return role === 'all' || role === 'worker';
}

/** Runs the audit archiver (when `audit.archive` is on). */
export function archives(role: Role, archiveIn: 'workers' | 'archiver' = 'workers'): boolean {
  return role === 'archiver' || (archiveIn === 'workers' && delivers(role));
}
