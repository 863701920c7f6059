/**
 * Fast half of the docs-that-run check (the slow half, running the blocks against an installed
 * demo, is test/shipped/docs.shipped.ts in `npm run test:shipped`): every docs-test marker in
 * README.md and docs/*.md is well-formed, every skip says why, and the runner's script
 * transformation keeps its promises.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { ROOT } from './helpers/fenliu.js';
import { docFiles, shellBlocks, toScript } from './shipped/doc-blocks.js';

t.test('every shell block in the docs parses, and every skip has a reason', async (t) => {
  const blocks = docFiles().flatMap((f) => shellBlocks(f, readFileSync(join(ROOT, f), 'utf8')));
  t.ok(blocks.length > 0);
  for (const b of blocks.filter((x) => x.skip)) t.not(b.skip, '(no reason given)', `${b.file}:${b.line} says why it is skipped`);
});

t.test('markers, indented fences and other languages', async (t) => {
  const md = [
    '<!-- docs-test: skip — needs Docker -->',
    '```sh',
    'docker build .',
    '```',
    '```yaml',
    'a: 1',
    '```',
    '- a step:',
    '',
    '  <!-- docs-test: cwd=var/audit -->',
    '',
    '  ```bash',
    '  ls',
    '  echo "two"',
    '  ```',
    '```console',
    '$ fenliu --version',
    'fenliu 0.1.0',
    '```',
  ].join('\n');
  t.same(shellBlocks('x.md', md), [
    { file: 'x.md', line: 2, code: 'docker build .', skip: 'needs Docker' },
    { file: 'x.md', line: 12, code: 'ls\necho "two"', cwd: 'var/audit' },
    { file: 'x.md', line: 16, code: 'fenliu --version' },
  ]);
  t.throws(() => shellBlocks('x.md', '<!-- docs-test: maybe -->\n```sh\nls\n```'), /x\.md:1: unknown docs-test marker "maybe"/);
});

t.test('ports and alert ids are rewritten; "# exits N" is enforced', async (t) => {
  const ports = new Map([[8110, 18110]]);
  const s = toScript('curl http://127.0.0.1:8110/v1/alerts/alt_… -H x\nfalse   # exits 1: = reject', ports, 'alt_42');
  t.match(s, /127\.0\.0\.1:18110\/v1\/alerts\/alt_42/);
  t.equal(execFileSync('bash', ['-c', toScript('false   # exits 1: the reason', ports, undefined) + '\necho after'], { encoding: 'utf8' }), 'after\n');
  t.throws(() => execFileSync('bash', ['-c', toScript('true   # exits 1', ports, undefined)], { stdio: 'pipe' }), 'a command that should fail but succeeds fails the block');
  t.throws(() => execFileSync('bash', ['-c', toScript('false\necho after', ports, undefined)], { stdio: 'pipe' }), 'any other failing command fails the block');
});
