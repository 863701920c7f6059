import type { Alert } from '../../adapters/sdk.js';
import type { RouteConfig } from '../config/types.js';

/** The routing decision stored on the alert. */
export interface RouteDecision {
  ruleId: string;
  targets: string[];
  fallback: string[];
}

export type RouteResult =
  | { ok: true; decision: RouteDecision }
  | { ok: false; code: 'FENLIU_ERR_POLICE_ONLY'; pattern: string }
  | { ok: false; code: 'FENLIU_ERR_NO_ROUTE' };

/** Does `category` match a pattern: exact, `prefix.*` (the prefix itself or anything below), or `*`. */
export function categoryMatches(pattern: string, category: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('.*')) {
    const prefix = pattern.slice(0, -2);
    return category === prefix || category.startsWith(`${prefix}.`);
  }
  return pattern === category;
}

/**
 * Police-only patterns err on the side of the police: an exact code also covers every code below
 * it (`fire` keeps `fire.residential` too), so a finer taxonomy can never divert such an alert.
 */
export function isPoliceOnly(pattern: string, category: string): boolean {
  return categoryMatches(pattern, category) || (!pattern.endsWith('.*') && category.startsWith(`${pattern}.`));
}

/**
 * How specific a category pattern is: an exact code beats any prefix, a longer prefix beats a
 * shorter one, and `*` or no category condition is least specific.
 */
function categorySpecificity(pattern: string): number {
  if (pattern === '*') return 1;
  if (pattern.endsWith('.*')) return 10 + pattern.split('.').length - 1;
  return 1000;
}

/**
 * Specificity of a matching rule, compared lexicographically: category first, then region
 * (digits of the matched prefix), then a priority condition. Returns undefined when the rule
 * does not match.
 */
function specificity(rule: RouteConfig, alert: Alert): [number, number, number] | undefined {
  const { category, region, priority } = rule.match;
  let cat = 0;
  if (category?.length) {
    const hits = category.filter((p) => categoryMatches(p, alert.category));
    if (!hits.length) return undefined;
    cat = Math.max(...hits.map(categorySpecificity));
  }
  let reg = 0;
  if (region?.length) {
    const hits = region.filter((r) => alert.location.regionCode.startsWith(r));
    if (!hits.length) return undefined;
    reg = Math.max(...hits.map((r) => r.length));
  }
  let pri = 0;
  if (priority) {
    if ((alert.priority ?? 'normal') !== priority) return undefined;
    pri = 1;
  }
  return [cat, reg, pri];
}

/**
 * Decides where an alert goes. Pure: same alert and rules, same answer.
 * Police-only categories are refused before any route is considered (非必要不分流).
 */
export function routeAlert(alert: Alert, routes: RouteConfig[], policeOnly: string[]): RouteResult {
  const police = policeOnly.find((p) => isPoliceOnly(p, alert.category));
  if (police) return { ok: false, code: 'FENLIU_ERR_POLICE_ONLY', pattern: police };
  let best: RouteConfig | undefined;
  let bestScore: [number, number, number] | undefined;
  for (const rule of routes) {
    if (rule.default) continue;
    const s = specificity(rule, alert);
    if (!s) continue;
    // Strictly greater only: ties keep the earlier rule.
    if (!bestScore || s[0] > bestScore[0] || (s[0] === bestScore[0] && (s[1] > bestScore[1] || (s[1] === bestScore[1] && s[2] > bestScore[2])))) {
      best = rule;
      bestScore = s;
    }
  }
  best ??= routes.find((r) => r.default);
  if (!best) return { ok: false, code: 'FENLIU_ERR_NO_ROUTE' };
  return { ok: true, decision: { ruleId: best.id, targets: [...new Set(best.targets)], fallback: best.fallback ?? [] } };
}
