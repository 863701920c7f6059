import type { ExtensionFactory } from './extension-types.js';
import { servesApi, type Role } from './roles.js';
import { engineExtension } from './delivery/extension.js';
import { dispatcherExtension } from './ingest/extension.js';
import { auditExtension } from './audit/extension.js';
import { startSandbox, type SandboxKind } from './sandbox/index.js';
import { startAutopilot } from './sandbox/autopilot.js';
import { consoleExtension } from './console/extension.js';
import { metricsExtension } from './metrics/extension.js';

export type { Extension, ExtensionFactory } from './extension-types.js';

/** Simulated platforms for the demo (`sandbox.enabled`); only the process that serves the API starts them. */
const sandboxExtension: ExtensionFactory = async (rt, role) => {
  const sb = rt.cfg.sandbox as {
    enabled: boolean;
    host?: string;
    platforms?: { id: string; kind: SandboxKind; port?: number }[];
    autopilot?: { acceptAfterMs?: number; resolveAfterMs?: number };
  };
  if (!sb.enabled || !servesApi(role) || !sb.platforms?.length) return undefined;
  const sandbox = await startSandbox({ platforms: sb.platforms, host: sb.host });
  rt.log.info({ platforms: sb.platforms.map((p) => `${p.id}@${sandbox.platforms.get(p.id)?.url}`) }, 'sandbox platforms started');
  let stopAutopilot: (() => void) | undefined;
  if (sb.autopilot) {
    const fenliuUrl = rt.cfg.server.publicUrl ?? `http://${rt.cfg.server.host}:${rt.cfg.server.port}`;
    const secrets = Object.fromEntries(rt.cfg.platforms.map((p) => [p.id, (p as { callback?: { secret?: string } }).callback?.secret]));
    stopAutopilot = startAutopilot(sandbox, Object.fromEntries(sb.platforms.map((p) => [p.id, p.kind])), { fenliuUrl, secrets, ...sb.autopilot, onError: (err) => rt.log.warn({ err: { message: err.message } }, 'sandbox callback failed') });
  }
  return {
    name: 'sandbox',
    close: async () => {
      stopAutopilot?.();
      await sandbox.close();
    },
  };
};

/** In start order; closed in reverse (the dispatcher before the engine: its last batch's jobs are added before the queues close). */
export const extensions: ExtensionFactory[] = [metricsExtension, sandboxExtension, engineExtension, dispatcherExtension, auditExtension, consoleExtension];
