import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { compileSchema, schemaPath } from '../schemas.js';
import { webhookSecretProblem } from '../delivery/webhook-secret.js';
import type { Config } from './types.js';
import { parseSigner } from '../audit/checkpoint.js';

/** A configuration problem; `path` is the JSON pointer of the offending key. */
export class ConfigError extends Error {
  constructor(
    message: string,
    readonly problems: { path: string; message: string }[] = [],
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

const ENV_REF = /\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}/g;

/** Replaces ${NAME} and ${NAME:-default} in every string; a missing variable without default is an error. */
export function expandEnv(value: unknown, env: NodeJS.ProcessEnv, path = '', missing: string[] = [], unset: Map<string, string> = new Map()): unknown {
  if (typeof value === 'string') {
    // A value that is exactly one reference to an unset variable becomes undefined, so optional keys may stay unset.
    const whole = /^\$\{([A-Z_][A-Z0-9_]*)\}$/.exec(value);
    if (whole && env[whole[1]] === undefined) {
      unset.set(path, whole[1]);
      return undefined;
    }
    return value.replace(ENV_REF, (_m, name: string, def: string | undefined) => {
      const v = env[name];
      if (v !== undefined) return v;
      if (def !== undefined) return def;
      missing.push(`${path}: \${${name}} is not set`);
      return '';
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => expandEnv(v, env, `${path}/${i}`, missing, unset));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      const e = expandEnv(v, env, `${path}/${pointerEscape(k)}`, missing, unset);
      if (e !== undefined) out[k] = e;
    }
    return out;
  }
  return value;
}

function pointerEscape(s: string): string {
  return s.replace(/~/g, '~0').replace(/\//g, '~1');
}

let validateConfig: ReturnType<typeof compileSchema> | undefined;

/** Validates a parsed config document and applies defaults. Throws ConfigError naming each bad key. */
export function checkConfig(doc: unknown, baseDir: string, env: NodeJS.ProcessEnv = process.env): Config {
  const missing: string[] = [];
  const unset = new Map<string, string>();
  const expanded = expandEnv(doc, env, '', missing, unset);
  if (missing.length) throw new ConfigError(`config: ${missing.join('; ')}`, missing.map((m) => ({ path: m.split(':')[0], message: m })));
  validateConfig ??= compileSchema(schemaPath('config.schema.json'), { useDefaults: true });
  if (!validateConfig(expanded)) {
    const problems = (validateConfig.errors ?? []).map((e) => {
      const allowed = e.keyword === 'enum' ? ` (${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')})` : '';
      // A missing key is named itself (/platforms/0/url), not its parent object.
      let path = e.instancePath || '/';
      let message = `${e.message ?? 'invalid'}${allowed}`;
      if (e.keyword === 'required') {
        path = `${e.instancePath}/${pointerEscape((e.params as { missingProperty: string }).missingProperty)}`;
        message = 'is required';
      } else if (e.keyword === 'additionalProperties') {
        path = `${e.instancePath}/${pointerEscape((e.params as { additionalProperty: string }).additionalProperty)}`;
        message = 'is not a known key here';
      }
      const envNote = unset.has(path) ? ` (it is \${${unset.get(path)}}, which is not set)` : '';
      return { path, message: `${message}${envNote}` };
    });
    throw new ConfigError(`config: ${problems.map((p) => `${p.path} ${p.message}`).join('; ')}`, problems);
  }
  const cfg = expanded as unknown as Config;
  cfg.baseDir = baseDir;
  crossCheck(cfg);
  addFeedbackPlatforms(cfg);
  return cfg;
}

/** Id of the platform that carries feedback to a 110 source. */
export function feedbackPlatformId(sourceId: string): string {
  return `fb.${sourceId}`;
}

/**
 * Feedback to 110 travels the same engine as any delivery (retries, isolation, dead letters), so
 * each source with a feedback endpoint becomes a platform of its own.
 */
function addFeedbackPlatforms(cfg: Config): void {
  for (const s of cfg.sources) {
    if (!s.feedback) continue;
    const { url, adapter, options, states: _states, ...engine } = s.feedback;
    cfg.platforms.push({ id: feedbackPlatformId(s.id), name: `110 feedback: ${s.name ?? s.id}`, adapter, url, options, keys: [], fields: ['source'], feedbackFor: s.id, ...engine });
  }
}

/** Checks what a schema cannot: references between sections and unique ids. */
function crossCheck(cfg: Config): void {
  const problems: { path: string; message: string }[] = [];
  const unique = (list: { id: string }[], section: string) => {
    const seen = new Set<string>();
    list.forEach((x, i) => {
      if (seen.has(x.id)) problems.push({ path: `/${section}/${i}/id`, message: `duplicate id "${x.id}"` });
      seen.add(x.id);
    });
  };
  unique(cfg.sources, 'sources');
  unique(cfg.platforms, 'platforms');
  unique(cfg.routes, 'routes');
  const platformIds = new Set(cfg.platforms.map((p) => p.id));
  cfg.routes.forEach((r, i) => {
    r.targets.forEach((t, j) => {
      if (!platformIds.has(t)) problems.push({ path: `/routes/${i}/targets/${j}`, message: `unknown platform "${t}"` });
    });
    r.fallback.forEach((t, j) => {
      if (!platformIds.has(t)) problems.push({ path: `/routes/${i}/fallback/${j}`, message: `unknown platform "${t}"` });
    });
  });
  const slaRefs: [string, string | undefined][] = [
    ['/sla/escalateTo', cfg.sla?.escalateTo],
    ...cfg.routes.map((r, i) => [`/routes/${i}/sla/escalateTo`, r.sla?.escalateTo] as [string, string | undefined]),
    ...cfg.platforms.map((p, i) => [`/platforms/${i}/sla/escalateTo`, p.sla?.escalateTo] as [string, string | undefined]),
  ];
  for (const [path, id] of slaRefs) if (id && !platformIds.has(id)) problems.push({ path, message: `unknown platform "${id}"` });
  const enc = cfg.audit?.encryption;
  if (enc) {
    if (!enc.keys[enc.currentKey]) problems.push({ path: '/audit/encryption/currentKey', message: `no key "${enc.currentKey}" in /audit/encryption/keys` });
    for (const [kid, b64] of Object.entries(enc.keys)) {
      if (Buffer.from(b64, 'base64').length !== 32) problems.push({ path: `/audit/encryption/keys/${kid}`, message: 'must be 32 bytes, base64-encoded' });
    }
  }
  problems.push(...webhookSecretProblems(cfg));
  const signing = cfg.audit?.signing;
  if (signing && !signing.privateKey === !signing.privateKeyFile) problems.push({ path: '/audit/signing', message: 'give exactly one of privateKey and privateKeyFile' });
  if (signing?.privateKey) {
    try {
      const s = parseSigner(signing.privateKey);
      if (s.name !== signing.name) problems.push({ path: '/audit/signing/privateKey', message: `is the key of "${s.name}", not "${signing.name}"` });
    } catch (err) {
      problems.push({ path: '/audit/signing/privateKey', message: (err as Error).message });
    }
  }
  if (cfg.routes.filter((r) => r.default).length > 1) problems.push({ path: '/routes', message: 'at most one route may be the default' });
  const hashes = new Map<string, string>();
  const keyLists: [string, { sha256: string }[]][] = [
    ['/keys', cfg.keys],
    ...cfg.sources.map((s, i) => [`/sources/${i}/keys`, s.keys] as [string, { sha256: string }[]]),
    ...cfg.platforms.map((p, i) => [`/platforms/${i}/keys`, p.keys] as [string, { sha256: string }[]]),
  ];
  for (const [path, keys] of keyLists) {
    keys.forEach((k, i) => {
      const other = hashes.get(k.sha256);
      if (other) problems.push({ path: `${path}/${i}/sha256`, message: `the same key is also configured at ${other}` });
      hashes.set(k.sha256, `${path}/${i}`);
    });
  }
  if (problems.length) throw new ConfigError(`config: ${problems.map((p) => `${p.path} ${p.message}`).join('; ')}`, problems);
}

/**
 * Standard Webhooks secrets (outbound `auth: {type: hmac}`, callback secrets): a plain string is
 * refused, with how to convert it, because no Standard Webhooks verifier accepts what it signs.
 */
function webhookSecretProblems(cfg: Config): { path: string; message: string }[] {
  const out: { path: string; message: string }[] = [];
  const check = (path: string, holder: unknown) => {
    const h = holder as { auth?: { type?: string; secret?: unknown }; callback?: { secret?: unknown } } | undefined;
    if (h?.auth?.type === 'hmac' && typeof h.auth.secret === 'string') {
      const why = webhookSecretProblem(h.auth.secret);
      if (why) out.push({ path: `${path}/auth/secret`, message: why });
    }
    if (typeof h?.callback?.secret === 'string') {
      const why = webhookSecretProblem(h.callback.secret);
      if (why) out.push({ path: `${path}/callback/secret`, message: why });
    }
  };
  cfg.platforms.forEach((p, i) => check(`/platforms/${i}`, p));
  cfg.sources.forEach((s, i) => check(`/sources/${i}/feedback`, s.feedback));
  return out;
}

/** Reads, expands and validates a YAML or JSON config file. */
export async function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  const abs = resolve(file);
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (err) {
    throw new ConfigError(`config: cannot read ${file}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`config: ${file} is not valid YAML/JSON: ${(err as Error).message}`);
  }
  return checkConfig(doc, dirname(abs), env);
}
