/**
 * Process roles: with `audit.archiveIn: archiver`, the process that delivers leaves the audit
 * stream to a `--role archiver` process, which archives it and serves no HTTP.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Redis } from 'ioredis';
import { auditHeadKey, auditStreamKey } from '../src/audit/events.js';
import { archives, delivers, servesApi } from '../src/roles.js';
import { startRedis } from './helpers/redis.js';
import { KEYS, alert, api, startTestFenliu, testConfig } from './helpers/fenliu.js';
import { until } from './helpers/engine.js';

t.test('what each role runs', async (t) => {
  t.same(['all', 'api', 'worker', 'archiver'].map((r) => servesApi(r as never)), [true, true, false, false]);
  t.same(['all', 'api', 'worker', 'archiver'].map((r) => delivers(r as never)), [true, false, true, false]);
  t.same(['all', 'api', 'worker', 'archiver'].map((r) => archives(r as never)), [true, false, true, true]);
  t.same(['all', 'api', 'worker', 'archiver'].map((r) => archives(r as never, 'archiver')), [false, false, false, true]);
});

t.test('audit.archiveIn: archiver — only the archiver process archives', async (t) => {
  const redis = await startRedis();
  const dir = await mkdtemp(join(tmpdir(), 'fenliu-roles-'));
  const r = new Redis(redis.url);
  const doc = testConfig({ audit: { dir, archive: true, archiveIn: 'archiver' } });
  const f = await startTestFenliu({ redisUrl: redis.url, cfg: doc, role: 'all' });
  let archiver: Awaited<ReturnType<typeof startTestFenliu>> | undefined;
  t.teardown(async () => {
    await archiver?.stop();
    await f.stop();
    r.disconnect();
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const prefix = f.cfg.redis.prefix;
  const res = await api(f.url, KEYS.sourceA).post('/v1/alerts', alert('ROLE-1'));
  t.equal(res.status, 202);
  // The `all` process delivers but does not archive: events wait in the stream.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  // At least the alert's alert.received (the dispatcher's one event); its delivery's attempt may follow.
  t.ok((await r.xlen(auditStreamKey(prefix))) >= 1, 'events wait in the stream');
  t.equal(await r.get(auditHeadKey(prefix)), null, 'nothing archived by the delivering process');
  archiver = await startTestFenliu({ redisUrl: redis.url, cfg: doc, role: 'archiver' });
  t.equal(archiver.app, undefined, 'the archiver serves no HTTP');
  const head = await until(async () => {
    const h = await r.get(auditHeadKey(prefix));
    return h ? (JSON.parse(h) as { seq: number }) : undefined;
  }, 10_000, 'archived by the archiver process');
  t.ok(head.seq >= 1, 'the archiver wrote the events to segment files');
  t.ok((await readdir(dir)).some((n) => n.startsWith('audit-')), 'a segment file exists');
});
