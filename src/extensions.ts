import type { FastifyInstance } from 'fastify';
import type { Runtime } from './runtime.js';
import type { Role } from './server.js';

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

/** In start order; closed in reverse. */
export const extensions: ExtensionFactory[] = [];
