import t from 'tap';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GENESIS, chainHash, parseRecord, recordParts, sealEvent, sha256Hex, DEFAULT_BODY_PATHS } from '../src/audit/format.js';
import { describeSegment } from '../src/audit/manifest.js';

const dir = await mkdtemp(join(tmpdir(), 'fenliu-audit-describe-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

/** A chained segment of `n` records whose events hold Chinese text (multi-byte UTF-8 across chunk edges). */
function segment(n: number): string {
  let prev = GENESIS;
  let out = '';
  for (let i = 1; i <= n; i++) {
    const ev = { type: 'alert.received', at: '2026-11-30T00:00:00.000Z', alertId: `alt_${i}`, data: { alert: { summary: `米粉店消费纠纷，顾客要求退款 ${i}`.repeat(1 + (i % 7)) } } };
    const { head, tail } = recordParts({ seq: i, streamId: `${1_700_000_000_000 + i}-0`, prev, ...sealEvent(ev, DEFAULT_BODY_PATHS) });
    const line = head + tail;
    prev = chainHash(line);
    out += `${line}\n`;
  }
  return out;
}

/** The description as the whole file decoded at once gives it (what describeSegment did before it read in steps). */
function reference(name: string, text: string, bytes: Buffer) {
  const lines = text.split('\n');
  lines.pop();
  const first = parseRecord(lines[0]);
  const last = parseRecord(lines[lines.length - 1]);
  return { segment: name, firstSeq: first.seq, lastSeq: last.seq, count: lines.length, firstStreamId: first.streamId, lastStreamId: last.streamId, lastHash: chainHash(lines[lines.length - 1]), sha256: sha256Hex(bytes) };
}

t.test('a segment larger than one read step is described as a whole-file read describes it', async (t) => {
  const text = segment(9_000);
  const bytes = Buffer.from(text);
  t.ok(bytes.length > 2 * (1 << 20), `spans several 1 MiB steps (${bytes.length} bytes)`);
  await writeFile(join(dir, 'big.jsonl'), bytes);
  t.same(await describeSegment(dir, 'big.jsonl'), reference('big.jsonl', text, await readFile(join(dir, 'big.jsonl'))));
});

t.test('a one-line segment, and a first line longer than a read step', async (t) => {
  const one = segment(1);
  await writeFile(join(dir, 'one.jsonl'), one);
  t.same(await describeSegment(dir, 'one.jsonl'), reference('one.jsonl', one, Buffer.from(one)));
  const ev = { type: 'alert.received', at: '2026-11-30T00:00:00.000Z', data: { alert: { description: '现场已控制。'.repeat(400_000) } } };
  const { head, tail } = recordParts({ seq: 1, streamId: '1-0', prev: GENESIS, ...sealEvent(ev, DEFAULT_BODY_PATHS) });
  const long = `${head + tail}\n${segment(3).split('\n').slice(1).join('\n')}`;
  t.ok(Buffer.byteLength(long) > 3 << 20);
  await writeFile(join(dir, 'long.jsonl'), long);
  t.same(await describeSegment(dir, 'long.jsonl'), reference('long.jsonl', long, Buffer.from(long)));
});

t.test('an empty segment and an unterminated last line are refused', async (t) => {
  await writeFile(join(dir, 'empty.jsonl'), '');
  await t.rejects(describeSegment(dir, 'empty.jsonl'), /empty segment/);
  await writeFile(join(dir, 'torn.jsonl'), segment(3).slice(0, -5));
  await t.rejects(describeSegment(dir, 'torn.jsonl'), /last line is not terminated/);
});
