import type { ValidateFunction } from 'ajv';
import type { Dispatcher } from 'undici';
import { loadAdapter } from '../../adapters/index.js';
import type { Adapter } from '../../adapters/sdk.js';
import { ConfigError } from '../config/load.js';
import type { Config, PlatformConfig } from '../config/types.js';
import { compileOnce } from '../schemas.js';
import { DEFAULT_CIRCUIT, type CircuitOptions } from './circuit.js';
import { createAgent, DEFAULT_TIMEOUTS, PlatformClient, type OutboundAuth, type Timeouts, type TlsFiles } from './http.js';
import { DEFAULT_RETRY, type RetryPolicy } from './policy.js';

/** Engine settings of one platform, from its config entry with defaults applied. */
export interface PlatformSettings {
  /** Parallel attempts per worker process. Default 4. */
  concurrency: number;
  /** At most `max` attempts per `durationMs` window, shared by all workers (src/delivery/work.ts). */
  rateLimit?: { max: number; durationMs: number };
  timeouts: Timeouts;
  retry: RetryPolicy;
  auth: OutboundAuth;
  tls?: TlsFiles;
  circuitBreaker: CircuitOptions;
  /** Hours from receipt to the intervention deadline (办理时限) given to the platform. Default 12. */
  interveneHours: number;
}

export interface Platform {
  id: string;
  cfg: PlatformConfig;
  adapter: Adapter<any>;
  settings: PlatformSettings;
  validateOutput: ValidateFunction;
  client: PlatformClient;
}

export function platformSettings(p: PlatformConfig): PlatformSettings {
  const x = p as PlatformConfig & Partial<Record<string, any>>;
  return {
    concurrency: x.concurrency ?? 4,
    rateLimit: x.rateLimit ? { max: x.rateLimit.max, durationMs: x.rateLimit.durationMs ?? 1000 } : undefined,
    timeouts: { ...DEFAULT_TIMEOUTS, ...(x.timeouts ?? {}) },
    retry: { ...DEFAULT_RETRY, ...(x.retry ?? {}) },
    auth: x.auth ?? { type: 'none' },
    tls: x.tls,
    circuitBreaker: { ...DEFAULT_CIRCUIT, ...(x.circuitBreaker ?? {}) },
    interveneHours: x.interveneHours ?? 12,
  };
}

/**
 * Loads every platform's adapter and checks its options against the adapter's configSchema, at
 * boot, so a misconfigured platform stops fenliu with the offending key path instead of failing
 * deliveries later.
 */
export async function loadPlatforms(cfg: Config, sharedAgent?: Dispatcher): Promise<Map<string, Platform>> {
  const out = new Map<string, Platform>();
  const problems: { path: string; message: string }[] = [];
  const agent = sharedAgent ?? createAgent(DEFAULT_TIMEOUTS);
  for (const [i, p] of cfg.platforms.entries()) {
    let adapter: Adapter<any>;
    try {
      adapter = await loadAdapter(p.adapter, cfg.baseDir);
    } catch (err) {
      problems.push({ path: `/platforms/${i}/adapter`, message: (err as Error).message });
      continue;
    }
    const checkOptions = compileOnce(adapter.configSchema, { useDefaults: true });
    if (!checkOptions(p.options)) {
      for (const e of checkOptions.errors ?? []) {
        const extra = e.keyword === 'required' ? `/${(e.params as { missingProperty: string }).missingProperty}` : '';
        problems.push({ path: `/platforms/${i}/options${e.instancePath}${extra}`, message: `${e.message ?? 'invalid'} (adapter ${adapter.id})` });
      }
      continue;
    }
    const settings = platformSettings(p);
    const ownAgent = settings.tls || (p as { timeouts?: { connectMs?: number } }).timeouts?.connectMs !== undefined;
    const dispatcher = ownAgent ? createAgent(settings.timeouts, settings.tls, cfg.baseDir) : agent;
    const outputSchema = adapter.outputSchemaFor ? adapter.outputSchemaFor(p.options) : adapter.outputSchema;
    out.set(p.id, {
      id: p.id,
      cfg: p,
      adapter,
      settings,
      validateOutput: compileOnce(outputSchema),
      client: new PlatformClient(p.id, p.url, dispatcher, settings.auth, settings.timeouts),
    });
  }
  if (problems.length) throw new ConfigError(`config: ${problems.map((p) => `${p.path} ${p.message}`).join('; ')}`, problems);
  return out;
}
