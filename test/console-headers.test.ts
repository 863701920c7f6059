import t from 'tap';
import { useRedis } from './helpers/redis.js';
import { KEYS, api, startTestFenliu } from './helpers/fenliu.js';

t.test('console pages carry helmet security headers and a CSP without inline script', async (t) => {
  const redis = await useRedis(t);
  const f = await startTestFenliu({ redisUrl: redis.url });
  t.teardown(() => f.stop());
  const page = await api(f.url).get('/console');
  const csp = String(page.headers['content-security-policy'] ?? '');
  t.match(csp, /script-src 'self'(;|$)/, 'scripts only from the console itself');
  t.match(csp, /style-src 'self'(;|$)/, 'styles only from the console itself');
  t.notMatch(csp, /unsafe-inline|unsafe-eval/, 'no inline script or style, no eval');
  t.match(csp, /frame-ancestors 'none'/);
  t.equal(page.headers['x-frame-options'], 'DENY');
  t.equal(page.headers['x-content-type-options'], 'nosniff');
  t.equal(page.headers['referrer-policy'], 'no-referrer');
  const apiRes = await api(f.url, KEYS.auditor).get('/v1/alerts');
  t.equal(apiRes.headers['content-security-policy'], undefined, 'the JSON API is not given the page policy');
});
