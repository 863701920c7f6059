/**
 * `npx tsx bench/profile-summary.ts <file.cpuprofile> [top]`: self time by function and by
 * package/file, from a `node --cpu-prof` profile (what `npm run bench -- --profile DIR` writes),
 * then the busy time after start-up by owner: each sample goes to the first fenliu file or
 * package met walking up from the sampled function (so ioredis is the client's own work, audit
 * everything the archiver and its helpers run). A profile samples the main thread whether it
 * computes or waits in a synchronous call, and inflates small functions: compare shares between
 * runs, and CPU per unit from the bench itself.
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
/** Start-up (module loading, transpiling, config and schema compilation): left out of the owners. */
const STARTUP = /internal\/modules|esbuild|\/tsx\/|\/yaml\/|\/ajv\/|config\/load|cjs-module-lexer|source_map/;
const [file, topArg] = process.argv.slice(2);
const prof = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const self = new Map<number, number>();
prof.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0)));
const total = [...self.values()].reduce((a, b) => a + b, 0);
const fn = new Map<string, number>();
const group = new Map<string, number>();
for (const [id, us] of self) {
  const n = byId.get(id)!;
  const url = n.callFrame.url.replace(/^file:\/\//, '');
  const where = url.includes('node_modules/') ? url.split('node_modules/').pop()!.split('/').slice(0, url.includes('node_modules/@') ? 2 : 1).join('/') : url.includes('/src/') ? `src/${url.split('/src/').pop()}` : url || `(${n.callFrame.functionName || 'native'})`;
  const name = `${n.callFrame.functionName || '(anonymous)'} ${where}:${n.callFrame.lineNumber + 1}`;
  fn.set(name, (fn.get(name) ?? 0) + us);
  group.set(where, (group.get(where) ?? 0) + us);
}
const top = Number(topArg ?? 25);
const pct = (us: number) => `${((100 * us) / total).toFixed(1).padStart(5)}%`;
console.log(`total ${(total / 1e6).toFixed(1)} s sampled`);
console.log('\nby package / file:');
for (const [k, v] of [...group].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(v)}  ${k}`);
console.log('\nby function (self):');
for (const [k, v] of [...fn].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(v)}  ${k}`);

// by owner: the first src/ or adapters/ file, or package, from the sampled function upward
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
/** Directories summed as one owner (the rest of src/ by file). */
const GROUPED = ['src/audit/', 'src/ingest/', 'src/lifecycle/', 'src/metrics/', 'src/store/', 'adapters/'];
const ownerOf = (n: Node): string | null => {
  const url = n.callFrame.url.replace(/^file:\/\//, '');
  if (url.includes('node_modules/')) return url.split('node_modules/').pop()!.split('/').slice(0, url.includes('node_modules/@') ? 2 : 1).join('/');
  const m = /\/((?:src|adapters|bench)\/.*)$/.exec(url);
  if (!m) return null;
  return GROUPED.find((g) => m[1].startsWith(g))?.slice(0, -1) ?? m[1];
};
const owners = new Map<string, number>();
let busy = 0;
prof.samples.forEach((id, i) => {
  const us = prof.timeDeltas[i] ?? 0;
  const leaf = byId.get(id)!;
  if (leaf.callFrame.functionName === '(idle)') return;
  const stack: Node[] = [];
  for (let c: number | undefined = id; c !== undefined; c = parent.get(c)) stack.push(byId.get(c)!);
  if (stack.some((n) => STARTUP.test(n.callFrame.url))) return;
  busy += us;
  let k = leaf.callFrame.url ? '(node internals: sockets, timers, promises)' : `(${leaf.callFrame.functionName || 'native'})`;
  for (const n of stack) {
    const o = ownerOf(n);
    if (o) {
      k = o;
      break;
    }
  }
  owners.set(k, (owners.get(k) ?? 0) + us);
});
console.log(`\nbusy after start-up by owner (${(busy / 1e6).toFixed(1)} s):`);
for (const [k, v] of [...owners].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${((100 * v) / busy).toFixed(1).padStart(5)}%  ${k}`);
