/**
 * The embedded redis-server's data folder lock: a second fenliu on the same folder is refused
 * before it spawns anything; a lock left by processes that no longer run is taken over; stop()
 * releases it. Real redis-server children, no mocks.
 */
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataDirInUseError, startEmbeddedRedis } from '../src/redis/embedded.js';

const dir = mkdtempSync(join(tmpdir(), 'fenliu-lock-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const lock = join(dir, 'fenliu.lock');

t.test('one fenliu per data folder', async (t) => {
  const first = await startEmbeddedRedis(dir);
  t.teardown(() => first.stop());
  const held = JSON.parse(readFileSync(lock, 'utf8'));
  t.same(held, { pid: process.pid, redisPid: first.child.pid, port: first.port }, 'the lock names fenliu, its redis-server and its port');
  const second = await startEmbeddedRedis(dir).then(
    () => undefined,
    (err: unknown) => err,
  );
  t.type(second, DataDirInUseError);
  t.match((second as Error).message, new RegExp(`is in use by another fenliu \\(pid ${process.pid}, its redis-server on 127\\.0\\.0\\.1:${first.port}\\)`));
  t.same(JSON.parse(readFileSync(lock, 'utf8')), held, 'the refused start left the lock alone');
  await first.stop();
  t.notOk(existsSync(lock), 'stop() releases the lock');
});

t.test('a stale lock (neither process runs) is taken over', async (t) => {
  // A pid far above pid_max on Linux (4194304) cannot be running.
  writeFileSync(lock, JSON.stringify({ pid: 99_999_999, redisPid: 99_999_998, port: 1 }));
  const r = await startEmbeddedRedis(dir);
  t.teardown(() => r.stop());
  t.equal(JSON.parse(readFileSync(lock, 'utf8')).pid, process.pid);
  await r.stop();
  t.notOk(existsSync(lock));
});
