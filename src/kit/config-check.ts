/**
 * `fenliu config check FILE`, and the same checks `fenliu serve` runs before it starts anything:
 * the schema and cross-references (loadConfig), then each platform's adapter and its options
 * (loadPlatforms), so a misspelt adapter fails here with /platforms/N/adapter, not after Redis
 * and the sandbox are up.
 */
import { ConfigError, loadConfig } from '../config/load.js';
import type { Config, PlatformConfig } from '../config/types.js';
import { loadPlatforms } from '../delivery/platforms.js';

/**
 * Where a platform sits in the file the user wrote: /platforms/N, or /sources/N/feedback for the
 * feedback platform fenliu derives from a source (it has no entry of its own under platforms).
 */
export function platformPointer(cfg: Config, p: PlatformConfig): string {
  if (p.feedbackFor) return `/sources/${cfg.sources.findIndex((s) => s.id === p.feedbackFor)}/feedback`;
  return `/platforms/${cfg.platforms.indexOf(p)}`;
}

/**
 * loadPlatforms over `list` (a subset of cfg.platforms, or all of them), with its problems pointing
 * into the config file rather than into `list`.
 */
export async function checkPlatforms(cfg: Config, list: PlatformConfig[] = cfg.platforms): ReturnType<typeof loadPlatforms> {
  try {
    return await loadPlatforms({ ...cfg, platforms: list });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const problems = err.problems.map((p) => ({ ...p, path: p.path.replace(/^\/platforms\/(\d+)(?=\/|$)/, (_m, i: string) => platformPointer(cfg, list[Number(i)])) }));
    throw new ConfigError(`config: ${problems.map((p) => `${p.path} ${p.message}`).join('; ')}`, problems);
  }
}

/** Loads a config and checks every platform's adapter; throws ConfigError naming each bad key. */
export async function loadCheckedConfig(file: string): Promise<Config> {
  const cfg = await loadConfig(file);
  await checkPlatforms(cfg);
  return cfg;
}

export async function configCheckCommand(file: string): Promise<number> {
  const cfg = await loadCheckedConfig(file);
  process.stdout.write(`${file}: ok (${cfg.sources.length} sources, ${cfg.platforms.length} platforms, ${cfg.routes.length} routes)\n`);
  return 0;
}
