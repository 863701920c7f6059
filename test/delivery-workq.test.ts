/**
 * fenliu's delivery work sets (src/delivery/work.ts) against a real private Redis: idempotent
 * enqueue, take with leases (urgent before normal, due times), expired leases returned and a job
 * given up after maxStalled, finish and reschedule as script ops, the shared rate-limit window,
 * and the same on the Cluster path (one bucket per call).
 */
import t from 'tap';
import { Redis } from 'ioredis';
import { bucketOf, keys, setStandalone } from '../src/store/keys.js';
import { alertOfJob, enqueue, enqueueOps, extendLeases, finishOps, giveBackRate, listJobs, counts, reserveRate, rescheduleOps, runOps, take, type DeliveryJobData } from '../src/delivery/work.js';
import { useRedis } from './helpers/redis.js';

const deliver = (alert: string, platformId = 'p'): DeliveryJobData => ({ alertId: `alt_${alert}`, deliveryId: `dlv_${alert}.${platformId}`, platformId, kind: 'deliver' });
const base = { leaseMs: 1_000, maxStalled: 2, recover: false, rotate: 0 };

for (const standalone of [true, false]) {
  t.test(`take, lease, finish (${standalone ? 'one Redis' : 'Cluster path'})`, async (t) => {
    const redis = await useRedis(t);
    const r = new Redis(redis.url);
    t.teardown(() => r.disconnect());
    const prefix = `wq${standalone ? 's' : 'c'}`;
    setStandalone(prefix, standalone);
    t.teardown(() => setStandalone(prefix, false));
    const k = keys(prefix);
    const takeAll = async (o: Partial<typeof base> & { n: number; now?: number }) => {
      const out = { jobs: [] as Awaited<ReturnType<typeof take>>['jobs'], dead: [] as Awaited<ReturnType<typeof take>>['dead'], next: undefined as number | undefined };
      for (const g of k.groups(k.bucketList)) {
        const res = await take(r, k, 'p', g, { ...base, ...o, n: o.n - out.jobs.length });
        out.jobs.push(...res.jobs);
        out.dead.push(...res.dead);
        if (res.nextDueMs !== undefined && (out.next === undefined || res.nextDueMs < out.next)) out.next = res.nextDueMs;
      }
      return out;
    };

    const now = Date.now();
    const ids = ['a1', 'b2', 'c3', 'd4'];
    for (const a of ids) t.ok(await enqueue(r, k, { jobId: deliver(a).deliveryId, data: deliver(a), urgent: false, dueMs: now - 10 }), `added ${a}`);
    t.notOk(await enqueue(r, k, { jobId: deliver('a1').deliveryId, data: deliver('a1'), urgent: true }), 'same job id again (other priority): not added');
    const urge = { ...deliver('e0'), kind: 'urge' as const };
    t.ok(await enqueue(r, k, { jobId: `${urge.deliveryId}.urge.x`, data: urge, urgent: true, dueMs: now - 5 }), 'an urgent follow-up');
    t.ok(await enqueue(r, k, { jobId: deliver('f6').deliveryId, data: deliver('f6'), urgent: false, dueMs: now + 600_000 }), 'a job due later');
    t.match(await counts(r, k, 'p'), { waiting: 5, delayed: 1, active: 0 });

    const first = await takeAll({ n: 2, now });
    t.equal(first.jobs.length, 2);
    // One Redis: one call over every bucket, urgent sets first. Cluster: one call per bucket,
    // urgent first within it (the urgent job is in bucket 0, the first one asked with rotation 0).
    t.equal(first.jobs[0].id, `${urge.deliveryId}.urge.x`, 'urgent before normal');
    t.same(first.jobs[0].data, urge, 'its data from the jobs hash');
    t.equal(first.jobs[0].urgent, true);
    t.same(first.jobs[1].data, deliver(first.jobs[1].id.slice(4, 6)), 'a plain job: data derived from its id');
    t.equal(first.jobs[1].bucket, bucketOf(first.jobs[1].id));
    t.match(await counts(r, k, 'p'), { waiting: 3, delayed: 1, active: 2 });
    t.notOk(await enqueue(r, k, { jobId: first.jobs[1].id, data: first.jobs[1].data, urgent: false }), 'a job being attempted is not added again');

    // Finish one (as the record script would), reschedule the other with an attempt counted.
    await runOps(r, finishOps(k, first.jobs[0]));
    t.equal(await r.hlen(k.jobs(bucketOf(urge.deliveryId))), 0, 'the follow-up data is gone');
    await runOps(r, rescheduleOps(k, first.jobs[1], now + 30_000, true));
    const rest = await takeAll({ n: 10, now });
    t.equal(rest.jobs.length, 3, 'the rest that is due');
    t.equal(rest.next, now + 30_000, 'and the earliest due time left');
    const later = await takeAll({ n: 10, now: now + 30_000 });
    t.equal(later.jobs.length, 1);
    t.equal(later.jobs[0].attemptsMade, 1, 'the reschedule counted');
    t.equal(later.jobs[0].fields, true);

    // Leases: extend one; the others expire and go back (urgent), counted as stalls.
    await extendLeases(r, k, [later.jobs[0]], 100_000);
    const back = await takeAll({ n: 10, now: now + 40_000, recover: true });
    t.equal(back.jobs.length, 3, 'expired leases taken again');
    t.ok(back.jobs.every((j) => j.stalls === 1 && j.urgent), 'each with one stall, from the urgent set');
    await takeAll({ n: 10, now: now + 50_000, recover: true });
    const dead = await takeAll({ n: 10, now: now + 60_000, recover: true });
    t.equal(dead.dead.length, 3, 'beyond maxStalled: handed back as dead');
    t.equal(dead.jobs.length, 0);
    t.equal((await listJobs(r, k, 'p')).filter((j) => j.state === 'active').map((j) => j.id).join(), later.jobs[0].id, 'only the extended job is left (active)');
    await runOps(r, finishOps(k, later.jobs[0]));
    t.match(await counts(r, k, 'p'), { waiting: 0, delayed: 1, active: 0 });

    // Enqueue folded into a caller's MULTI, for a job id that cannot exist yet.
    await runOps(r, enqueueOps(k, { jobId: 'dlv_g7.p.r1', data: deliver('g7'), urgent: true }));
    const j = (await listJobs(r, k, 'p')).find((x) => x.id === 'dlv_g7.p.r1');
    t.match(j, { name: 'deliver', priority: 1, data: deliver('g7') });
    t.throws(() => enqueueOps(k, { jobId: 'dlv_zz.p', data: deliver('g7'), urgent: false }), /does not start with/);
  });
}

t.test('one Redis: a take gets the earliest due jobs over all buckets, however they are spread', async (t) => {
  const redis = await useRedis(t);
  const r = new Redis(redis.url);
  t.teardown(() => r.disconnect());
  setStandalone('wqm', true);
  t.teardown(() => setStandalone('wqm', false));
  const k = keys('wqm');
  const now = Date.now();
  // 60 jobs: the 25 earliest mostly in one bucket (a take reads a few members per bucket at a
  // time, so this one is read again and again), the rest spread, some not due yet.
  const chars = '0123456789abcdefghjkmnpqrstvwxyz';
  const jobs: { id: string; due: number }[] = [];
  for (let i = 0; i < 60; i++) {
    const alert = `m${String(i).padStart(2, '0')}${i < 20 ? '5' : chars[i % 32]}`;
    const due = i < 50 ? now - 100_000 + i * 10 : now + 60_000 + i;
    jobs.push({ id: deliver(alert).deliveryId, due });
    await enqueue(r, k, { jobId: deliver(alert).deliveryId, data: deliver(alert), urgent: false, dueMs: due });
  }
  for (const n of [25, 20, 5]) {
    const got = await take(r, k, 'p', k.bucketList, { ...base, n, now, rotate: n });
    const want = jobs.filter((j) => j.due <= now).slice(0, n);
    t.same(got.jobs.map((j) => j.id).sort(), want.map((j) => j.id).sort(), `the ${n} earliest due`);
    jobs.splice(0, jobs.length, ...jobs.filter((j) => !want.includes(j)));
  }
  const last = await take(r, k, 'p', k.bucketList, { ...base, n: 10, now, rotate: 3 });
  t.equal(last.jobs.length, 0, 'nothing due is left');
  t.equal(last.nextDueMs, Math.min(...jobs.map((j) => j.due)), 'the earliest due time left');
});

t.test('job ids stay in their delivery bucket; the alert of a plain job', async (t) => {
  for (const d of ['dlv_01hx4k.p1', 'fb_01hx4m.3', 'esc_01hx4z.12']) {
    for (const suffix of ['', '.r2', '.urge.alt_x', '.update.3', '.redeliver.1', '.cancel']) t.equal(bucketOf(d + suffix), bucketOf(d), `${d}${suffix}`);
    t.equal(alertOfJob(d), `alt_${d.slice(d.indexOf('_') + 1, d.indexOf('.'))}`);
  }
});

t.test('rate limit: one window shared by every caller', async (t) => {
  const redis = await useRedis(t);
  const r = new Redis(redis.url);
  t.teardown(() => r.disconnect());
  const k = keys('rl');
  const a = await reserveRate(r, k, 'p', 4, 5, 10_000);
  const b = await reserveRate(r, k, 'p', 4, 5, 10_000);
  t.equal(a.granted + b.granted, 5, 'two callers get at most max together');
  const c = await reserveRate(r, k, 'p', 1, 5, 10_000);
  t.equal(c.granted, 0);
  t.ok(c.waitMs > 0 && c.waitMs <= 10_000, 'and wait for the window');
  await giveBackRate(r, k, 'p', 2);
  t.equal((await reserveRate(r, k, 'p', 5, 5, 10_000)).granted, 2, 'what was given back is granted again');
});
