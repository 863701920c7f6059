import { EventEmitter } from 'node:events';

/**
 * In-process facts for observers (metrics, live console). Emitting is fire-and-forget: an
 * observer can never slow down or break ingest or delivery.
 */
export interface FenliuEvents {
  'alert.accepted': { sourceId: string; category: string; regionCode: string; deliveries: number; duplicate: boolean };
  'alert.refused': { sourceId?: string; code: string };
  'delivery.attempt': { platformId: string; outcome: 'delivered' | 'retry' | 'reject'; errorClass?: string; durationMs: number };
  'delivery.delivered': { platformId: string; latencyMs: number };
  'delivery.failed': { platformId: string; errorClass: string };
  'delivery.state': { platformId: string; deliveryId: string; from?: string; to: string; source: string };
  'circuit.change': { platformId: string; state: 'closed' | 'open' | 'half-open' };
  'sla.expired': { platformId: string; kind: string; deliveryId: string };
  /** Ingest log entries turned into deliveries, audit events and jobs (src/ingest/dispatcher.ts). */
  'ingest.materialised': { entries: number; alerts: number; alertIds: string[] };
  /** A job was put in a platform's work set by this process (src/delivery/queues.ts): the engine here takes it at once. */
  'work.enqueued': { platformId: string };
  /** A batch of audit events made durable in the segment files (src/audit/archiver.ts), with the time each phase took. */
  'audit.archived': { events: number; phases: Record<ArchivePhase, { seconds: number; cpuSeconds: number }> };
}

/**
 * The phases of an archiver batch: reading the stream, encoding and hashing the lines, appending
 * them (fsync), the Merkle tiles, the index, and trimming the stream.
 */
export const ARCHIVE_PHASES = ['read', 'encode', 'append', 'merkle', 'index', 'trim'] as const;
export type ArchivePhase = (typeof ARCHIVE_PHASES)[number];

class Bus extends EventEmitter {
  emitEvent<K extends keyof FenliuEvents>(name: K, payload: FenliuEvents[K]): void {
    if (this.listenerCount(name) === 0) return;
    try {
      this.emit(name, payload);
    } catch {
      // Observers must not break the caller.
    }
  }
  onEvent<K extends keyof FenliuEvents>(name: K, fn: (payload: FenliuEvents[K]) => void): () => void {
    this.on(name, fn);
    return () => this.off(name, fn);
  }
}

export const bus = new Bus();
bus.setMaxListeners(50);
