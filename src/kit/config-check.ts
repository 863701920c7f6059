/**
 * `fenliu config check FILE`, and the same checks `fenliu serve` runs before it starts anything:
 * the schema and cross-references (loadConfig), then each platform's adapter and its options
 * (loadPlatforms), so a misspelt adapter fails here with /platforms/N/adapter, not after Redis
 * and the sandbox are up.
 */
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { loadPlatforms } from '../delivery/platforms.js';

/** Loads a config and checks every platform's adapter; throws ConfigError naming each bad key. */
export async function loadCheckedConfig(file: string): Promise<Config> {
  const cfg = await loadConfig(file);
  await loadPlatforms(cfg);
  return cfg;
}

export async function configCheckCommand(file: string): Promise<number> {
  const cfg = await loadCheckedConfig(file);
  process.stdout.write(`${file}: ok (${cfg.sources.length} sources, ${cfg.platforms.length} platforms, ${cfg.routes.length} routes)\n`);
  return 0;
}
