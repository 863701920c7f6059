import type { FastifyInstance } from 'fastify';
import type { Runtime } from './runtime.js';
import type { Role } from './roles.js';

/**
 * A part of fenliu that starts with the process: the delivery engine, the audit archiver, the
 * sandbox platforms. Each contributes routes, readiness checks and a close step. (Apart from
 * src/extensions.ts, which lists them, so that no extension imports the list back.)
 */
export interface Extension {
  name: string;
  routes?: ((app: FastifyInstance) => Promise<void>)[];
  readiness?: () => Promise<Record<string, unknown>>;
  /**
   * Stops the part. `deadline` (epoch ms) is when the process's stop must be done with its
   * extensions (`server.shutdownTimeoutMs` after it began, less a margin for the connections):
   * a part that waits for work in hand waits until then at most.
   */
  close?: (deadline: number) => Promise<void>;
}

export type ExtensionFactory = (rt: Runtime, role: Role) => Promise<Extension | undefined>;
