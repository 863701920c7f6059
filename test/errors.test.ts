import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERRORS, ProblemError, problemType, toProblem, type ErrorCode } from '../src/errors.js';
import { ROOT } from './helpers/fenliu.js';

/** Rows of the markdown table whose header starts with `| code | status | title | when |`. */
function catalogueTable(md: string): { code: string; status: number; title: string; when: string }[] {
  const lines = md.split('\n');
  const start = lines.findIndex((l) => /^\|\s*code\s*\|\s*status\s*\|\s*title\s*\|\s*when\s*\|\s*$/.test(l));
  if (start < 0) throw new Error('docs/errors.md has no "| code | status | title | when |" table');
  const rows = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    const cells = line.split('|').slice(1, -1).map((c) => c.trim());
    rows.push({ code: cells[0].replace(/`/g, ''), status: Number(cells[1]), title: cells[2], when: cells[3] ?? '' });
  }
  return rows;
}

const rows = catalogueTable(readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8'));
const live = Object.entries(ERRORS).filter(([, spec]) => !(spec as { retired?: boolean }).retired);

t.test('docs/errors.md and src/errors.ts list the same codes with the same status and title', async (t) => {
  t.same(rows.map((r) => r.code).sort(), live.map(([c]) => c).sort(), 'same set of codes');
  t.equal(new Set(rows.map((r) => r.code)).size, rows.length, 'no code listed twice');
  for (const r of rows) {
    const spec = ERRORS[r.code as ErrorCode];
    if (!spec) continue;
    t.equal(r.status, spec.status, `${r.code} status`);
    t.equal(r.title, spec.title, `${r.code} title`);
    t.ok(r.when.length > 10, `${r.code} says when it happens`);
  }
});

t.test('catalogue hygiene', async (t) => {
  for (const [code, spec] of Object.entries(ERRORS)) {
    t.match(code, /^FENLIU_ERR_[A-Z_]+$/, code);
    t.ok(spec.status >= 400 && spec.status <= 599, `${code} is an error status`);
  }
});

t.test('a ProblemError renders as RFC 9457 problem+json', async (t) => {
  const err = new ProblemError('FENLIU_ERR_VALIDATION', '1 field(s) do not match', { errors: [{ pointer: '/summary', message: 'is required' }], extra: { hint: 'x' } });
  const p = toProblem(err, '/v1/alerts');
  t.same(p, {
    type: problemType('FENLIU_ERR_VALIDATION'),
    title: ERRORS.FENLIU_ERR_VALIDATION.title,
    status: 422,
    detail: '1 field(s) do not match',
    code: 'FENLIU_ERR_VALIDATION',
    hint: 'x',
    instance: '/v1/alerts',
    errors: [{ pointer: '/summary', message: 'is required' }],
  });
  t.equal(problemType('FENLIU_ERR_NO_ROUTE'), 'https://fenliu.dev/errors#fenliu-err-no-route');
  t.equal(new ProblemError('FENLIU_ERR_NOT_FOUND').message, ERRORS.FENLIU_ERR_NOT_FOUND.title, 'detail defaults to the title');
});
