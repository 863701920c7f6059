import type { Redis } from 'ioredis';
import type { Keys } from '../store/keys.js';
import { each, zMembersByScore } from '../store/fanout.js';
import { allDeliveryIds, getAlertRecord, getDeliveries, type AlertRecord, type DeliveryRecord } from '../store/records.js';

export interface StatsQuery {
  from: number;
  to: number;
  source?: string;
  platform?: string;
  /** Region code prefix (2, 4, 6, 9 or 12 digits). */
  region?: string;
}

interface Acc {
  delivered: number;
  completed: number;
  failures: number;
  interveneDue: number;
  interveneMet: number;
  toAccept: number[];
  toResolve: number[];
}

const acc = (): Acc => ({ delivered: 0, completed: 0, failures: 0, interveneDue: 0, interveneMet: 0, toAccept: [], toResolve: [] });

function median(xs: number[]): number | null {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : Math.round((s[m - 1] + s[m]) / 2);
}

const ratio = (a: number, b: number) => (b ? Math.round((a / b) * 10_000) / 10_000 : null);

function add(a: Acc, d: DeliveryRecord, now: number): void {
  if (d.deliveredAt) a.delivered++;
  if (d.state === 'resolved' || d.state === 'closed') a.completed++;
  if (d.state === 'failed') a.failures++;
  const created = Date.parse(d.createdAt);
  if (d.acceptedAt) a.toAccept.push(Date.parse(d.acceptedAt) - created);
  if (d.resolvedAt) a.toResolve.push(Date.parse(d.resolvedAt) - created);
  // Intervention compliance counts deliveries whose deadline has passed or that were signed for.
  if (d.interveneBy && (d.acceptedAt || Date.parse(d.interveneBy) <= now) && d.state !== 'cancelled') {
    a.interveneDue++;
    if (d.acceptedAt && Date.parse(d.acceptedAt) <= Date.parse(d.interveneBy)) a.interveneMet++;
  }
}

function summary(a: Acc) {
  return {
    delivered: a.delivered,
    completed: a.completed,
    failures: a.failures,
    completionRate: ratio(a.completed, a.delivered),
    interventionCompliance: ratio(a.interveneMet, a.interveneDue),
    medianTimeToAcceptMs: median(a.toAccept),
    medianTimeToResolveMs: median(a.toResolve),
  };
}

/**
 * The diversion figures of BRIEF.md over a period: 分流率, 办结率, 12-hour intervention compliance,
 * repeat rate. Computed from the records of the period (cost grows with the number of alerts in
 * it; fine for a dashboard's hours and days, a rollup is the next step for years).
 */
export async function computeStats(redis: Redis, k: Keys, q: StatsQuery, now = Date.now()) {
  const ids = await zMembersByScore(redis, each(k.bucketList, (b) => (q.source ? k.alertsBySource(b, q.source) : k.alerts(b))), q.from, q.to);
  const records: AlertRecord[] = [];
  for (let i = 0; i < ids.length; i += 500) {
    const raw = await Promise.all(ids.slice(i, i + 500).map((id) => redis.get(k.alert(id))));
    for (const r of raw) if (r) records.push(JSON.parse(r) as AlertRecord);
  }
  const inRegion = (code?: string) => !q.region || (code ?? '').startsWith(q.region);
  const total = acc();
  const byPlatform = new Map<string, Acc>();
  const byRegion = new Map<string, { received: number; diverted: number; repeats: number; acc: Acc }>();
  let diverted = 0;
  let repeats = 0;
  for (const rec of records) {
    const region = rec.alert.location.regionCode;
    if (!inRegion(region)) continue;
    const ds = (await getDeliveries(redis, k, await allDeliveryIds(redis, k, rec), [rec])).filter((d) => (d.kind ?? 'primary') === 'primary');
    if (q.platform) {
      // A repeat call counts for a platform when the case it repeats is (or was) there.
      const caseRec = rec.repeatOf ? await getAlertRecord(redis, k, rec.repeatOf) : undefined;
      const held = caseRec ? await getDeliveries(redis, k, await allDeliveryIds(redis, k, caseRec), [caseRec]) : ds;
      if (!held.some((d) => (d.kind ?? 'primary') === 'primary' && d.platformId === q.platform)) continue;
    }
    const r6 = region.slice(0, 6);
    const reg = byRegion.get(r6) ?? { received: 0, diverted: 0, repeats: 0, acc: acc() };
    byRegion.set(r6, reg);
    reg.received++;
    if (rec.repeatOf) {
      repeats++;
      reg.repeats++;
      continue;
    }
    diverted++;
    reg.diverted++;
    for (const d of ds) {
      if (q.platform && d.platformId !== q.platform) continue;
      add(total, d, now);
      add(reg.acc, d, now);
      const pa = byPlatform.get(d.platformId) ?? acc();
      byPlatform.set(d.platformId, pa);
      add(pa, d, now);
    }
  }
  const refusals = (await redis.zrangebyscore(k.refusals, q.from, q.to)).map((r) => JSON.parse(r) as { code: string; source?: string; region?: string });
  const refused = refusals.filter((r) => (!q.source || r.source === q.source) && inRegion(r.region) && !q.platform);
  const refusedPoliceOnly = refused.filter((r) => r.code === 'FENLIU_ERR_POLICE_ONLY').length;
  const refusedNoRoute = refused.length - refusedPoliceOnly;
  for (const r of refused) {
    const r6 = (r.region ?? '').slice(0, 6);
    const reg = byRegion.get(r6) ?? { received: 0, diverted: 0, repeats: 0, acc: acc() };
    byRegion.set(r6, reg);
    reg.received++;
  }
  const received = diverted + repeats + refused.length;
  return {
    from: new Date(q.from).toISOString(),
    to: new Date(q.to).toISOString(),
    received,
    diverted,
    refusedPoliceOnly,
    refusedNoRoute,
    diversionRate: ratio(diverted, received),
    ...summary(total),
    repeats,
    repeatRate: ratio(repeats, diverted + repeats),
    byPlatform: [...byPlatform.entries()].map(([platformId, a]) => ({ platformId, ...summary(a) })),
    byRegion: [...byRegion.entries()].map(([regionCode, r]) => ({ regionCode, received: r.received, diverted: r.diverted, repeats: r.repeats, completed: r.acc.completed, completionRate: ratio(r.acc.completed, r.acc.delivered) })),
  };
}
