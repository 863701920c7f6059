/** settledWithin (src/bounded.ts): the one bound the stops use when Redis may never answer. */
import t from 'tap';
import { settledWithin } from '../src/bounded.js';

t.test('settled in time, resolved or rejected: true; never: false after the bound', async (t) => {
  t.equal(await settledWithin(Promise.resolve(1), 1_000), true);
  t.equal(await settledWithin(Promise.reject(new Error('Redis away')), 1_000), true, 'a rejection counts and is swallowed');
  const at = Date.now();
  t.equal(await settledWithin(new Promise(() => undefined), 50), false);
  t.ok(Date.now() - at >= 45, 'waited the bound');
  t.notOk(process.getActiveResourcesInfo().includes('Timeout'), 'no timer left behind');
});
