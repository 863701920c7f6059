/**
 * NENA EIDO (NENA-STA-021) JSON → alert.v1.
 *
 * An EIDO keeps its components in flat arrays (incidentComponent, callComponent,
 * locationComponent, personComponent, callbackComponent, notesComponent, agencyComponent, ...)
 * linked by `$id` / `{"$ref": id}`. The normaliser indexes every component by `$id`, checks that
 * every reference it could follow resolves (a dangling one is a 422 pointing at the `$ref`), and
 * takes: the incident type (→ category via the table), the internal incident id (→ alertId), the
 * call start time (→ reportedAt), the location description or PIDF-LO civic address, the caller's
 * callback number, and the notes. What does not map is kept under `extensions.eido`.
 */
import type { FieldError } from '../errors.js';
import { eidoCategory } from './categories.js';
import { block, compact, cut, isObj, phoneFrom, ptr, stableAlertId, str, type Normalised } from './common.js';
import { list, parseXml, xmlText } from './xml.js';

export interface EidoOptions {
  sourceId?: string;
  table: Record<string, string>;
  /** GB/T 2260 code used when the document carries none. */
  regionCode?: string;
  maxDepth: number;
}

/** References about who last edited a component point at agencies and agents outside the document. */
const PROLOGUE_REFS = new Set(['updatedByAgencyReference', 'updatedByAgentReference']);

interface Found {
  pointer: string;
  value: Record<string, any>;
}

export function isEido(body: unknown): boolean {
  return isObj(body) && (Object.prototype.hasOwnProperty.call(body, 'eidoVersion') || Object.prototype.hasOwnProperty.call(body, 'EIDOVersion'));
}

/**
 * Member names of NENA's 2020 draft (its first sample EIDO) that NENA-STA-021 renamed: read as
 * the standard's names, so a document from a pre-standard producer is not refused for spelling.
 */
const DRAFT_NAMES: Record<string, string> = {
  EIDOVersion: 'eidoVersion',
  LastUpdateTimeStamp: 'lastUpdateTimeStamp',
  lastUpdateTimestamp: 'lastUpdateTimeStamp',
  locationInformationComponent: 'locationComponent',
};

/** The document with draft member names read as the standard's (only where the standard's name is absent). */
function standardNames(doc: Record<string, any>): { doc: Record<string, any>; renamed: string[] } {
  const out: Record<string, any> = { ...doc };
  const renamed: string[] = [];
  for (const [draft, std] of Object.entries(DRAFT_NAMES)) {
    if (Object.prototype.hasOwnProperty.call(doc, draft) && !Object.prototype.hasOwnProperty.call(doc, std)) {
      out[std] = doc[draft];
      delete out[draft];
      renamed.push(draft);
    }
  }
  for (const [name, v] of Object.entries(out)) {
    if (!name.endsWith('Component') || !Array.isArray(v)) continue;
    out[name] = v.map((c) => {
      if (!isObj(c)) return c;
      const x: Record<string, any> = { ...c };
      for (const [draft, std] of Object.entries(DRAFT_NAMES)) if (draft in c && !(std in c)) x[std] = c[draft];
      return x;
    });
  }
  return { doc: out, renamed };
}

/** Comment text of an IETF EmergencyCallData.Comment block (RFC 7852) carried as additional data. */
function callDataComments(xml: string, maxDepth: number): string[] {
  if (!/EmergencyCallData\.Comment/.test(xml)) return [];
  const doc = parseXml(xml.trim(), { maxDepth }, 'EmergencyCallData.Comment');
  return list<unknown>(findKey(doc, 'Comment')).map(xmlText).filter((x): x is string => !!x);
}

/** Components of one kind: the standard arrays, or a lone object some producers send. */
function components(doc: Record<string, any>, name: string): Found[] {
  const v = doc[name];
  if (Array.isArray(v)) return v.flatMap((c, i) => (isObj(c) ? [{ pointer: ptr(name, i), value: c }] : []));
  if (isObj(v)) return [{ pointer: ptr(name), value: v }];
  return [];
}

/** `{ "$ref": id }` or a list of them, with the pointer of each `$ref`. */
function refsAt(owner: Found, key: string): { id: string; pointer: string }[] {
  const v = owner.value[key];
  const items = Array.isArray(v) ? v.map((x, i) => [x, ptr(key, i)] as const) : [[v, ptr(key)] as const];
  return items.flatMap(([x, p]) => (isObj(x) && typeof x.$ref === 'string' ? [{ id: x.$ref, pointer: `${owner.pointer}${p}/$ref` }] : []));
}

function stripHtml(html: string): string {
  return html
    .replace(/<br\s*\/?>/gi, '\n')
    .replace(/<\/p>/gi, '\n')
    .replace(/<[^>]*>/g, '')
    .replace(/&nbsp;/g, ' ')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&')
    .replace(/[ \t]+/g, ' ')
    .replace(/\n\s*\n+/g, '\n')
    .trim();
}

/** First value under `key` anywhere below `v` (bounded: the document's depth is already checked). */
function findKey(v: unknown, key: string): unknown {
  const stack = [v];
  while (stack.length) {
    const x = stack.pop();
    if (Array.isArray(x)) stack.push(...x);
    else if (isObj(x)) {
      if (Object.prototype.hasOwnProperty.call(x, key)) return x[key];
      stack.push(...Object.values(x));
    }
  }
  return undefined;
}

/** Address text and coordinates from a PIDF-LO document (RFC 4119 / 5139 civic address, GML point). */
export function readPidf(xml: string, maxDepth: number): { address?: string; lat?: number; lon?: number } {
  const doc = parseXml(xml.trim(), { maxDepth }, 'PIDF-LO location');
  const civic = findKey(doc, 'civicAddress');
  let address: string | undefined;
  if (isObj(civic)) {
    const f = (k: string) => xmlText(civic[k]);
    if (f('country')?.toUpperCase() === 'CN') {
      // Chinese order, largest first, no separators: 湖北省黄石市下陆区团城山街道杭州西路88号
      address = ['A1', 'A2', 'A3', 'A4', 'A5', 'A6', 'RD', 'STS', 'HNO', 'HNS', 'LMK', 'LOC', 'NAM'].map(f).filter(Boolean).join('');
    } else {
      const street = [f('HNO'), f('HNS'), f('PRD'), f('RD'), f('STS'), f('POD')].filter(Boolean).join(' ');
      address = [street, f('LOC'), f('A6'), f('A5'), f('A4'), f('A3'), f('A2'), f('A1'), f('PC'), f('country')].filter(Boolean).join(', ');
    }
    if (!address) address = undefined;
  }
  const pos = xmlText(findKey(doc, 'pos'));
  let lat: number | undefined;
  let lon: number | undefined;
  if (pos) {
    const [a, b] = pos.split(/\s+/).map(Number);
    if (Number.isFinite(a) && Number.isFinite(b) && Math.abs(a) <= 90 && Math.abs(b) <= 180) [lat, lon] = [a, b];
  }
  return { address, lat, lon };
}

export function normaliseEido(sent: unknown, o: EidoOptions): Normalised {
  const issues: FieldError[] = [];
  const pointers: Record<string, string> = {};
  const n: Normalised = { format: 'eido', alert: {}, pointers, root: '/', issues, action: { kind: 'create' } };
  if (!isObj(sent)) {
    issues.push({ pointer: '/', message: 'an EIDO document is a JSON object' });
    return n;
  }
  const { doc, renamed } = standardNames(sent);
  if (typeof doc.eidoVersion !== 'string' || !doc.eidoVersion.trim()) issues.push({ pointer: '/eidoVersion', message: 'must be a non-empty string (e.g. "1.0")' });

  // --- index every component by $id, then check references
  const byId = new Map<string, Found>();
  const names = Object.keys(doc).filter((k) => k.endsWith('Component'));
  for (const name of names) {
    for (const c of components(doc, name)) {
      if (typeof c.value.$id !== 'string') continue;
      if (byId.has(c.value.$id)) issues.push({ pointer: `${c.pointer}/$id`, message: `duplicate $id "${c.value.$id}" (also at ${byId.get(c.value.$id)!.pointer})` });
      else byId.set(c.value.$id, c);
    }
  }
  if (typeof doc.$id === 'string' && !byId.has(doc.$id)) byId.set(doc.$id, { pointer: '', value: doc });
  for (const name of names) {
    for (const c of components(doc, name)) {
      // Walk this component for { $ref } objects (iteratively; depth is bounded already).
      const stack: [unknown, string, string | undefined][] = [[c.value, c.pointer, undefined]];
      while (stack.length) {
        const [v, at, key] = stack.pop()!;
        if (Array.isArray(v)) v.forEach((x, i) => stack.push([x, `${at}/${i}`, key]));
        else if (isObj(v)) {
          if (typeof v.$ref === 'string' && !(key && PROLOGUE_REFS.has(key)) && !byId.has(v.$ref)) {
            issues.push({ pointer: `${at}/$ref`, message: `dangling reference: no component in this EIDO has $id "${v.$ref}"` });
          }
          for (const [k, x] of Object.entries(v)) if (k !== '$ref') stack.push([x, `${at}${ptr(k)}`, k]);
        }
      }
    }
  }
  const deref = (owner: Found | undefined, key: string, kind?: string): Found[] =>
    owner ? refsAt(owner, key).flatMap((r) => {
      const f = byId.get(r.id);
      return f && (!kind || f.pointer.startsWith(`/${kind}`)) ? [f] : [];
    }) : [];

  // --- the incident and its call
  const incident = components(doc, 'incidentComponent')[0];
  if (!incident) issues.push({ pointer: '/incidentComponent', message: 'is required: fenliu needs the incident (its type decides the category)' });
  const call = deref(incident, 'callReference', 'callComponent')[0] ?? components(doc, 'callComponent')[0];

  const alert = n.alert;
  alert.source = { system: o.sourceId };
  pointers['/source'] = incident?.pointer ?? '/';

  // alertId: the 110 system's own incident number.
  const idCandidates: [unknown, string][] = [
    [incident?.value.internalIncidentId, `${incident?.pointer}/internalIncidentId`],
    [incident?.value.incidentTrackingIdentifier, `${incident?.pointer}/incidentTrackingIdentifier`],
    [doc.$id, '/$id'],
  ];
  const idHit = idCandidates.find(([v]) => str(v) !== undefined && incident !== undefined) ?? idCandidates.slice(2).find(([v]) => str(v) !== undefined);
  if (idHit) {
    alert.source.alertId = stableAlertId(str(idHit[0]));
    pointers['/source/alertId'] = idHit[1];
  } else pointers['/source/alertId'] = incident?.pointer ?? '/';

  // reportedAt: when the call started.
  const timeCandidates: [unknown, string][] = [
    [call?.value.callStartTimestamp, `${call?.pointer}/callStartTimestamp`],
    [incident?.value.incidentStartTimestamp, `${incident?.pointer}/incidentStartTimestamp`],
    [incident?.value.lastUpdateTimeStamp, `${incident?.pointer}/lastUpdateTimeStamp`],
    [doc.lastUpdateTimeStamp, '/lastUpdateTimeStamp'],
  ];
  const timeHit = timeCandidates.find(([v, p]) => str(v) !== undefined && !p.startsWith('undefined'));
  if (timeHit) {
    alert.reportedAt = str(timeHit[0]);
    pointers['/reportedAt'] = timeHit[1];
  }

  // category: the incident type through the table.
  const typeValue = incident?.value.incidentTypeCommonRegistryText;
  const registryText = str(Array.isArray(typeValue) ? typeValue[0] : typeValue);
  const typePointer = `${incident?.pointer}/incidentTypeCommonRegistryText${Array.isArray(typeValue) ? '/0' : ''}`;
  const internalCode = str(incident?.value.incidentTypeInternalCode);
  const internalText = str(incident?.value.incidentTypeInternalText);
  if (incident) {
    pointers['/category'] = internalCode && !registryText ? `${incident.pointer}/incidentTypeInternalCode` : typePointer;
    const category = eidoCategory(o.table, internalCode, registryText);
    if (category) alert.category = category;
    else if (!registryText && !internalCode) issues.push({ pointer: typePointer, message: 'is required: fenliu needs the incident type to choose a category', field: '/category' });
    else {
      issues.push({
        pointer: pointers['/category'],
        message: `incident type ${JSON.stringify(internalCode ?? registryText)}${internalCode && registryText ? ` (${registryText})` : ''} is in no EIDO category table: add it to inbound.categories.eido`,
        field: '/category',
      });
    }
  }

  // notes → summary and description.
  const noteRefs = deref(incident, 'notesReference', 'notesComponent');
  const notes = (noteRefs.length ? noteRefs : components(doc, 'notesComponent'))
    .map((f) => ({ pointer: `${f.pointer}/notesActionComments`, text: str(f.value.notesActionComments) ? stripHtml(f.value.notesActionComments) : undefined }))
    .filter((x): x is { pointer: string; text: string } => !!x.text);
  const notesFromNotesComponent = notes.length;
  // Comments the call brought (RFC 7852 EmergencyCallData.Comment in additionalDataComponent).
  for (const c of components(doc, 'additionalDataComponent')) {
    if (typeof c.value.additionalDataByValue !== 'string') continue;
    try {
      for (const text of callDataComments(c.value.additionalDataByValue, o.maxDepth)) notes.push({ pointer: `${c.pointer}/additionalDataByValue`, text });
    } catch {
      // Unreadable additional data is not the incident's content: it stays in the document, not in the alert.
    }
  }
  const typeText = internalText ?? registryText ?? internalCode;
  if (notes.length) {
    alert.summary = cut(notes[0].text.split('\n')[0], 500);
    pointers['/summary'] = notes[0].pointer;
    alert.description = cut(block(notes.map((x) => x.text).join('\n')), 20000);
    pointers['/description'] = notes.length === 1 ? notes[0].pointer : '/notesComponent';
    if (notesFromNotesComponent === 0) {
      // Only call-data comments: the incident type says what it is; the comments say more.
      alert.summary = cut(typeText ?? notes[0].text.split('\n')[0], 500);
      pointers['/summary'] = typeText ? (internalText ? `${incident!.pointer}/incidentTypeInternalText` : pointers['/category']) : notes[0].pointer;
    }
  } else if (typeText) {
    alert.summary = cut(typeText, 500);
    pointers['/summary'] = internalText ? `${incident!.pointer}/incidentTypeInternalText` : pointers['/category'];
  }

  // location: the incident's (or call's) location, preferring one typed as the incident's place.
  const locs = [...deref(incident, 'locationReference', 'locationComponent'), ...deref(call, 'locationReference', 'locationComponent')];
  const candidates = locs.length ? locs : components(doc, 'locationComponent');
  const loc = candidates.find((l) => /incident/i.test(String(l.value.locationTypeDescriptionRegistryText ?? ''))) ?? candidates.find((l) => l.value.locationDescriptionText || l.value.locationByValue) ?? candidates[0];
  alert.location = {};
  pointers['/location'] = loc?.pointer ?? incident?.pointer ?? '/';
  if (loc) {
    const desc = str(loc.value.locationDescriptionText);
    let pidf: ReturnType<typeof readPidf> = {};
    if (typeof loc.value.locationByValue === 'string') {
      try {
        pidf = readPidf(loc.value.locationByValue, o.maxDepth);
      } catch (err) {
        issues.push({ pointer: `${loc.pointer}/locationByValue`, message: `PIDF-LO cannot be read: ${(err as Error).message}` });
      }
    }
    const address = desc ?? pidf.address;
    if (address) {
      alert.location.address = cut(address, 500);
      pointers['/location/address'] = `${loc.pointer}/${desc ? 'locationDescriptionText' : 'locationByValue'}`;
    }
    if (pidf.lat !== undefined && pidf.lon !== undefined) {
      alert.location.lat = pidf.lat;
      alert.location.lon = pidf.lon;
      alert.location.crs = 'WGS84';
      pointers['/location/lat'] = pointers['/location/lon'] = `${loc.pointer}/locationByValue`;
    }
  }
  if (o.regionCode) alert.location.regionCode = o.regionCode;

  // caller: the person in the Caller role, or the call's own callback.
  const persons = [...deref(incident, 'personReference', 'personComponent'), ...deref(call, 'personReference', 'personComponent')];
  const caller = (persons.length ? persons : components(doc, 'personComponent')).find((p) => list<string>(p.value.personIncidentRoleRegistryText).some((r) => /caller/i.test(String(r))));
  const callback = deref(caller, 'callBackReference', 'callbackComponent')[0] ?? deref(call, 'callBackReference', 'callbackComponent')[0];
  if (callback || caller) {
    alert.caller = {};
    pointers['/caller'] = (caller ?? callback)!.pointer;
    const uris = list<unknown>(callback?.value.callBackInformationUri);
    const telIndex = uris.findIndex((u) => typeof u === 'string' && /^tel:/i.test(u));
    const idx = telIndex >= 0 ? telIndex : uris.findIndex((u) => typeof u === 'string' && phoneFrom(u));
    const phone = idx >= 0 ? phoneFrom(uris[idx] as string) : undefined;
    if (phone) {
      alert.caller.phone = phone;
      pointers['/caller/phone'] = `${callback!.pointer}/callBackInformationUri${Array.isArray(callback!.value.callBackInformationUri) ? `/${idx}` : ''}`;
    }
    const name = str(findKey(caller?.value.ncPersonComponent, 'PersonFullName'));
    if (name) {
      alert.caller.name = cut(name, 100);
      pointers['/caller/name'] = `${caller!.pointer}/ncPersonComponent`;
    }
  }

  // Everything useful that alert.v1 has no field for.
  const counts: Record<string, number> = {};
  for (const name of names) counts[name] = components(doc, name).length;
  alert.extensions = compact({
    eido: {
      eidoVersion: str(doc.eidoVersion),
      draftNames: renamed.length ? renamed : undefined,
      id: str(doc.$id),
      incidentNumber: idHit && str(idHit[0]) !== alert.source.alertId ? str(idHit[0]) : undefined,
      issuingElement: str(doc.issuingElementIdentification),
      incidentId: str(incident?.value.$id),
      incidentTrackingIdentifier: str(incident?.value.incidentTrackingIdentifier),
      incidentType: { registry: registryText, internalCode, internalText },
      incidentStatus: incident?.value.incidentStatusCommonRegistryText,
      priority: incident?.value.incidentCommonPriorityNumber ?? str(incident?.value.incidentPriorityInternalText),
      callId: str(call?.value.$id),
      callType: str(call?.value.standardPrimaryCallType),
      callAnswered: str(call?.value.answerDate),
      locationType: str(loc?.value.locationTypeDescriptionRegistryText),
      locationByReferenceUrl: str(loc?.value.locationByReferenceUrl),
      agencies: components(doc, 'agencyComponent').map((a) => str(a.value.$id)).filter(Boolean),
      components: counts,
    },
  });
  n.alert = compact(alert);
  return n;
}
