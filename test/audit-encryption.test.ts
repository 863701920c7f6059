import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AuditArchiver } from '../src/audit/archiver.js';
import { compactSegments } from '../src/audit/compact.js';
import { addAudit } from '../src/audit/events.js';
import { listSegments, openRecord, parseRecord, type AuditKeyring } from '../src/audit/format.js';
import { verifyAuditDir } from '../src/audit/verify.js';
import { redisAndDir } from './helpers/audit.js';

const { redis, dir } = await redisAndDir(t, 'fenliu-audit-enc-');

t.test('bodies stored encrypted: no personal data on disk, chain verifies without the key', async (t) => {
  const ring: AuditKeyring = { current: 'k2026', keys: new Map([['k2026', randomBytes(32)]]) };
  const m = redis.multi();
  for (let i = 0; i < 5; i++) {
    addAudit(m, 'enc', { type: 'alert.received', at: new Date(Date.UTC(2024, 0, 1, 0, 0, i)).toISOString(), alertId: `A-${i}`, data: { alert: { caller: { name: '王五', phone: `1380013800${i}` } } } });
  }
  await m.exec();
  const a = new AuditArchiver({ redis, prefix: 'enc', dir, segmentMaxBytes: 1_500, keyring: ring });
  t.equal(await a.flushOnce(), 5);
  const segs = await listSegments(dir);
  const text = (await Promise.all(segs.map((s) => readFile(join(dir, s), 'utf8')))).join('');
  t.notOk(text.includes('王五'), 'no name in the files');
  t.notOk(/1380013800/.test(text), 'no phone in the files');
  t.ok(text.includes('A256GCM'), 'bodies are sealed');
  t.ok((await verifyAuditDir(dir)).ok, 'verify needs no key');

  const rec = parseRecord(text.split('\n')[0]);
  const opened = openRecord(rec, ring);
  t.same((opened.data as { alert: unknown }).alert, { caller: { name: '王五', phone: '13800138000' } }, 'the key opens the body');
  const sealed = openRecord(rec, { keys: new Map() });
  t.equal(((sealed.data as { alert: { enc: string } }).alert).enc, 'A256GCM', 'without the key the body stays sealed');
  const wrong = openRecord(rec, { keys: new Map([['k2026', randomBytes(32)]]) });
  t.equal(((wrong.data as { alert: { enc: string } }).alert).enc, 'A256GCM', 'a wrong key opens nothing');

  // Moving a sealed body to another record fails authentication (AAD binds seq and path).
  const other = parseRecord(text.split('\n')[1]);
  const swapped = openRecord({ ...other, bodies: { ...other.bodies, 'data.alert': rec.bodies['data.alert'] } }, ring);
  t.equal(((swapped.data as { alert: { enc: string } }).alert).enc, 'A256GCM', 'a body moved to another record does not open');

  const res = await compactSegments(dir, { olderThan: new Date(Date.UTC(2030, 0, 1)) });
  t.ok(res.redacted > 0, 'compaction removes sealed bodies too');
  t.ok((await verifyAuditDir(dir)).ok, 'and the chain still verifies');
});
