/**
 * OASIS CAP 1.2 XML → alert.v1 (or a follow-up on one: Update, Cancel).
 *
 * Errors point into the XML with element paths such as `/alert/info[0]/area[0]/geocode[1]/value`
 * (repeated elements indexed from 0).
 */
import type { FieldError } from '../errors.js';
import { capCategory } from './categories.js';
import { compact, cut, isObj, phoneFrom, stableAlertId, type Normalised } from './common.js';
import { list, parseXml, xmlBlock, xmlText } from './xml.js';

export const CAP_NAMESPACES = ['urn:oasis:names:tc:emergency:cap:1.2', 'urn:oasis:names:tc:emergency:cap:1.1'];

const ARRAYS = new Set([
  'alert.code',
  'alert.info',
  'alert.info.category',
  'alert.info.responseType',
  'alert.info.eventCode',
  'alert.info.parameter',
  'alert.info.resource',
  'alert.info.area',
  'alert.info.area.polygon',
  'alert.info.area.circle',
  'alert.info.area.geocode',
]);

export const DEFAULT_GEOCODE_NAMES = ['GB2260', 'GB/T2260', 'GB/T 2260', 'regionCode', '行政区划代码'];

/** CAP `<parameter>`s whose valueName is one of these alert.v1 fields fill that field. */
const PARAMETER_FIELDS = ['caller.name', 'caller.phone', 'caller.confidential', 'source.desk', 'location.address', 'location.gridCode', 'police.unit', 'police.officerId', 'police.sceneStatus', 'police.assessment', 'priority'];

export interface CapOptions {
  sourceId?: string;
  table: Record<string, string>;
  regionCode?: string;
  geocodeNames?: string[];
  maxDepth: number;
}

export function parseCap(xml: string, maxDepth: number): Record<string, unknown> {
  return parseXml(xml, { maxDepth, arrays: ARRAYS }, 'CAP');
}

interface ValuePair {
  valueName?: string;
  value?: string;
}

function pairs(v: unknown): ValuePair[] {
  return list<unknown>(v).map((x) => (isObj(x) ? { valueName: xmlText(x.valueName), value: xmlText(x.value) } : {}));
}

/** `references`: whitespace-separated "sender,identifier,sent" triples → identifiers. */
export function referencedIdentifiers(refs: string | undefined): string[] {
  if (!refs) return [];
  return refs
    .split(/\s+/)
    .filter(Boolean)
    .map((r) => {
      const parts = r.split(',');
      return parts.length >= 3 ? parts[1] : parts.length === 2 ? parts[1] : parts[0];
    })
    .filter(Boolean);
}

/** SAME event codes that are tests by definition (47 CFR §11.31: required weekly/monthly tests, demo). */
const SAME_TESTS = new Set(['RWT', 'RMT', 'DMO', 'NPT']);

/** Languages fenliu prefers when a CAP alert has one `<info>` per language (platforms read Chinese, then English). */
const LANGUAGE_PREFERENCE = ['zh', 'en'];

/** `lat,lon` pairs of a CAP polygon or circle centre (WGS84, CAP 1.2 §3.2.4), or undefined if any is not a coordinate. */
function capPoints(text: string): [number, number][] | undefined {
  const pts = text.trim().split(/\s+/).map((p) => p.split(',').map(Number));
  if (!pts.length || pts.some((p) => p.length !== 2 || !p.every(Number.isFinite) || Math.abs(p[0]) > 90 || Math.abs(p[1]) > 180)) return undefined;
  return pts as [number, number][];
}

/**
 * A representative point of a CAP polygon: its area centroid (planar, in degrees: polygons in
 * alerts are small enough), or the mean of its vertices when the ring has no area.
 */
export function polygonCentroid(text: string): { lat: number; lon: number } | undefined {
  const pts = capPoints(text);
  if (!pts || pts.length < 3) return undefined;
  const ring = pts[0][0] === pts.at(-1)![0] && pts[0][1] === pts.at(-1)![1] ? pts.slice(0, -1) : pts;
  let a = 0;
  let cx = 0;
  let cy = 0;
  for (let i = 0; i < ring.length; i++) {
    const [y0, x0] = ring[i];
    const [y1, x1] = ring[(i + 1) % ring.length];
    const cross = x0 * y1 - x1 * y0;
    a += cross;
    cx += (x0 + x1) * cross;
    cy += (y0 + y1) * cross;
  }
  const round = (x: number) => Math.round(x * 1e6) / 1e6;
  if (Math.abs(a) < 1e-12) return { lat: round(ring.reduce((t, p) => t + p[0], 0) / ring.length), lon: round(ring.reduce((t, p) => t + p[1], 0) / ring.length) };
  return { lat: round(cy / (3 * a)), lon: round(cx / (3 * a)) };
}

/** The centre of a CAP circle (`lat,lon radius-km`). */
export function circleCentre(text: string): { lat: number; lon: number } | undefined {
  const [centre, radius, ...rest] = text.trim().split(/\s+/);
  if (rest.length || (radius !== undefined && !Number.isFinite(Number(radius)))) return undefined;
  const pts = capPoints(centre ?? '');
  return pts?.length === 1 ? { lat: pts[0][0], lon: pts[0][1] } : undefined;
}

function setPath(target: Record<string, any>, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  let cur = target;
  for (const k of keys.slice(0, -1)) cur = cur[k] ??= {};
  cur[keys[keys.length - 1]] = value;
}

export function normaliseCap(doc: Record<string, unknown>, o: CapOptions): Normalised {
  const issues: FieldError[] = [];
  const pointers: Record<string, string> = {};
  const n: Normalised = { format: 'cap', alert: {}, pointers, root: '/alert', issues, action: { kind: 'create' } };
  const a = doc.alert;
  if (!isObj(a)) {
    issues.push({ pointer: '/', message: `the root element must be <alert> (CAP 1.2), not <${Object.keys(doc).find((k) => !k.startsWith('?')) ?? 'nothing'}>` });
    return n;
  }
  const ns = typeof a['@_xmlns'] === 'string' ? a['@_xmlns'] : undefined;
  if (ns !== undefined && !CAP_NAMESPACES.includes(ns)) issues.push({ pointer: '/alert/@xmlns', message: `namespace ${ns} is not CAP 1.2 (${CAP_NAMESPACES[0]})` });

  const identifier = xmlText(a.identifier);
  const sender = xmlText(a.sender);
  const sent = xmlText(a.sent);
  const status = xmlText(a.status);
  const msgType = xmlText(a.msgType);
  if (!identifier) issues.push({ pointer: '/alert/identifier', message: 'is required' });
  else if (/[\s,<&]/.test(identifier)) issues.push({ pointer: '/alert/identifier', message: 'must not contain spaces, commas, < or & (CAP 1.2 §3.2.1)' });
  n.messageId = identifier;
  if (status !== 'Actual') {
    issues.push({ pointer: '/alert/status', message: status ? `status ${status} is not diverted: only Actual alerts reach platforms` : 'is required (Actual)' });
  }
  const references = referencedIdentifiers(xmlText(a.references));
  if (msgType === 'Update' || msgType === 'Cancel') {
    if (!references.length) issues.push({ pointer: '/alert/references', message: `is required for a ${msgType}: name the alert it ${msgType === 'Update' ? 'updates' : 'cancels'} (sender,identifier,sent)` });
    n.action = { kind: msgType === 'Update' ? 'update' : 'cancel', references, pointer: '/alert/references' };
  } else if (msgType !== 'Alert') {
    issues.push({ pointer: '/alert/msgType', message: msgType ? `msgType ${msgType} is not accepted: send Alert, Update or Cancel` : 'is required (Alert, Update or Cancel)' });
  }

  const alert = n.alert;
  alert.source = { system: o.sourceId, alertId: stableAlertId(identifier) };
  pointers['/source'] = '/alert';
  pointers['/source/alertId'] = '/alert/identifier';
  alert.reportedAt = sent;
  pointers['/reportedAt'] = '/alert/sent';

  const infos = list<unknown>(a.info);
  // One <info> per language: take the preferred language, else the first.
  const lang = (x: unknown) => (isObj(x) ? (xmlText(x.language) ?? 'en-US').toLowerCase() : '');
  const pick = LANGUAGE_PREFERENCE.map((l) => infos.findIndex((x) => lang(x) === l || lang(x).startsWith(`${l}-`))).find((i) => i >= 0) ?? 0;
  const info = infos[pick];
  const at = `/alert/info[${pick}]`;
  if (!isObj(info)) {
    if (msgType === 'Cancel' && n.action.kind === 'cancel') n.action.reason = xmlBlock(a.note) ?? `CAP Cancel ${identifier ?? ''}`.trim();
    else issues.push({ pointer: '/alert/info', message: 'is required: fenliu needs info/event, headline or description, and area' });
    n.alert = compact(alert);
    return n;
  }
  if (n.action.kind === 'cancel') n.action.reason = xmlBlock(a.note) ?? xmlText(info.headline) ?? xmlBlock(info.description) ?? `CAP Cancel ${identifier ?? ''}`.trim();

  // category
  const event = xmlText(info.event);
  const eventCodes = pairs(info.eventCode);
  const category = capCategory(o.table, eventCodes, event);
  const test = eventCodes.findIndex((c) => c.valueName?.toUpperCase() === 'SAME' && SAME_TESTS.has((c.value ?? '').toUpperCase()));
  if (test >= 0) issues.push({ pointer: `${at}/eventCode[${test}]/value`, message: `SAME ${eventCodes[test].value} is a test message (47 CFR §11.31), not an alert: not diverted` });
  const fenliuCode = eventCodes.findIndex((c) => c.valueName?.toLowerCase() === 'fenliu');
  pointers['/category'] = fenliuCode >= 0 ? `${at}/eventCode[${fenliuCode}]/value` : `${at}/event`;
  if (category) alert.category = category;
  else if (n.action.kind !== 'cancel') {
    issues.push({
      pointer: `${at}/event`,
      message: event
        ? `event ${JSON.stringify(event)}${eventCodes.length ? ` (eventCode ${eventCodes.map((c) => `${c.valueName}:${c.value}`).join(', ')})` : ''} is in no CAP category table: add it to inbound.categories.cap`
        : 'is required: fenliu needs the event to choose a category',
      field: '/category',
    });
  }

  // text
  const headline = xmlText(info.headline);
  const description = xmlBlock(info.description);
  alert.summary = cut(headline ?? event ?? description, 4000);
  pointers['/summary'] = headline ? `${at}/headline` : event ? `${at}/event` : `${at}/description`;
  if (description) {
    alert.description = cut(description, 20000);
    pointers['/description'] = `${at}/description`;
  }
  if (xmlText(info.urgency) === 'Immediate') {
    alert.priority = 'urgent';
    pointers['/priority'] = `${at}/urgency`;
  }
  const senderName = xmlText(info.senderName);
  if (senderName) {
    alert.police = { unit: cut(senderName, 100) };
    pointers['/police'] = pointers['/police/unit'] = `${at}/senderName`;
  }

  // area: the first one names the place; the first circle or polygon of any area gives the point.
  const areas = list<unknown>(info.area);
  const area = areas[0];
  alert.location = {};
  let point: { from: string; at: string } | undefined;
  pointers['/location'] = isObj(area) ? `${at}/area[0]` : at;
  const geocodes = isObj(area) ? pairs(area.geocode) : [];
  if (isObj(area)) {
    const areaDesc = xmlText(area.areaDesc);
    if (areaDesc) {
      alert.location.address = cut(areaDesc, 500);
      pointers['/location/address'] = `${at}/area[0]/areaDesc`;
    }
    const names = (o.geocodeNames ?? DEFAULT_GEOCODE_NAMES).map((x) => x.toLowerCase());
    const gi = geocodes.findIndex((g) => g.valueName && names.includes(g.valueName.toLowerCase()));
    if (gi >= 0) {
      alert.location.regionCode = geocodes[gi].value;
      pointers['/location/regionCode'] = `${at}/area[0]/geocode[${gi}]/value`;
    }
  }
  pointFromAreas: for (const [ai, ar] of areas.entries()) {
    if (!isObj(ar)) continue;
    for (const kind of ['circle', 'polygon'] as const) {
      for (const [gi, g] of list<unknown>(ar[kind]).entries()) {
        const text = xmlText(g);
        const p = text ? (kind === 'circle' ? circleCentre(text) : polygonCentroid(text)) : undefined;
        if (!p) continue;
        alert.location.lat = p.lat;
        alert.location.lon = p.lon;
        alert.location.crs = 'WGS84';
        pointers['/location/lat'] = pointers['/location/lon'] = `${at}/area[${ai}]/${kind}[${gi}]`;
        point = { from: kind === 'circle' ? 'circle centre' : 'polygon centroid', at: `${at}/area[${ai}]/${kind}[${gi}]` };
        break pointFromAreas;
      }
    }
  }
  if (alert.location.regionCode === undefined && o.regionCode) alert.location.regionCode = o.regionCode;

  // parameters named after alert.v1 fields
  const params = pairs(info.parameter);
  const unmappedParams: ValuePair[] = [];
  params.forEach((p, i) => {
    const field = p.valueName && PARAMETER_FIELDS.find((f) => f.toLowerCase() === p.valueName!.toLowerCase());
    if (!field || p.value === undefined) {
      unmappedParams.push(p);
      return;
    }
    let value: unknown = p.value;
    if (field === 'caller.confidential') value = /^(true|1|yes|是)$/i.test(p.value);
    if (field === 'caller.phone') value = phoneFrom(p.value) ?? p.value;
    setPath(alert, field, value);
    pointers[`/${field.replace(/\./g, '/')}`] = `${at}/parameter[${i}]/value`;
  });

  alert.extensions = compact({
    cap: {
      identifier,
      sender,
      sent,
      msgType,
      scope: xmlText(a.scope),
      source: xmlText(a.source),
      codes: list<unknown>(a.code).length ? list<unknown>(a.code).map(xmlText).filter(Boolean) : undefined,
      references: xmlText(a.references),
      referencedIdentifiers: references.length ? references : undefined,
      note: xmlBlock(a.note),
      language: xmlText(info.language),
      otherLanguages: infos.length > 1 ? infos.filter((_, i) => i !== pick).map(lang) : undefined,
      point,
      categories: list<unknown>(info.category).length ? list<unknown>(info.category).map(xmlText).filter(Boolean) : undefined,
      event,
      eventCodes: eventCodes.length ? eventCodes : undefined,
      urgency: xmlText(info.urgency),
      severity: xmlText(info.severity),
      certainty: xmlText(info.certainty),
      effective: xmlText(info.effective),
      expires: xmlText(info.expires),
      instruction: xmlBlock(info.instruction),
      contact: xmlText(info.contact),
      web: xmlText(info.web),
      geocodes: geocodes.length ? geocodes : undefined,
      parameters: unmappedParams.length ? unmappedParams : undefined,
      moreInfo: infos.length > 1 ? infos.length - 1 : undefined,
      moreAreas: areas.length > 1 ? areas.slice(1).map((x) => (isObj(x) ? xmlText(x.areaDesc) : undefined)).filter(Boolean) : undefined,
    },
  });
  n.alert = compact(alert);
  return n;
}
