/**
 * Receivers that reset connections, hang, trickle bytes, send 10 MB bodies or answer 2xx with
 * HTML: each attempt is classified for what it is (connection, timeout, unreadable), retried,
 * and delivered once the platform behaves; the gateway's memory stays bounded throughout.
 */
import t from 'tap';
import { startRedis } from '../helpers/redis.js';
import { KEYS, Receiver, alert, api, faultConfig, inspector, rssMb, serve, settle, sleep, writeConfig, type Behaviour } from './harness.js';

const MODES: Behaviour[] = ['reset', 'hang', 'trickle', 'huge', 'html'];
const EXPECTED: Record<string, string> = { reset: 'connection', hang: 'timeout', trickle: 'timeout', huge: 'unreadable', html: 'unreadable' };

function modeOf(key: string): Behaviour {
  let h = 0;
  for (const c of key) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return MODES[h % MODES.length];
}

t.test('hostile receivers: classification, bounded memory, nothing lost', async (t) => {
  const redis = await startRedis({ appendonly: true });
  const receiver = await new Receiver().listen();
  // Each delivery meets its receiver's bad behaviour twice, then a working platform.
  receiver.behave = (key, seen) => (seen < 2 ? modeOf(key) : 'ok');
  const file = writeConfig(faultConfig(receiver.url, { platform: { concurrency: 8 } }));
  const ins = inspector(redis.url);
  t.teardown(async () => {
    ins.close();
    await receiver.close();
    await redis.stop();
  });
  const main = await serve(t, file, 'all', redis.url);
  const pid = main.child.pid!;
  await sleep(500);
  const baseline = await rssMb(pid);
  let peak = baseline;
  const sampler = setInterval(() => {
    rssMb(pid).then((m) => (peak = Math.max(peak, m)), () => undefined);
  }, 100);
  t.teardown(() => clearInterval(sampler));

  const N = 50;
  const ids: string[] = [];
  const res = await Promise.all(Array.from({ length: N }, (_, i) => api(main.url!, KEYS.sourceA).post('/v1/alerts', alert(`HOST-${i}`, { category: 'utility.water-leak' }))));
  for (const r of res) {
    t.equal(r.status, 202);
    ids.push(r.body.deliveries[0].id);
  }
  const byMode: Record<string, number> = {};
  for (const id of ids) byMode[modeOf(id)] = (byMode[modeOf(id)] ?? 0) + 1;
  t.ok(Object.keys(byMode).length === MODES.length, `every bad behaviour is exercised: ${JSON.stringify(byMode)}`);

  const tally = await settle('hostile-receivers', ins, receiver, ids, 120_000);
  clearInterval(sampler);
  t.equal(tally.lost, 0, 'nothing lost');
  t.ok(tally.maxConcurrentPerKey <= 1, 'never sent twice at once');

  // Classification: the first attempt of each delivery names what the receiver did.
  const wrong: string[] = [];
  let maxRecorded = 0;
  for (const id of ids) {
    const log = (await ins.r.lrange(ins.k.attempts(id), 0, -1)).map((a) => JSON.parse(a));
    const first = log[0];
    if (first?.errorClass !== EXPECTED[modeOf(id)] || first?.outcome !== 'retry') wrong.push(`${id} ${modeOf(id)} → ${first?.outcome}/${first?.errorClass}`);
    if (log.at(-1)?.outcome !== 'delivered') wrong.push(`${id}: last attempt ${log.at(-1)?.outcome}`);
    for (const a of log) maxRecorded = Math.max(maxRecorded, (a.response ?? '').length);
  }
  t.same(wrong, [], 'every attempt classified as expected (reset→connection, hang/trickle→timeout, 10 MB/HTML→unreadable)');
  t.ok(maxRecorded <= 8 * 1024, `attempt log keeps at most 8 KB of a response (${maxRecorded} chars)`);
  const growth = peak - baseline;
  process.stdout.write(`# fault-memory ${JSON.stringify({ baselineMb: Math.round(baseline), peakMb: Math.round(peak), growthMb: Math.round(growth), receiverRequests: receiver.total })}\n`);
  t.ok(growth < 150, `RSS grew ${growth.toFixed(0)} MB (${baseline.toFixed(0)} → ${peak.toFixed(0)}) while ${byMode.huge * 2} 10 MB bodies came in`);
});
