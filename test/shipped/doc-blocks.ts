/**
 * The shell blocks of README.md and docs/*.md, and how docs.shipped.ts runs them. The marking
 * convention is described at the top of docs.shipped.ts.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/fenliu.js';

/** README.md, then docs/*.md alphabetically (paths relative to the repository). */
export function docFiles(): string[] {
  return ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)];
}

export interface DocBlock {
  file: string;
  line: number;
  code: string;
  skip?: string;
  cwd?: string;
}

const FENCE = /^(\s*)(`{3,}|~{3,})\s*([^\s`]*)?.*$/;
const RUNNABLE = new Set(['sh', 'bash', 'shell', 'console']);
const MARKER = /^\s*<!--\s*docs-test:\s*(.*?)\s*-->\s*$/;

/** The shell blocks of one markdown file, with the marker (if any) right before each. */
export function shellBlocks(file: string, text: string): DocBlock[] {
  const lines = text.split('\n');
  const out: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i]);
    if (!open) continue;
    const [, indent, fence, lang = ''] = open;
    let end = i + 1;
    while (end < lines.length && !(lines[end].trim().startsWith(fence) && lines[end].trim().replace(/[`~]/g, '') === '')) end++;
    if (RUNNABLE.has(lang.toLowerCase())) {
      const code = lines
        .slice(i + 1, end)
        .map((l) => (l.startsWith(indent) ? l.slice(indent.length) : l.trimStart()))
        .join('\n');
      // A console block is a transcript: only the `$ ` lines are typed, the rest is output.
      const typed = lang.toLowerCase() === 'console' ? code.split('\n').filter((l) => l.startsWith('$ ')).map((l) => l.slice(2)).join('\n') : code;
      const block: DocBlock = { file, line: i + 1, code: typed };
      let j = i - 1;
      while (j >= 0 && lines[j].trim() === '') j--;
      const marker = j >= 0 ? MARKER.exec(lines[j]) : null;
      if (marker) {
        const m = marker[1];
        const skip = /^skip\b\s*[—:-]?\s*(.*)$/.exec(m);
        const cwd = /^cwd=(\S+)$/.exec(m);
        if (skip) block.skip = skip[1] || '(no reason given)';
        else if (cwd) block.cwd = cwd[1];
        else throw new Error(`${file}:${j + 1}: unknown docs-test marker "${m}" (skip — reason | cwd=DIR)`);
      }
      out.push(block);
    }
    i = end;
  }
  return out;
}

export const DEMO_PORTS = [8110, 9101, 9102, 9103, 9104, 9110];

/** Turns a block into a bash script: curl fails on HTTP errors, `# exits N` lines must exit N. */
export function toScript(code: string, ports: Map<number, number>, alertId: string | undefined): string {
  let body = code.replace(/(127\.0\.0\.1|localhost):(\d{4})\b/g, (m, host: string, p: string) => (ports.has(Number(p)) ? `${host}:${ports.get(Number(p))}` : m));
  if (alertId) body = body.replace(/alt_(…|\.\.\.)/g, alertId);
  // Join continued lines so a `# exits N` comment applies to the whole command.
  const logical = body.replace(/\\\n/g, '\u0000').split('\n');
  const lines = logical.map((l) => {
    const m = /^(.*?)\s+#\s*exits\s+(\d+)\b.*$/.exec(l);
    if (!m) return l;
    const cmd = m[1];
    const want = m[2];
    return `{ ${cmd}\n} && __rc=0 || __rc=$?; [ "$__rc" = ${want} ] || { echo "docs-test: expected exit ${want}, got $__rc from: ${cmd.replace(/["$`\\\u0000]/g, ' ')}" >&2; exit 97; }`;
  });
  return ['set -e', 'curl() { command curl --fail-with-body --silent --show-error "$@"; }', ...lines].join('\n').replace(/\u0000/g, '\\\n');
}

