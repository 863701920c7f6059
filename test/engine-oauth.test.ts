import t from 'tap';
import { createServer, type Server } from 'node:http';
import { startRedis } from './helpers/redis.js';
import { KEYS, alert, api, startTestFenliu, testConfig } from './helpers/fenliu.js';
import { until } from './helpers/engine.js';

function listen(s: Server): Promise<string> {
  return new Promise((r) => s.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(s.address() as { port: number }).port}`)));
}

t.test('OAuth2: a token the platform refuses with 401 is dropped and a new one fetched', async (t) => {
  let issued = 0;
  const tokens = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      issued++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ access_token: `t${issued}`, expires_in: 3600 }));
    });
  });
  const seen: string[] = [];
  const platform = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      seen.push(String(req.headers.authorization));
      // The first token was revoked on the platform's side before it expired.
      if (req.headers.authorization !== 'Bearer t2') {
        res.writeHead(401, { 'content-type': 'application/json' });
        return res.end('{"code":401,"msg":"token revoked"}');
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ code: 0, msg: '接收成功', data: { 工单编号: 'GD-OAUTH-1' } }));
    });
  });
  const [tokenUrl, url] = await Promise.all([listen(tokens), listen(platform)]);
  const redis = await startRedis();
  const doc = testConfig({
    platforms: [
      {
        id: 'p-12345',
        adapter: 'hotline-12345',
        url,
        options: { defaultCategoryCode: '9999' },
        auth: { type: 'oauth2', tokenUrl: `${tokenUrl}/token`, clientId: 'fenliu', clientSecret: 'oauth-secret-for-tests' },
        retry: { delaysMs: [50, 50], jitter: 'none' },
      },
    ],
    routes: [{ id: 'default', default: true, targets: ['p-12345'] }],
  });
  const f = await startTestFenliu({ redisUrl: redis.url, cfg: doc, role: 'all' });
  t.teardown(async () => {
    await f.stop();
    await redis.stop();
    tokens.close();
    platform.close();
  });
  const res = await api(f.url, KEYS.sourceA).post('/v1/alerts', alert('OAUTH-1'));
  const id = res.body.deliveries[0].id;
  const d = await until(async () => {
    const x = (await api(f.url, KEYS.admin).get(`/v1/deliveries/${id}`)).body;
    return x.state === 'delivered' || x.state === 'failed' ? x : undefined;
  }, 10_000, 'settled');
  t.equal(d.state, 'delivered', 'delivered with the new token');
  t.same(seen, ['Bearer t1', 'Bearer t2'], 'the refused token was not reused');
  t.equal(issued, 2, 'one new token fetched');
  t.match(d.attemptLog[0].reason, /401.*token dropped/);
});
