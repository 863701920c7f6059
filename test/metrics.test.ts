/**
 * /metrics after a scripted scenario: alerts accepted and refused, deliveries delivered and
 * dead-lettered through sandbox platforms, and the scrape-time gauges (queues, dead letters,
 * circuits, Redis). Checks metric names and label sets, and who may scrape. Then the audit
 * archiver's: events archived (against the segment files), time by phase, the stream backlog.
 */
import t from 'tap';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSandbox } from '../src/sandbox/index.js';
import { useRedis } from './helpers/redis.js';
import { alert, api, KEYS, startTestFenliu, testConfig } from './helpers/fenliu.js';

/** Parses the Prometheus text format into samples. */
function parse(text: string): { name: string; labels: Record<string, string>; value: number }[] {
  const out: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

async function waitFor<T>(fn: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 100));
  }
}

t.test('metrics after a scripted scenario', async (t) => {
  const redis = await useRedis(t);
  const sandbox = await startSandbox({
    platforms: [
      { id: 'p-12345', kind: 'hotline-12345' },
      { id: 'p-grid', kind: 'grid-governance' },
      { id: 'p-cityops', kind: 'city-ops' },
    ],
  });
  t.teardown(() => sandbox.close());
  const base = testConfig();
  // p-grid's 12-hour intervention deadline is half a second here, so it passes during the test.
  const cfg = testConfig({ platforms: base.platforms.map((p: { id: string }) => ({ ...p, url: sandbox.get(p.id).url, ...(p.id === 'p-grid' ? { sla: { interveneBy: '500ms' } } : {}) })) });
  const f = await startTestFenliu({ redisUrl: redis.url, cfg, role: 'all' });
  t.teardown(() => f.stop());
  const src = api(f.url, KEYS.sourceA);

  // Delivered: a utility alert goes to p-cityops only.
  const ok = await src.post('/v1/alerts', alert('M-OK', { category: 'utility.water-leak' }));
  t.equal(ok.status, 202);
  // Dead letter: p-12345 answers 4xx, which is never retried.
  sandbox.get('p-12345').setFault('4xx');
  const bad = await src.post('/v1/alerts', alert('M-BAD', { category: 'nuisance.noise', location: { address: 'x', regionCode: '110101' } }));
  t.equal(bad.status, 202);
  t.same(bad.body.route.targets, ['p-12345']);
  // Overdue: delivered to p-grid, never accepted.
  const late = await src.post('/v1/alerts', alert('M-LATE', { category: 'dispute.debt' }));
  t.same(late.body.route.targets, ['p-grid']);
  // Refused: police-only, and invalid.
  t.equal((await src.post('/v1/alerts', alert('M-POL', { category: 'violence.assault' }))).status, 422);
  t.equal((await src.post('/v1/alerts', { nonsense: true })).status, 422);

  const admin = api(f.url, KEYS.admin);
  await waitFor(async () => {
    const a = await admin.get(`/v1/alerts/${ok.body.id}`);
    return a.body.deliveries.every((d: { state: string }) => d.state === 'delivered') ? true : undefined;
  });
  await waitFor(async () => {
    const a = await admin.get(`/v1/alerts/${bad.body.id}`);
    return a.body.deliveries.every((d: { state: string }) => d.state === 'failed') ? true : undefined;
  });

  await waitFor(async () => {
    const a = await admin.get(`/v1/alerts/${late.body.id}`);
    return (a.body.deliveries[0].overdue ?? []).includes('intervene') ? true : undefined;
  });

  // Loopback scrapers need no key; a non-admin key is refused; an admin key is accepted.
  t.equal((await api(f.url, KEYS.auditor).get('/metrics')).status, 403);
  t.equal((await admin.get('/metrics')).status, 200);
  const res = await api(f.url).get('/metrics');
  t.equal(res.status, 200);
  t.match(res.headers['content-type'], /text\/plain/);
  const samples = parse(res.text);
  const find = (name: string, labels: Record<string, string> = {}) => samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  const value = (name: string, labels: Record<string, string> = {}) => find(name, labels).reduce((n, s) => n + s.value, 0);

  t.ok(value('fenliu_build_info') === 1, 'build info');
  t.equal(value('fenliu_alerts_accepted_total', { source: 'test-110-a', duplicate: 'false' }), 3, 'accepted by source');
  t.equal(value('fenliu_alerts_refused_total', { reason: 'FENLIU_ERR_POLICE_ONLY' }), 1, 'refused: police-only');
  t.equal(value('fenliu_alerts_refused_total', { reason: 'FENLIU_ERR_VALIDATION' }), 1, 'refused: validation');
  t.equal(value('fenliu_delivery_attempts_total', { platform: 'p-cityops', outcome: 'delivered' }), 1, 'attempt delivered');
  t.equal(value('fenliu_delivery_attempts_total', { platform: 'p-12345', outcome: 'reject', error_class: 'http-4xx' }), 1, 'attempt rejected with its class');
  t.equal(value('fenliu_deliveries_total', { platform: 'p-cityops', outcome: 'delivered' }), 1);
  t.equal(value('fenliu_deliveries_total', { platform: 'p-12345', outcome: 'failed', error_class: 'http-4xx' }), 1);
  t.equal(value('fenliu_delivery_latency_seconds_count', { platform: 'p-cityops' }), 1, 'latency histogram');
  t.ok(find('fenliu_delivery_latency_seconds_bucket', { platform: 'p-cityops', le: '+Inf' }).length === 1);
  t.equal(value('fenliu_delivery_attempt_duration_seconds_count', { platform: 'p-12345', outcome: 'reject' }), 1);
  t.equal(value('fenliu_dead_letters', { platform: 'p-12345' }), 1, 'dead letters gauge');
  t.equal(value('fenliu_dead_letters', { platform: 'p-cityops' }), 0);
  for (const p of ['p-12345', 'p-grid', 'p-cityops']) {
    t.equal(value('fenliu_circuit_state', { platform: p, state: 'closed' }), 1, `${p} circuit closed`);
    for (const s of ['waiting', 'active', 'delayed', 'prioritized', 'failed']) t.equal(find('fenliu_queue_jobs', { platform: p, state: s }).length, 1, `${p} queue ${s}`);
  }
  t.equal(value('fenliu_redis_up'), 1);
  t.equal(value('fenliu_redis_connection_state', { state: 'ready' }), 1);
  t.ok(value('fenliu_http_requests_total', { method: 'POST', route: '/v1/alerts', status: '202' }) >= 2, 'requests by route pattern and status');
  t.ok(value('fenliu_http_requests_total', { method: 'GET', route: '/v1/alerts/:id', status: '200' }) >= 2, 'ids are not labels');
  t.notOk(samples.some((s) => s.name === 'fenliu_http_requests_total' && /alt_/.test(s.labels.route ?? '')), 'no raw URLs as labels');
  t.ok(find('process_cpu_user_seconds_total').length === 1, 'process metrics');
  t.ok(find('nodejs_eventloop_lag_seconds').length === 1, 'node metrics');
  t.ok(samples.every((s) => !s.name.startsWith('fenliu_') || s.labels.role === 'all'), 'every fenliu series carries the role');
  // Every documented metric name is exposed.
  const documented = ['fenliu_http_requests_total', 'fenliu_http_request_duration_seconds_bucket', 'fenliu_alerts_accepted_total', 'fenliu_alerts_refused_total', 'fenliu_delivery_attempts_total', 'fenliu_delivery_attempt_duration_seconds_bucket', 'fenliu_deliveries_total', 'fenliu_delivery_latency_seconds_bucket', 'fenliu_queue_jobs', 'fenliu_dead_letters', 'fenliu_circuit_state', 'fenliu_redis_up', 'fenliu_redis_connection_state'];
  for (const n of documented) t.ok(samples.some((s) => s.name === n), `exposes ${n}`);
  // The HELP/TYPE lines of the counters that start at zero are present too (sla, state changes).
  t.match(res.text, /# TYPE fenliu_sla_overdue_total counter/);
  t.equal(value('fenliu_sla_overdue_total', { platform: 'p-grid', kind: 'intervene' }), 1, 'sla expiries counted');
  t.equal(value('fenliu_sla_overdue', { platform: 'p-grid', kind: 'intervene' }), 1, 'sla overdue gauge');
  t.equal(value('fenliu_sla_overdue', { platform: 'p-grid', kind: 'ack' }), 0);
  t.equal(value('fenliu_sla_overdue', { platform: 'p-cityops', kind: 'intervene' }), 0);
  t.match(res.text, /# TYPE fenliu_delivery_state_changes_total counter/);
});

t.test('the audit archiver: events archived, time by phase, the stream backlog', async (t) => {
  const redis = await useRedis(t);
  const sandbox = await startSandbox({ platforms: [{ id: 'p-cityops', kind: 'city-ops' }] });
  t.teardown(() => sandbox.close());
  const dir = mkdtempSync(join(tmpdir(), 'fenliu-metrics-audit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const base = testConfig();
  const cfg = testConfig({ audit: { dir, archive: true }, platforms: base.platforms.map((p: { id: string }) => (p.id === 'p-cityops' ? { ...p, url: sandbox.get(p.id).url } : p)) });
  const f = await startTestFenliu({ redisUrl: redis.url, cfg, role: 'all' });
  t.teardown(() => f.stop());
  const src = api(f.url, KEYS.sourceA);
  for (let i = 0; i < 5; i++) t.equal((await src.post('/v1/alerts', alert(`M-AUD-${i}`, { category: 'utility.water-leak' }))).status, 202);

  // Every event written so far archived: the stream is empty and the files hold what was counted.
  const scrape = async () => parse((await api(f.url).get('/metrics')).text);
  const sum = (samples: ReturnType<typeof parse>, name: string, labels: Record<string, string> = {}) =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((n, s) => n + s.value, 0);
  const samples = await waitFor(async () => {
    const s = await scrape();
    // five received and five delivered: at least ten events
    return sum(s, 'fenliu_audit_stream_entries') === 0 && sum(s, 'fenliu_audit_archived_events_total') >= 10 ? s : undefined;
  });
  const lines = readdirSync(dir)
    .filter((n) => /^audit-.*\.jsonl$/.test(n))
    .reduce((n, name) => n + readFileSync(join(dir, name), 'utf8').split('\n').filter(Boolean).length, 0);
  t.equal(sum(samples, 'fenliu_audit_archived_events_total'), lines, 'the counter says how many lines the segments hold');
  const batches = sum(samples, 'fenliu_audit_archive_batch_seconds_count');
  t.ok(batches >= 1, 'batches observed');
  let phases = 0;
  for (const phase of ['read', 'encode', 'append', 'merkle', 'index', 'trim']) {
    t.equal(samples.filter((s) => s.name === 'fenliu_audit_archive_phase_seconds_total' && s.labels.phase === phase).length, 1, `phase ${phase}`);
    t.equal(samples.filter((s) => s.name === 'fenliu_audit_archive_cpu_seconds_total' && s.labels.phase === phase).length, 1, `cpu ${phase}`);
    phases += sum(samples, 'fenliu_audit_archive_phase_seconds_total', { phase });
  }
  for (const phase of ['read', 'encode', 'append']) t.ok(sum(samples, 'fenliu_audit_archive_phase_seconds_total', { phase }) > 0, `time spent in ${phase}`);
  t.ok(Math.abs(sum(samples, 'fenliu_audit_archive_batch_seconds_sum') - phases) < 1e-6 * Math.max(1, phases), 'a batch lasts the sum of its phases');
});

t.test('a scrape answers while Redis does not: fenliu_redis_up 0, the gauges read from Redis left out', async (t) => {
  const redis = await useRedis(t);
  const f = await startTestFenliu({ redisUrl: redis.url });
  t.teardown(() => f.stop());
  const value = (samples: ReturnType<typeof parse>, name: string) => samples.filter((s) => s.name === name).reduce((n, s) => n + s.value, 0);
  const has = (samples: ReturnType<typeof parse>, name: string) => samples.some((s) => s.name === name);
  const before = parse((await api(f.url).get('/metrics')).text);
  t.equal(value(before, 'fenliu_redis_up'), 1, 'up while Redis answers');
  t.ok(has(before, 'fenliu_queue_jobs') && has(before, 'fenliu_audit_stream_entries'), 'the gauges read from Redis are there');

  const resume = redis.pause();
  t.teardown(resume);
  const started = Date.now();
  const res = await api(f.url).get('/metrics');
  const ms = Date.now() - started;
  t.equal(res.status, 200, 'the scrape answers');
  t.ok(ms < 2_500, `within ${ms} ms (each read waits 1 s at most, side by side)`);
  const during = parse(res.text);
  t.equal(value(during, 'fenliu_redis_up'), 0, 'Redis is down, as far as alerting goes');
  for (const name of ['fenliu_queue_jobs', 'fenliu_dead_letters', 'fenliu_circuit_state', 'fenliu_sla_overdue']) t.notOk(has(during, name), `${name} left out, not its last value`);
  t.ok(Number.isNaN(value(during, 'fenliu_audit_stream_entries')), 'the backlog, a gauge without labels, is NaN (unknown), not 0');
  t.equal(value(during, 'fenliu_build_info'), 1, 'the rest is there');
  t.ok(has(during, 'fenliu_http_requests_total'));

  resume();
  const after = await waitFor(async () => {
    const s = parse((await api(f.url).get('/metrics')).text);
    return value(s, 'fenliu_redis_up') === 1 ? s : undefined;
  });
  t.ok(has(after, 'fenliu_queue_jobs'), 'back once Redis answers');
  t.equal(value(after, 'fenliu_audit_stream_entries'), 0, 'the backlog too');
});
