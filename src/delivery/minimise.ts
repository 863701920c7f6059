import type { Alert } from '../../adapters/sdk.js';

/**
 * Fields a platform gets when its config lists none: the case, the place and the police's view,
 * but no personal data (caller, parties) — those must be granted explicitly.
 */
export const DEFAULT_FIELDS = ['source', 'reportedAt', 'category', 'summary', 'description', 'location', 'police', 'priority', 'attachments'];

/** What every platform gets, because an alert is not an alert without it. */
const ALWAYS = ['source', 'reportedAt', 'category', 'summary', 'location.address', 'location.regionCode'];

/** Personal fields: granted only by name, never by a parent path such as "caller" implicitly via defaults. */
export const PERSONAL_FIELDS = ['caller.name', 'caller.phone', 'parties.name', 'parties.phone', 'parties.idNumber'];

/**
 * Keeps only the listed dotted paths. A path through an array applies to every element
 * (`parties.phone` keeps each party's phone, plus its role, which identifies the party).
 */
export function minimise(alert: Alert, fields: string[] | undefined): Alert {
  const listed = fields ?? DEFAULT_FIELDS;
  // A platform that gets any of the caller's data also gets the confidentiality flag (是否保密),
  // or it could not know to keep the caller's identity to itself.
  const withFlag = listed.some((f) => f === 'caller' || f.startsWith('caller.')) ? [...listed, 'caller.confidential'] : listed;
  const paths = [...ALWAYS, ...withFlag].map((f) => f.split('.'));
  return pick(alert, paths) as Alert;
}

function pick(value: unknown, paths: string[][]): unknown {
  if (Array.isArray(value)) {
    // Elements of an array of objects keep their `role` whenever any field below is kept.
    const withRole = paths.some((p) => p.length > 0) ? [...paths, ['role']] : paths;
    return value.map((v) => pick(v, withRole));
  }
  if (value === null || typeof value !== 'object') return value;
  if (paths.some((p) => p.length === 0)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const sub = paths.filter((p) => p[0] === k).map((p) => p.slice(1));
    if (!sub.length || v === undefined) continue;
    const picked = pick(v, sub);
    if (picked !== null && typeof picked === 'object' && !Array.isArray(picked) && !Object.keys(picked).length) continue;
    out[k] = picked;
  }
  return out;
}
