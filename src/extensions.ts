import type { FastifyInstance } from 'fastify';
import type { Runtime } from './runtime.js';
import type { Role } from './server.js';
import { engineExtension } from './delivery/extension.js';
import { auditExtension } from './audit/extension.js';
import { startSandbox, type SandboxKind } from './sandbox/index.js';
import { consoleExtension } from './console/extension.js';
import { metricsExtension } from './metrics/extension.js';

/**
 * A part of fenliu that starts with the process: the delivery engine, the audit archiver, the
 * sandbox platforms. Each contributes routes, readiness checks and a close step.
 */
export interface Extension {
  name: string;
  routes?: ((app: FastifyInstance) => Promise<void>)[];
  readiness?: () => Promise<Record<string, unknown>>;
  close?: () => Promise<void>;
}

export type ExtensionFactory = (rt: Runtime, role: Role) => Promise<Extension | undefined>;

/** Simulated platforms for the demo (`sandbox.enabled`); only the process that serves the API starts them. */
const sandboxExtension: ExtensionFactory = async (rt, role) => {
  const sb = rt.cfg.sandbox as { enabled: boolean; host?: string; platforms?: { id: string; kind: SandboxKind; port?: number }[] };
  if (!sb.enabled || role === 'worker' || !sb.platforms?.length) return undefined;
  const sandbox = await startSandbox({ platforms: sb.platforms, host: sb.host });
  rt.log.info({ platforms: sb.platforms.map((p) => `${p.id}@${sandbox.platforms.get(p.id)?.url}`) }, 'sandbox platforms started');
  return { name: 'sandbox', close: () => sandbox.close() };
};

/** In start order; closed in reverse. */
export const extensions: ExtensionFactory[] = [metricsExtension, sandboxExtension, engineExtension, auditExtension, consoleExtension];
