/**
 * Signed checkpoints in a running fenliu: the archiving process signs them, the API serves them
 * and per-alert proofs, and receipts and feedback to 110 carry {size, root}.
 */
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import feedback110 from '../adapters/feedback-110/index.js';
import { generateKey, openCheckpoint, parseVerifier } from '../src/audit/checkpoint.js';
import { verifyAlertProof } from '../src/audit/proof.js';
import { KEYS, SOURCE_A, alert, api, startTestFenliu, testConfig, validConfig } from './helpers/fenliu.js';
import { until } from './helpers/engine.js';
import { startRedis } from './helpers/redis.js';

const ORIGIN = 'fenliu.test.example/audit';
const key = generateKey(ORIGIN);

t.test('checkpoint and proof over HTTP; receipts carry the checkpoint', async (t) => {
  const redis = await startRedis();
  const dir = await mkdtemp(join(tmpdir(), 'fenliu-cp-http-'));
  const f = await startTestFenliu({
    redisUrl: redis.url,
    role: 'all',
    cfg: testConfig({ audit: { dir, archive: true, signing: { name: ORIGIN, privateKey: key.privateKey, checkpointIntervalMs: 1000 } } }),
  });
  t.teardown(async () => {
    await f.stop();
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const src = api(f.url, KEYS.sourceA);
  const auditor = api(f.url, KEYS.auditor);
  const a = await src.post('/v1/alerts', alert('CP-A'));
  t.equal(a.status, 202);

  // the archiver writes the alert's events, the publisher signs a checkpoint covering them
  const proof = await until(async () => {
    const r = await auditor.get(`/v1/alerts/${a.body.id}/proof`);
    return r.status === 200 && r.body.events.length > 0 ? r.body : undefined;
  }, 30_000, 'a proof with events');
  const check = verifyAlertProof(proof, key.vkey);
  t.ok(check.ok, check.error ?? "the proof verifies");
  t.equal(proof.alertId, a.body.id);
  t.ok(proof.events.some((e: { leaf: string }) => e.leaf.includes('"type":"alert.received"')), 'alert.received is proven');

  const own = await src.get(`/v1/alerts/${a.body.id}/proof`);
  t.equal(own.status, 200, 'the alert\'s own source may fetch its proof');
  const other = await api(f.url, KEYS.sourceB).get(`/v1/alerts/${a.body.id}/proof`);
  t.equal(other.status, 404, 'another source may not');
  t.equal((await auditor.get('/v1/alerts/nope/proof')).status, 404);

  const cp = await auditor.get('/v1/audit/checkpoint');
  t.equal(cp.status, 200);
  t.match(cp.headers['content-type'], /^text\/plain/);
  const opened = openCheckpoint(cp.text, [parseVerifier(key.vkey)]);
  t.equal(opened.origin, ORIGIN);

  // the next receipt carries the latest checkpoint (a cached value)
  const latest = await until(async () => {
    const b = await src.post('/v1/alerts', alert(`CP-B-${Date.now()}`));
    return b.body.auditCheckpoint?.size >= 1 ? b : undefined; // the cache refreshes every 5 s
  }, 30_000, 'a receipt with auditCheckpoint');
  t.equal(latest.status, 202);
  t.ok(latest.body.auditCheckpoint.size >= 1, 'the size of a published checkpoint');
  t.match(latest.body.auditCheckpoint.root, /^[A-Za-z0-9+/]{43}=$/);
  t.equal(latest.body.source.system, SOURCE_A);
});

t.test('POST /v1/audit/checkpoint: an API process asks the archiving process to sign now', async (t) => {
  const redis = await startRedis();
  const dir = await mkdtemp(join(tmpdir(), 'fenliu-cp-now-'));
  // an hour between checkpoints: only the one at start and the ones asked for
  const signing = { name: ORIGIN, privateKey: key.privateKey, checkpointIntervalMs: 3_600_000 };
  const apiOnly = await startTestFenliu({ redisUrl: redis.url, role: 'api', cfg: testConfig({ audit: { dir, archive: true, signing } }) });
  let worker: Awaited<ReturnType<typeof startTestFenliu>> | undefined;
  t.teardown(async () => {
    await worker?.stop();
    await apiOnly.stop();
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const admin = api(apiOnly.url, KEYS.admin);
  const none = await admin.post('/v1/audit/checkpoint', {});
  t.equal(none.status, 503, 'no archiving process is running');
  t.equal(none.body.code, 'FENLIU_ERR_NO_CHECKPOINT_SIGNER');
  t.equal((await api(apiOnly.url, KEYS.auditor).post('/v1/audit/checkpoint', {})).status, 403, 'admin scope only');

  worker = await startTestFenliu({ redisUrl: redis.url, role: 'worker', cfg: testConfig({ audit: { dir, archive: true, signing } }) });
  const a = await api(apiOnly.url, KEYS.sourceA).post('/v1/alerts', alert('CP-NOW'));
  t.equal(a.status, 202);
  // once the alert's events are archived, an on-demand checkpoint covers them at once
  const note = await until(async () => {
    const r = await admin.post('/v1/audit/checkpoint', {});
    if (r.status !== 200) return undefined;
    const cp = openCheckpoint(r.text, [parseVerifier(key.vkey)]);
    return cp.size > 0 ? r.text : undefined;
  }, 30_000, 'an on-demand checkpoint over the archived events');
  t.match((await api(apiOnly.url, KEYS.auditor).get('/v1/audit/checkpoint')).text, note, 'published: GET serves the same note');
  const proof = await api(apiOnly.url, KEYS.auditor).get(`/v1/alerts/${a.body.id}/proof`);
  t.equal(proof.status, 200);
  t.ok(verifyAlertProof(proof.body, key.vkey).ok, 'a proof against the on-demand checkpoint verifies');
});

t.test('feedback to 110 carries the checkpoint it was queued with', async (t) => {
  const req = feedback110.translate(alert('FB-1') as never, {
    alertId: 'alt_1',
    delivery: { id: 'fb_1' },
    platform: { id: 'fb', config: {} },
    event: { type: 'state', deliveryId: 'dlv_1', platformId: 'p-12345', state: 'accepted', at: '2026-11-29T02:30:00.000Z', auditCheckpoint: { size: 42, root: 'x'.repeat(43) + '=' } },
  } as never);
  t.same((req as { body: { auditCheckpoint: unknown } }).body.auditCheckpoint, { size: 42, root: 'x'.repeat(43) + '=' });
});

t.test('config: audit.signing is checked at load', async (t) => {
  t.throws(() => validConfig(testConfig({ audit: { signing: { name: 'other.example/x', privateKey: key.privateKey } } })), /\/audit\/signing\/privateKey.*is the key of "fenliu\.test\.example\/audit", not "other\.example\/x"/);
  t.throws(() => validConfig(testConfig({ audit: { signing: { name: ORIGIN } } })), /\/audit\/signing.*exactly one of privateKey and privateKeyFile/);
  t.throws(() => validConfig(testConfig({ audit: { signing: { name: ORIGIN, privateKey: 'PRIVATE+KEY+x' } } })), /\/audit\/signing\/privateKey/);
  t.equal(validConfig(testConfig({ audit: { signing: { name: ORIGIN, privateKey: key.privateKey } } })).audit.signing?.checkpointIntervalMs, 60_000, 'default interval');
});
