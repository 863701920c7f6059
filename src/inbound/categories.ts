/**
 * Category tables for inbound standards: the sender's incident types and event codes → fenliu
 * categories. The defaults below are a starting point; config overrides them per installation
 * (`inbound.categories`) and per source (`sources[].inbound.categories`). A code that is in no
 * table is refused with a 422 pointing at it: guessing a category could divert a police matter.
 */
import type { CategoryTables, Config, SourceConfig } from '../config/types.js';

/**
 * EIDO incident types. Keys are `incidentTypeInternalCode` values or
 * `incidentTypeCommonRegistryText` values (IANA "Emergency Incident Type" style, `/` separated);
 * a parent key (`Police/Disturbance`) also covers its children unless they have their own entry.
 */
export const DEFAULT_EIDO_CATEGORIES: Record<string, string> = {
  Fire: 'fire',
  'Police/Assault': 'violence.assault',
  'Police/Domestic Violence': 'violence.domestic',
  'Police/Robbery': 'violence.robbery',
  'Police/Burglary': 'theft.in-progress',
  'Police/Theft': 'theft.in-progress',
  'Police/Missing Person': 'person.missing',
  'Traffic/Injury': 'traffic.injury',
  'Police/Disturbance': 'dispute.neighbor',
  'Police/Disturbance/Noise': 'nuisance.noise',
  'Police/Disturbance/Family': 'dispute.family',
  'Police/Civil': 'dispute.debt',
  'Police/Civil/Debt': 'dispute.debt',
  'Police/Civil/Wages': 'labor.wage-arrears',
  'Police/Civil/Consumer': 'consumer.refund',
  'Police/Civil/Property Management': 'dispute.property-management',
  'Public Service/Lockout': 'assist.unlock',
  'Public Service/Water Leak': 'utility.water-leak',
  'Public Service/Food Safety': 'consumer.food-safety',
};

/**
 * CAP events. Keys are `valueName:value` of an `<eventCode>` (tried first, in document order) or
 * the `<event>` text (exact, then case-insensitive). An eventCode with valueName `fenliu` carries
 * the category itself and needs no table.
 */
export const DEFAULT_CAP_CATEGORIES: Record<string, string> = {
  'SAME:CAE': 'person.missing',
  'SAME:FRW': 'fire',
  'SAME:CDW': 'public-security.civil-danger',
  'SAME:LEW': 'public-security.law-enforcement-warning',
  'Child Abduction': 'person.missing',
  Fire: 'fire',
  'Noise Complaint': 'nuisance.noise',
  'Neighbour Dispute': 'dispute.neighbor',
  'Neighbor Dispute': 'dispute.neighbor',
  'Consumer Dispute': 'consumer.refund',
  'Debt Dispute': 'dispute.debt',
  'Unpaid Wages': 'labor.wage-arrears',
  Lockout: 'assist.unlock',
  'Water Leak': 'utility.water-leak',
  债务纠纷: 'dispute.debt',
  欠薪: 'labor.wage-arrears',
  消费纠纷: 'consumer.refund',
  邻里纠纷: 'dispute.neighbor',
  家庭纠纷: 'dispute.family',
  物业纠纷: 'dispute.property-management',
  开锁: 'assist.unlock',
  漏水: 'utility.water-leak',
  噪声扰民: 'nuisance.noise',
  食品安全: 'consumer.food-safety',
};

/** The effective tables for one source: code defaults < `inbound.categories` < the source's own. */
export function categoryTables(cfg: Config, source: SourceConfig | undefined): Required<CategoryTables> {
  const global = cfg.inbound?.categories ?? {};
  const own = source?.inbound?.categories ?? {};
  return {
    eido: { ...DEFAULT_EIDO_CATEGORIES, ...global.eido, ...own.eido },
    cap: { ...DEFAULT_CAP_CATEGORIES, ...global.cap, ...own.cap },
  };
}

function own(table: Record<string, string>, key: string): string | undefined {
  return Object.prototype.hasOwnProperty.call(table, key) ? table[key] : undefined;
}

/** EIDO lookup: internal code, then registry text, then its parents (`A/B/C` → `A/B` → `A`). */
export function eidoCategory(table: Record<string, string>, internalCode: string | undefined, registryText: string | undefined): string | undefined {
  if (internalCode !== undefined) {
    const hit = own(table, internalCode);
    if (hit) return hit;
  }
  if (registryText === undefined) return undefined;
  const parts = registryText.split('/').map((p) => p.trim());
  for (let n = parts.length; n > 0; n--) {
    const hit = own(table, parts.slice(0, n).join('/'));
    if (hit) return hit;
  }
  return undefined;
}

/** CAP lookup: eventCodes in order (`valueName:value`), then the event text, exact then case-insensitive. */
export function capCategory(table: Record<string, string>, eventCodes: { valueName?: string; value?: string }[], event: string | undefined): string | undefined {
  for (const c of eventCodes) {
    if (!c.valueName || !c.value) continue;
    if (c.valueName.toLowerCase() === 'fenliu') return c.value;
    const hit = own(table, `${c.valueName}:${c.value}`);
    if (hit) return hit;
  }
  if (event === undefined) return undefined;
  const exact = own(table, event);
  if (exact) return exact;
  const lower = event.toLowerCase();
  for (const [k, v] of Object.entries(table)) if (k.toLowerCase() === lower) return v;
  return undefined;
}
