/** Shapes of the fenliu API the console reads. */
import type { components, paths } from '../../src/generated/api.js';

// The API's own shapes, from the OpenAPI document (openapi-typescript output): one definition.
export type Flow = paths['/v1/flow']['get']['responses'][200]['content']['application/json'];
export type FlowPlatform = Flow['platforms'][number];
export type PlatformStatus = components['schemas']['PlatformStatus'];
export type Delivery = components['schemas']['Delivery'] & { failedAt?: string };

export interface Attempt {
  n: number;
  /** Follow-ups only: cancel, update, urge, redeliver. */
  kind?: string;
  at: string;
  durationMs: number;
  outcome: string;
  status?: number;
  errorClass?: string;
  reason?: string;
  nextAttemptAt?: string;
}

export interface HistoryEntry {
  at: string;
  from?: string;
  to: string;
  source: string;
  note?: string;
}

export interface DeliveryDetail extends Delivery {
  attemptLog: Attempt[];
  history: HistoryEntry[];
}

export interface Person {
  role?: string;
  name?: string;
  phone?: string;
  idNumber?: string;
  confidential?: boolean;
}

export interface AlertBody {
  source: { system: string; alertId: string; desk?: string };
  reportedAt: string;
  category: string;
  summary: string;
  description?: string;
  location: { address?: string; regionCode: string; gridCode?: string; lat?: number; lon?: number };
  caller?: Person;
  parties?: Person[];
  police?: { unit?: string; officerId?: string; attendedAt?: string; sceneStatus?: string; assessment?: string };
  priority?: string;
}

export interface AlertView {
  id: string;
  status: string;
  receivedAt: string;
  sourceId: string;
  route: { ruleId?: string; targets: string[] };
  alert: AlertBody;
  deliveries: Delivery[];
}

export interface SlaItem {
  deliveryId: string;
  alertId: string;
  platformId: string;
  kind: string;
  dueAt: string;
  overdue: boolean;
  state: string;
}

export interface Stats {
  from: string;
  to: string;
  received: number;
  diverted: number;
  refusedPoliceOnly: number;
  diversionRate: number | null;
  delivered: number;
  completed: number;
  completionRate: number | null;
  interventionCompliance: number | null;
  medianTimeToAcceptMs: number | null;
  medianTimeToResolveMs: number | null;
  repeats: number;
  repeatRate: number | null;
  failures: number;
  byPlatform: { platformId: string; delivered: number; completed: number; failures: number; completionRate: number | null; interventionCompliance: number | null; medianTimeToAcceptMs: number | null }[];
  refusedNoRoute?: number;
  /** received, diverted and repeats count alerts; completed and completionRate count deliveries. */
  byRegion: { regionCode: string; received: number; diverted: number; repeats?: number; completed: number; completionRate?: number | null }[];
}
