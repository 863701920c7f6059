import t from 'tap';
import type { Alert } from '../adapters/sdk.js';
import type { RouteConfig } from '../src/config/types.js';
import { categoryMatches, routeAlert } from '../src/routing/route.js';

const rule = (id: string, match: RouteConfig['match'], targets: string[], extra: Partial<RouteConfig> = {}): RouteConfig => ({
  id,
  default: false,
  match,
  targets,
  fallback: [],
  ...extra,
});

const alert = (category: string, regionCode = '420204', priority?: 'normal' | 'urgent'): Alert => ({
  source: { system: 's', alertId: 'a' },
  reportedAt: '2026-11-29T09:00:00+08:00',
  category,
  summary: 'x',
  location: { address: 'x', regionCode },
  ...(priority ? { priority } : {}),
});

const POLICE = ['violence.*', 'theft.in-progress', 'person.missing', 'fire'];

/** Route and return the winning rule id, or the refusal code. */
const decide = (routes: RouteConfig[], a: Alert, police = POLICE) => {
  const r = routeAlert(a, routes, police);
  return r.ok ? r.decision.ruleId : r.code;
};

t.test('category patterns', async (t) => {
  t.ok(categoryMatches('dispute.debt', 'dispute.debt'));
  t.notOk(categoryMatches('dispute.debt', 'dispute.debt-collection'));
  t.notOk(categoryMatches('dispute.debt', 'dispute'));
  t.ok(categoryMatches('dispute.*', 'dispute.debt'));
  t.ok(categoryMatches('dispute.*', 'dispute.debt.bank'));
  t.ok(categoryMatches('dispute.*', 'dispute'), 'a prefix covers the code itself');
  t.notOk(categoryMatches('dispute.*', 'disputes.debt'), 'prefix matches whole segments only');
  t.ok(categoryMatches('*', 'anything.at.all'));
});

t.test('exact category beats a prefix, regardless of order', async (t) => {
  const routes = [rule('prefix', { category: ['dispute.*'] }, ['grid']), rule('exact', { category: ['dispute.debt'] }, ['12345'])];
  t.equal(decide(routes, alert('dispute.debt')), 'exact');
  t.equal(decide([...routes].reverse(), alert('dispute.debt')), 'exact');
  t.equal(decide(routes, alert('dispute.neighbor')), 'prefix');
});

t.test('a longer prefix beats a shorter one, which beats *', async (t) => {
  const routes = [rule('any', { category: ['*'] }, ['a']), rule('short', { category: ['consumer.*'] }, ['b']), rule('long', { category: ['consumer.food.*'] }, ['c'])];
  t.equal(decide(routes, alert('consumer.food.spoiled')), 'long');
  t.equal(decide(routes, alert('consumer.refund')), 'short');
  t.equal(decide(routes, alert('utility.water-leak')), 'any');
});

t.test('with equal category specificity the more specific region wins', async (t) => {
  const routes = [
    rule('province', { category: ['dispute.*'], region: ['42'] }, ['p']),
    rule('city', { category: ['dispute.*'], region: ['4202'] }, ['c']),
    rule('county', { category: ['dispute.*'], region: ['420204'] }, ['k']),
    rule('street', { category: ['dispute.*'], region: ['420204003'] }, ['s']),
  ];
  t.equal(decide(routes, alert('dispute.debt', '420204003001')), 'street');
  t.equal(decide(routes, alert('dispute.debt', '420204001')), 'county');
  t.equal(decide(routes, alert('dispute.debt', '420202')), 'city');
  t.equal(decide(routes, alert('dispute.debt', '421100')), 'province');
  t.equal(decide(routes, alert('dispute.debt', '110101')), 'FENLIU_ERR_NO_ROUTE', 'outside every region, no default');
});

t.test('category specificity ranks before region', async (t) => {
  const routes = [rule('region-prefix', { category: ['dispute.*'], region: ['420204003'] }, ['a']), rule('exact-anywhere', { category: ['dispute.debt'] }, ['b'])];
  t.equal(decide(routes, alert('dispute.debt', '420204003001')), 'exact-anywhere');
});

t.test('a region-only rule: no category condition is least specific', async (t) => {
  const routes = [rule('huangshi', { region: ['4202'] }, ['a']), rule('any-category', { category: ['*'] }, ['b'])];
  t.equal(decide(routes, alert('dispute.debt', '420204')), 'any-category');
  t.equal(decide([routes[0]], alert('dispute.debt', '420204')), 'huangshi');
  t.equal(decide([routes[0]], alert('dispute.debt', '420100')), 'FENLIU_ERR_NO_ROUTE');
});

t.test('priority condition: matches only that priority, and breaks ties', async (t) => {
  const routes = [rule('all', { category: ['utility.*'] }, ['a']), rule('urgent', { category: ['utility.*'], priority: 'urgent' }, ['b'])];
  t.equal(decide(routes, alert('utility.water-leak', '420204', 'urgent')), 'urgent');
  t.equal(decide(routes, alert('utility.water-leak', '420204', 'normal')), 'all');
  t.equal(decide(routes, alert('utility.water-leak', '420204')), 'all', 'absent priority counts as normal');
  const normalOnly = [rule('normal', { category: ['utility.*'], priority: 'normal' }, ['a'])];
  t.equal(decide(normalOnly, alert('utility.water-leak')), 'normal');
  t.equal(decide(normalOnly, alert('utility.water-leak', '420204', 'urgent')), 'FENLIU_ERR_NO_ROUTE');
});

t.test('ties are broken by order', async (t) => {
  const routes = [rule('first', { category: ['consumer.*'], region: ['4202'] }, ['a']), rule('second', { category: ['consumer.*'], region: ['4202'] }, ['b'])];
  t.equal(decide(routes, alert('consumer.refund')), 'first');
  t.equal(decide([...routes].reverse(), alert('consumer.refund')), 'second');
});

t.test('the default route applies only when nothing else matches, wherever it is listed', async (t) => {
  const routes = [rule('default', {}, ['12345'], { default: true }), rule('disputes', { category: ['dispute.*'] }, ['grid'])];
  t.equal(decide(routes, alert('dispute.debt')), 'disputes');
  t.equal(decide(routes, alert('nuisance.noise')), 'default');
  t.equal(decide(routes.slice(1), alert('nuisance.noise')), 'FENLIU_ERR_NO_ROUTE');
  t.equal(decide([], alert('nuisance.noise')), 'FENLIU_ERR_NO_ROUTE');
});

t.test('the decision names the rule, its targets (fan-out, de-duplicated) and fallback', async (t) => {
  const r = routeAlert(alert('consumer.refund'), [rule('fan', { category: ['consumer.*'] }, ['grid', '12345', 'grid'], { fallback: ['cityops'] })], POLICE);
  t.same(r, { ok: true, decision: { ruleId: 'fan', targets: ['grid', '12345'], fallback: ['cityops'] } });
});

t.test('police-only categories are never diverted, even with a matching route or a default', async (t) => {
  const routes = [rule('everything', { category: ['*'] }, ['a']), rule('default', {}, ['b'], { default: true }), rule('violence', { category: ['violence.assault'] }, ['c'])];
  for (const c of ['violence.assault', 'violence', 'theft.in-progress', 'person.missing', 'fire']) {
    const r = routeAlert(alert(c), routes, POLICE);
    t.same(r.ok ? r.decision.ruleId : r.code, 'FENLIU_ERR_POLICE_ONLY', c);
    if (!r.ok && r.code === 'FENLIU_ERR_POLICE_ONLY') t.ok(POLICE.includes(r.pattern), `${c} names its pattern`);
  }
  t.equal(decide(routes, alert('fire.residential')), 'FENLIU_ERR_POLICE_ONLY', 'an exact police-only code also keeps its sub-codes');
  t.equal(decide(routes, alert('theft.later-reported')), 'everything', 'only the listed theft code is police-only');
  t.equal(decide(routes, alert('firewood.delivery')), 'everything', 'segments, not string prefixes');
  t.equal(decide(routes, alert('violence.assault'), []), 'violence', 'with an empty list nothing is police-only');
});

t.test('routing is pure: same input, same answer; inputs untouched', async (t) => {
  const routes = [rule('a', { category: ['dispute.*'] }, ['x', 'y'])];
  const snapshot = JSON.stringify(routes);
  const a = alert('dispute.debt');
  t.same(routeAlert(a, routes, POLICE), routeAlert(a, routes, POLICE));
  t.equal(JSON.stringify(routes), snapshot);
});
