import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Alert, CaseEvent, TranslateContext } from '../../adapters/sdk.js';
import type { Config } from '../config/types.js';
import { prepare } from '../delivery/http.js';
import { minimise } from '../delivery/minimise.js';
import type { Platform } from '../delivery/platforms.js';
import { deadlines, slaFor } from '../lifecycle/service.js';
import { routeAlert } from '../routing/route.js';
import type { AuditEvent } from './events.js';
import { auditIndex, eventsOfAlert } from './event-index.js';
import { listSegments, openRecord, parseRecord, sha256Hex } from './format.js';

export interface ReplaySelection {
  from?: number;
  to?: number;
  source?: string;
  platform?: string;
}

/** One alert as the log tells it: what came in, where it went, what was sent. */
export interface LoggedAlert {
  alertId: string;
  receivedAt: string;
  sourceId?: string;
  alert?: Alert;
  routed?: { ruleId: string; targets: string[] };
  /** delivery id → what was sent the first time. */
  sent: Map<string, { platformId: string; at: string; adapter: string; adapterVersion: string; sha256: string; body?: string }>;
  /** delivery id → the case event a feedback or escalation carried. */
  events: Map<string, CaseEvent>;
}

export interface Difference {
  alertId: string;
  deliveryId?: string;
  platformId?: string;
  kind: 'route' | 'payload' | 'adapter-version' | 'platform-missing' | 'translate-error' | 'body-removed';
  detail: string;
}

/** Streams every record of the log in order, bodies restored. */
export async function* readLog(dir: string): AsyncGenerator<AuditEvent> {
  for (const seg of await listSegments(dir)) {
    const rl = createInterface({ input: createReadStream(join(dir, seg), 'utf8'), crlfDelay: Infinity });
    for await (const line of rl) {
      if (!line) continue;
      yield openRecord(parseRecord(line));
    }
  }
}

/**
 * The events of the alerts received in the selection's period (and from its source), in log
 * order, found through the index (event-index.ts) rather than by reading the whole log.
 */
async function* selectedEvents(dir: string, sel: ReplaySelection): AsyncGenerator<AuditEvent> {
  const idx = await auditIndex(dir);
  for (const alertId of new Set(idx.receivedAlerts({ fromMs: sel.from, toMs: sel.to, source: sel.source }))) {
    for (const r of await eventsOfAlert(dir, alertId)) yield openRecord(r.record);
  }
}

/** Groups the log by alert, keeping the alerts the selection names. */
export async function collectAlerts(dir: string, sel: ReplaySelection): Promise<LoggedAlert[]> {
  const byId = new Map<string, LoggedAlert>();
  for await (const ev of selectedEvents(dir, sel)) {
    if (!ev.alertId) continue;
    if (ev.type === 'alert.received') {
      const t = Date.parse(ev.at);
      if ((sel.from !== undefined && t < sel.from) || (sel.to !== undefined && t >= sel.to)) continue;
      if (sel.source && ev.sourceId !== sel.source) continue;
      const data = ev.data ?? {};
      const alert = typeof data.alert === 'object' && data.alert && !(data.alert as { redacted?: boolean }).redacted ? (data.alert as Alert) : undefined;
      // A routed alert's route is on its alert.received; older logs have it on a separate
      // alert.routed (below; docs/audit.md, "One event per received alert").
      const routed = data.ruleId !== undefined && Array.isArray(data.targets) ? { ruleId: String(data.ruleId), targets: data.targets as string[] } : undefined;
      byId.set(ev.alertId, { alertId: ev.alertId, receivedAt: ev.at, sourceId: ev.sourceId, alert, routed, sent: new Map(), events: new Map() });
      continue;
    }
    const a = byId.get(ev.alertId);
    if (!a) continue;
    const data = (ev.data ?? {}) as Record<string, unknown>;
    if (ev.type === 'alert.routed') a.routed = { ruleId: String(data.ruleId), targets: (data.targets as string[]) ?? [] };
    if ((ev.type === 'delivery.feedback' || ev.type === 'delivery.escalation') && ev.deliveryId && data.event) a.events.set(ev.deliveryId, data.event as CaseEvent);
    // What was sent the first time: the first attempt's `delivery.attempt` (it carries the adapter
    // and the body), or in older logs the separate `delivery.translated` (docs/audit.md).
    const firstSend = ev.type === 'delivery.translated' || (ev.type === 'delivery.attempt' && data.adapter !== undefined && data.kind === undefined);
    if (firstSend && ev.deliveryId && !a.sent.has(ev.deliveryId)) {
      if (sel.platform && ev.platformId !== sel.platform) continue;
      a.sent.set(ev.deliveryId, {
        platformId: ev.platformId ?? '',
        at: ev.at,
        adapter: String(data.adapter),
        adapterVersion: String(data.adapterVersion),
        sha256: String(data.sha256),
        body: typeof data.body === 'string' ? data.body : undefined,
      });
    }
  }
  return [...byId.values()];
}

/** Where two payloads part: the first differing JSON path, or the first differing character. */
export function firstDifference(a: string, b: string): string {
  try {
    const walk = (x: unknown, y: unknown, path: string): string | undefined => {
      if (JSON.stringify(x) === JSON.stringify(y)) return undefined;
      if (x && y && typeof x === 'object' && typeof y === 'object' && !Array.isArray(x) === !Array.isArray(y)) {
        const keys = new Set([...Object.keys(x as object), ...Object.keys(y as object)]);
        for (const k of keys) {
          const d = walk((x as Record<string, unknown>)[k], (y as Record<string, unknown>)[k], `${path}/${k}`);
          if (d) return d;
        }
      }
      return `${path || '/'}: was ${JSON.stringify(x)?.slice(0, 120)}, now ${JSON.stringify(y)?.slice(0, 120)}`;
    };
    return walk(JSON.parse(a), JSON.parse(b), '') ?? 'same JSON, different bytes';
  } catch {
    let i = 0;
    while (i < a.length && a[i] === b[i]) i++;
    return `bytes differ at ${i}: was ${JSON.stringify(a.slice(i, i + 60))}, now ${JSON.stringify(b.slice(i, i + 60))}`;
  }
}

/**
 * Re-runs routing and every adapter's translate on logged alerts with the current code and
 * config, and reports each difference from what was actually sent: the check before an upgrade.
 */
export function diffAlert(a: LoggedAlert, cfg: Config, platforms: Map<string, Platform>): Difference[] {
  const out: Difference[] = [];
  if (!a.alert) {
    out.push({ alertId: a.alertId, kind: 'body-removed', detail: 'the alert body was removed by retention; only hashes remain' });
    return out;
  }
  const r = routeAlert(a.alert, cfg.routes, cfg.policeOnly);
  if (a.routed) {
    const now = r.ok ? `${r.decision.ruleId} → ${r.decision.targets.join(', ')}` : r.code;
    const was = `${a.routed.ruleId} → ${a.routed.targets.join(', ')}`;
    if (now !== was) out.push({ alertId: a.alertId, kind: 'route', detail: `was ${was}, now ${now}` });
  }
  for (const [deliveryId, sent] of a.sent) {
    const p = platforms.get(sent.platformId);
    if (!p) {
      out.push({ alertId: a.alertId, deliveryId, platformId: sent.platformId, kind: 'platform-missing', detail: `platform ${sent.platformId} is no longer configured` });
      continue;
    }
    if (p.adapter.id !== sent.adapter || p.adapter.version !== sent.adapterVersion) {
      out.push({ alertId: a.alertId, deliveryId, platformId: p.id, kind: 'adapter-version', detail: `was ${sent.adapter}@${sent.adapterVersion}, now ${p.adapter.id}@${p.adapter.version}` });
    }
    const ruleId = a.routed?.ruleId ?? (r.ok ? r.decision.ruleId : '');
    const ctx: TranslateContext = {
      platform: { id: p.id, config: p.cfg.options },
      delivery: { id: deliveryId, alertId: a.alertId },
      alertId: a.alertId,
      now: sent.at,
      interveneBy: deadlines(slaFor(cfg, ruleId, p.id), a.receivedAt).interveneBy ?? new Date(Date.parse(a.receivedAt) + p.settings.interveneHours * 3_600_000).toISOString(),
      event: a.events.get(deliveryId),
    };
    let body: string | undefined;
    try {
      body = prepare(p.cfg.url, p.adapter.translate(minimise(a.alert, p.cfg.fields), ctx)).body ?? '';
    } catch (err) {
      out.push({ alertId: a.alertId, deliveryId, platformId: p.id, kind: 'translate-error', detail: (err as Error).message });
      continue;
    }
    if (sha256Hex(body) === sent.sha256) continue;
    out.push({ alertId: a.alertId, deliveryId, platformId: p.id, kind: 'payload', detail: sent.body !== undefined ? firstDifference(sent.body, body) : 'payload hash differs (the logged body was removed by retention)' });
  }
  return out;
}
