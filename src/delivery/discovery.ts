/**
 * Runs an adapter's discovery check (Open311: Service Discovery and GET services) against a
 * platform: at start, so a configured service code the platform does not offer is a warning in
 * the log before the first refused request, and from `fenliu adapter test --url`.
 */
import type { Adapter, DiscoveryAnswer, DiscoveryReport, OutboundRequest } from '../../adapters/sdk.js';
import type { Platform } from './platforms.js';
import { prepare, type PlatformClient } from './http.js';

/** How long discovery may hold up start, per platform. */
export const DISCOVERY_TIMEOUT_MS = 5_000;

export interface DiscoveryTarget {
  id: string;
  url: string;
  options: Record<string, unknown>;
  adapter: Adapter<any>;
  client: PlatformClient;
}

/** Sends the adapter's discovery requests one after another and lets it read the answers. */
export async function discover(t: DiscoveryTarget, timeoutMs = DISCOVERY_TIMEOUT_MS): Promise<DiscoveryReport | undefined> {
  const hook = t.adapter.discovery;
  if (!hook) return undefined;
  const ctx = { platform: { id: t.id, config: t.options, url: t.url } };
  const answers: DiscoveryAnswer[] = [];
  await ask(t, hook.requests(ctx), answers, timeoutMs);
  if (hook.followUp) await ask(t, hook.followUp([...answers], ctx), answers, timeoutMs);
  return hook.read(answers, ctx);
}

/** Sends requests one after another, appending each answer (or why there is none) to `answers`. */
async function ask(t: DiscoveryTarget, requests: OutboundRequest[], answers: DiscoveryAnswer[], timeoutMs: number): Promise<void> {
  for (const request of requests) {
    let timer: NodeJS.Timeout | undefined;
    try {
      const prepared = prepare(t.url, request);
      // The platform's credentials are for the platform's origin: a discovery document elsewhere
      // (an absolute Open311 discoveryUrl on another host) is fetched without them.
      const wire = new URL(prepared.url).origin === new URL(t.url).origin ? await t.client.authorise(prepared, `discovery-${t.id}`) : prepared;
      // Auth yes; the delivery headers describe no delivery here.
      delete wire.headers['idempotency-key'];
      delete wire.headers['x-fenliu-delivery-id'];
      // The send keeps its own bounds; start does not wait for them.
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      });
      const res = await Promise.race([t.client.send(wire), late]);
      answers.push({ request, response: res.response });
    } catch (err) {
      answers.push({ request, error: (err as Error).message });
    } finally {
      clearTimeout(timer);
    }
  }
}

interface Log {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

/**
 * Discovery for every platform whose adapter has it, in parallel. Warnings go to the log; the
 * defaults the platform's description decides (Open311 `format`) fill options the config left
 * unset, before the first delivery is translated.
 */
export async function discoverPlatforms(platforms: Map<string, Platform>, log: Log): Promise<void> {
  await Promise.all(
    [...platforms.values()]
      .filter((p) => p.adapter.discovery && !p.cfg.feedbackFor)
      .map(async (p) => {
        let report: DiscoveryReport | undefined;
        try {
          report = await discover({ id: p.id, url: p.cfg.url, options: p.cfg.options, adapter: p.adapter, client: p.client });
        } catch (err) {
          log.warn({ platformId: p.id, err: { message: (err as Error).message } }, 'platform discovery failed');
          return;
        }
        if (!report) return;
        for (const w of report.warnings) log.warn({ platformId: p.id }, `platform discovery: ${w}`);
        for (const i of report.info) log.info({ platformId: p.id }, `platform discovery: ${i}`);
        for (const [k, v] of Object.entries(report.defaults ?? {})) if (p.cfg.options[k] === undefined) p.cfg.options[k] = v;
      }),
  );
}
