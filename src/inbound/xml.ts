/**
 * Safe XML reading for inbound documents (CAP, and the PIDF-LO inside EIDO locations).
 *
 * Order matters: a DOCTYPE or ENTITY declaration is refused before anything parses the text (no
 * external entities, no billion laughs: there is nothing to expand); nesting is bounded by a flat
 * scan; only then is well-formedness checked and the text parsed, with entity processing off.
 * The five predefined XML entities and numeric character references are decoded by hand, since
 * they need no DTD.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { ProblemError } from '../errors.js';
import { block, oneLine } from './common.js';

const DECL = /<!\s*(DOCTYPE|ENTITY)\b/i;

export interface XmlOptions {
  maxDepth: number;
  /** Element paths (dotted, from the root, no namespace prefixes) that are always arrays. */
  arrays?: ReadonlySet<string>;
}

/** Line and column of an offset, 1-based, for messages. */
function lineCol(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return `line ${line}, column ${offset - before.lastIndexOf('\n')}`;
}

/**
 * Element depth by a flat scan over tags (comments, CDATA and processing instructions skipped).
 * Returns the path of the first element deeper than `max`.
 */
export function xmlTooDeep(text: string, max: number): string | undefined {
  const stack: string[] = [];
  let i = 0;
  while ((i = text.indexOf('<', i)) !== -1) {
    if (text.startsWith('<!--', i)) {
      const end = text.indexOf('-->', i + 4);
      i = end === -1 ? text.length : end + 3;
      continue;
    }
    if (text.startsWith('<![CDATA[', i)) {
      const end = text.indexOf(']]>', i + 9);
      i = end === -1 ? text.length : end + 3;
      continue;
    }
    const close = text.indexOf('>', i);
    if (close === -1) break;
    const tag = text.slice(i + 1, close);
    i = close + 1;
    if (tag.startsWith('?') || tag.startsWith('!')) continue;
    if (tag.startsWith('/')) {
      stack.pop();
      continue;
    }
    if (tag.endsWith('/')) continue;
    const name = (/^[^\s/>]+/.exec(tag)?.[0] ?? '?').replace(/^[^:]*:/, '');
    stack.push(name);
    if (stack.length > max) return `/${stack.slice(0, max + 1).join('/')}`;
  }
  return undefined;
}

function decodeEntities(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);/g, (m, e: string) => {
    if (e === 'amp') return '&';
    if (e === 'lt') return '<';
    if (e === 'gt') return '>';
    if (e === 'quot') return '"';
    if (e === 'apos') return "'";
    const cp = e.startsWith('#x') ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    return cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : m;
  });
}

/** Parses untrusted XML or throws a 400 problem saying what is wrong and where. */
export function parseXml(text: string, o: XmlOptions, what = 'XML'): Record<string, unknown> {
  const decl = DECL.exec(text);
  if (decl) {
    throw new ProblemError('FENLIU_ERR_XML_DOCTYPE', `${what} with a ${decl[1].toUpperCase()} declaration is refused (no DTDs, no entities): remove it`, {
      errors: [{ pointer: '/', message: `<!${decl[1].toUpperCase()} at ${lineCol(text, decl.index)} is not allowed` }],
    });
  }
  const deep = xmlTooDeep(text, o.maxDepth);
  if (deep) {
    throw new ProblemError('FENLIU_ERR_TOO_DEEP', `${what} nests elements more than ${o.maxDepth} levels deep`, { errors: [{ pointer: deep, message: `is nested deeper than ${o.maxDepth} levels` }] });
  }
  const valid = XMLValidator.validate(text);
  if (valid !== true) {
    const e = valid.err;
    throw new ProblemError('FENLIU_ERR_MALFORMED_XML', `${what} is not well-formed: ${e.msg} (line ${e.line}, column ${e.col})`, {
      errors: [{ pointer: '/', message: `line ${e.line}, column ${e.col}: ${e.msg}` }],
    });
  }
  const arrays = o.arrays ?? new Set<string>();
  const parser = new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: '@_',
    removeNSPrefix: true,
    processEntities: false,
    htmlEntities: false,
    parseTagValue: false,
    parseAttributeValue: false,
    trimValues: true,
    ignoreDeclaration: true,
    ignorePiTags: true,
    isArray: (_name, jpath) => arrays.has(String(jpath)),
    tagValueProcessor: (_name, value) => decodeEntities(value),
    attributeValueProcessor: (_name, value) => decodeEntities(value),
  });
  try {
    return parser.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new ProblemError('FENLIU_ERR_MALFORMED_XML', `${what} cannot be read: ${(err as Error).message}`, { errors: [{ pointer: '/', message: (err as Error).message }] });
  }
}

/** Raw text of an element that may carry attributes (`{'#text': ..., '@_x': ...}`). */
function rawText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  if (v && typeof v === 'object' && !Array.isArray(v)) return rawText((v as Record<string, unknown>)['#text']);
  return undefined;
}

/** Text of an element as one line: pretty-printing's line breaks and indentation collapse to one space. */
export function xmlText(v: unknown): string | undefined {
  return oneLine(rawText(v));
}

/** Text of an element that may run over several lines (descriptions): line breaks kept, layout removed. */
export function xmlBlock(v: unknown): string | undefined {
  return block(rawText(v));
}

/** Always a list: a missing element is [], a single one [it]. */
export function list<T = unknown>(v: unknown): T[] {
  if (v === undefined || v === null) return [];
  return (Array.isArray(v) ? v : [v]) as T[];
}
