/**
 * Vendor JSON → alert.v1 through a declarative mapping in the source's config, written in the
 * webhook adapter's mapping language (path, template, const, map, join, each), read here in the
 * other direction: `path` reads the vendor document, the mapping's shape is the alert's.
 */
import webhook, { evaluate } from '../../adapters/webhook/index.js';
import { compileOnce } from '../schemas.js';
import { dottedToPointer, isObj, ptr, type Normalised } from './common.js';

const DIRECTIVES = ['path', 'template', 'const', 'map', 'join', 'each'] as const;

/** Problems of a mapping against the webhook adapter's mapping schema, as pointers below `at`. */
export function mappingProblems(mapping: unknown, at: string): { path: string; message: string }[] {
  const validate = compileOnce(webhook.configSchema);
  if (validate({ path: '/', mapping })) return [];
  // anyOf failures list every branch; the deepest path is the most useful one to name.
  const errs = (validate.errors ?? []).filter((e) => e.instancePath.startsWith('/mapping'));
  const deepest = Math.max(0, ...errs.map((e) => e.instancePath.length));
  const shown = errs.filter((e) => e.instancePath.length === deepest).slice(0, 3);
  return shown.map((e) => ({ path: `${at}${e.instancePath.slice('/mapping'.length)}`, message: `${e.message ?? 'is invalid'} (mapping language of adapters/webhook)` }));
}

/** The document field each alert field is read from, for error pointers. */
function mappingPointers(node: unknown, at: string, out: Record<string, string>): void {
  if (Array.isArray(node)) {
    node.forEach((x, i) => mappingPointers(x, `${at}/${i}`, out));
    return;
  }
  if (!isObj(node)) return;
  const kind = DIRECTIVES.find((d) => Object.prototype.hasOwnProperty.call(node, d));
  if (!kind) {
    for (const [k, v] of Object.entries(node)) mappingPointers(v, `${at}${ptr(k)}`, out);
    return;
  }
  let path: unknown;
  if (kind === 'path') path = node.path;
  else if (kind === 'map') path = isObj(node.map) ? node.map.path : undefined;
  else if (kind === 'each') path = node.each;
  else if (kind === 'template') path = /\{\{\s*([^}\s]+)\s*\}\}/.exec(String(node.template))?.[1];
  else if (kind === 'join' && Array.isArray(node.join)) {
    const first = node.join.find((x) => isObj(x) && typeof x.path === 'string');
    path = isObj(first) ? first.path : undefined;
  }
  if (typeof path === 'string' && !path.startsWith('$')) out[at || '/'] = dottedToPointer(path);
}

export function normaliseVendor(doc: unknown, mapping: Record<string, unknown>, sourceId: string): Normalised {
  const pointers: Record<string, string> = {};
  mappingPointers(mapping, '', pointers);
  const n: Normalised = { format: 'vendor', alert: {}, pointers, root: '/', issues: [], action: { kind: 'create' } };
  if (!isObj(doc) && !Array.isArray(doc)) {
    n.issues.push({ pointer: '/', message: 'a vendor document is a JSON object' });
    return n;
  }
  const out = evaluate(mapping, { item: doc, alert: doc as never, ctx: { source: { id: sourceId } } });
  const alert = isObj(out) ? out : {};
  // The source is the key's; a mapping need not say it.
  if (!isObj(alert.source)) alert.source = {};
  alert.source.system ??= sourceId;
  n.alert = alert;
  return n;
}
