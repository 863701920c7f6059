/** Shapes of schemas/config.schema.json after defaults are applied. */

export type Scope = 'alerts:write' | 'alerts:read' | 'audit:read' | 'events:write' | 'admin';

export interface KeyConfig {
  id?: string;
  sha256: string;
  scopes: Scope[];
  expiresAt?: string;
}

export interface RateLimitConfig {
  max: number;
  perSeconds: number;
}

export interface SourceConfig {
  id: string;
  name?: string;
  keys: KeyConfig[];
  rateLimit?: RateLimitConfig;
  feedback?: { url: string; adapter: string; options: Record<string, unknown>; states: string[]; [k: string]: unknown };
  /** Alerts in other formats than fenliu's own JSON (EIDO, CAP, vendor JSON). */
  inbound?: SourceInboundConfig;
}

/** Code in the sender's vocabulary → fenliu category. */
export interface CategoryTables {
  eido?: Record<string, string>;
  cap?: Record<string, string>;
}

export interface SourceInboundConfig {
  /** What a plain application/json body from this source is. Default fenliu. */
  format: 'fenliu' | 'eido' | 'vendor';
  /** Vendor JSON → alert.v1, in the webhook adapter's mapping language. */
  mapping?: Record<string, unknown>;
  /** GB/T 2260 code used when an EIDO or CAP document carries none. */
  regionCode?: string;
  /** CAP geocode valueNames read as the region code. */
  geocodeNames?: string[];
  categories?: CategoryTables;
}

export interface PlatformConfig {
  id: string;
  name?: string;
  adapter: string;
  url: string;
  options: Record<string, unknown>;
  fields?: string[];
  keys: KeyConfig[];
  sla?: SlaConfig;
  /** Set on the platforms fenliu derives from sources' feedback settings. */
  feedbackFor?: string;
  [k: string]: unknown;
}

export interface SlaConfig {
  ackBy?: string;
  interveneBy?: string;
  resolveBy?: string;
  escalateTo?: string;
}

export interface RouteConfig {
  id: string;
  /** Display name (the console shows it instead of the id). */
  name?: string;
  default: boolean;
  match: { category?: string[]; region?: string[]; priority?: 'normal' | 'urgent' };
  targets: string[];
  fallback: string[];
  sla?: SlaConfig;
}

/** `audit.signing`: the Ed25519 key that signs checkpoints of the audit tree. */
export interface AuditSigningConfig {
  /** key name; the checkpoint origin unless `origin` is set */
  name: string;
  /** checkpoint origin line (the installation's name). Default: `name`. */
  origin?: string;
  /** PRIVATE+KEY+… (normally from ${ENV}) */
  privateKey?: string;
  /** file holding the private key, relative to the config file */
  privateKeyFile?: string;
  /** time between checkpoints. Default 60000. */
  checkpointIntervalMs: number;
}

export interface Config {
  server: { host: string; port: number; bodyLimitBytes: number; shutdownTimeoutMs: number; publicUrl?: string; rateLimitPerKey: { max: number; perSeconds: number } };
  redis: {
    url?: string;
    prefix: string;
    dataDir: string;
    requirePersistence: boolean;
    /** Redis Sentinel: the sentinels to ask for the master of group `name` (used when `url` is absent). */
    sentinels?: { host: string; port: number }[];
    /** Sentinel master group name. Default `mymaster`. */
    name?: string;
    /** Password of the data nodes (Sentinel or Cluster; a `url` carries its own). */
    password?: string;
    /** Password of the sentinels, when they require one. */
    sentinelPassword?: string;
    /** TLS to the data nodes and sentinels (ioredis `tls`; ca/cert/key are file paths). */
    tls?: { ca?: string; cert?: string; key?: string; servername?: string; rejectUnauthorized?: boolean };
    /** Redis Cluster seed nodes. */
    cluster?: { host: string; port: number }[];
    /** Ingest waits until this many replicas have its write (WAIT) before answering 202. Default 0. */
    waitReplicas: number;
    /** How long ingest waits for the replicas; not reached in time: 503. Default 1000 ms. */
    waitTimeoutMs: number;
  };
  log: { level: string };
  keys: KeyConfig[];
  sources: SourceConfig[];
  platforms: PlatformConfig[];
  policeOnly: string[];
  routes: RouteConfig[];
  sandbox: { enabled: boolean; [k: string]: unknown };
  sla: SlaConfig;
  retention: { alertsDays: number; sweepEveryMs: number };
  repeat: { enabled: boolean; window: string; secret?: string; crossSource?: boolean };
  audit: { dir: string; archive: boolean; archiveIn: 'workers' | 'archiver'; segmentMaxBytes: number; streamLimit: number; bodyRetentionDays?: number; encryption?: { currentKey: string; keys: Record<string, string> }; signing?: AuditSigningConfig };
  engine: { lockDurationMs: number; stalledIntervalMs: number; pollMs?: number; slaSweepMs: number; ingestClaimIdleMs: number; ingestWriteThrough: boolean };
  /** Inbound standards shared by all sources (category tables, nesting limit). */
  inbound?: { categories?: CategoryTables; maxDepth?: number; /** Largest CAP/EIDO body (default 2 MiB). */ bodyLimitBytes?: number };
  /** The installation's category table: code → display name (Chinese, or {zh, en}). */
  categories?: Record<string, string | { zh: string; en?: string }>;
  /** Directory of the config file; relative paths in the config resolve against it. */
  baseDir: string;
}
