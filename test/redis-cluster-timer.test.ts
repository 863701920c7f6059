/**
 * The guard in src/redis/connect.ts against ioredis 6.0's slots-refresh timer re-armed after a
 * `disconnect()` (it kept a stopped process alive after a Cluster failover): a timer set while the
 * client is being closed by us is cleared at once, on clients fenliu opens and on their
 * duplicates. Drives ioredis's own `resetNodesRefreshInterval` (what the late refresh calls), so
 * this fails if the internals the guard relies on change.
 */
import t from 'tap';
import { Cluster } from 'ioredis';
import { openRedis } from '../src/redis/connect.js';
import { freePort } from '../src/redis/embedded.js';

type Internals = { manuallyClosing?: boolean; slotsTimer: NodeJS.Timeout | null; resetNodesRefreshInterval(): void; clearNodesRefreshInterval(): void };

t.test('a slots-refresh timer set while closing is cleared; otherwise kept', async (t) => {
  const port = await freePort();
  const opened = openRedis({ kind: 'cluster', nodes: [{ host: '127.0.0.1', port }] } as never, 'api', { lazyConnect: true }) as unknown as Cluster;
  opened.on('error', () => undefined);
  const dup = opened.duplicate();
  dup.on('error', () => undefined);
  t.teardown(() => {
    opened.disconnect();
    dup.disconnect();
  });
  for (const [name, c] of [['opened', opened], ['duplicate', dup]] as const) {
    const x = c as unknown as Internals;
    t.equal(typeof x.resetNodesRefreshInterval, 'function', `${name}: ioredis still has resetNodesRefreshInterval`);
    x.manuallyClosing = false;
    x.resetNodesRefreshInterval();
    t.ok(x.slotsTimer, `${name}: an open client keeps its refresh timer`);
    x.clearNodesRefreshInterval();
    t.equal(x.slotsTimer, null, `${name}: cleared by ioredis`);
    // What a refresh that ends after disconnect() does: re-arm.
    x.manuallyClosing = true;
    x.resetNodesRefreshInterval();
    t.equal(x.slotsTimer, null, `${name}: no timer once closing`);
  }
});
