import t from 'tap';
import { useRedis } from './helpers/redis.js';
import { KEYS, LogCapture, alert, api, startTestFenliu } from './helpers/fenliu.js';
import { createLogger, LazyChildLogger } from '../src/log.js';

const PHONE = '13912345678';
const PHONE_FORMATTED = '+86 139-8765-4321';
const NAME = '欧阳娜娜';
const PARTY_NAME = '司马光明';
const ID_NUMBER = '420204199001011234';
const SECRETS = [PHONE, PHONE_FORMATTED, '13987654321', NAME, PARTY_NAME, ID_NUMBER, KEYS.sourceA, KEYS.sourceB, 'wrong-key-abc123'];

t.test('no phone, name, ID number or API key reaches the logs', async (t) => {
  const redis = await useRedis(t);
  const logs = new LogCapture();
  const f = await startTestFenliu({ redisUrl: redis.url, logStream: logs, logLevel: 'trace' });
  t.teardown(() => f.stop());
  const a = api(f.url, KEYS.sourceA);
  const personal = {
    caller: { name: NAME, phone: PHONE },
    parties: [
      { role: 'customer', name: NAME, phone: PHONE, idNumber: ID_NUMBER },
      { role: 'merchant', name: PARTY_NAME, phone: PHONE_FORMATTED },
    ],
    description: `${NAME}（身份证 ${ID_NUMBER}，电话 ${PHONE}）与${PARTY_NAME}发生纠纷`,
  };
  t.equal((await a.post('/v1/alerts', alert('LOG-1', personal))).status, 202);
  t.equal((await a.post('/v1/alerts', alert('LOG-1', personal))).status, 200, 'replay');
  t.equal((await a.post('/v1/alerts', alert('LOG-1', { ...personal, summary: 'changed' }))).status, 409, 'conflict');
  // Errors that carry the personal data in the request: schema violation, police-only, wrong source.
  t.equal((await a.post('/v1/alerts', alert('LOG-2', { ...personal, priority: 'high' }))).status, 422);
  t.equal((await a.post('/v1/alerts', alert('LOG-3', { ...personal, category: 'violence.assault' }))).status, 422);
  t.equal((await api(f.url, KEYS.sourceB).post('/v1/alerts', alert('LOG-4', personal))).status, 403);
  t.equal((await api(f.url, 'wrong-key-abc123').post('/v1/alerts', alert('LOG-5', personal))).status, 401);
  t.equal((await a.post('/v1/alerts', undefined, { raw: `{"caller":{"phone":"${PHONE}"` })).status, 400);
  t.equal((await a.get(`/v1/alerts?category=${PHONE}`)).status, 200);

  // Redis goes away: the warning logged for the 503 must not carry the alert either.
  await redis.stop();
  t.equal((await a.post('/v1/alerts', alert('LOG-6', personal))).status, 503);

  t.ok(logs.lines.length >= 10, `logs were captured (${logs.lines.length} lines)`);
  const requestLines = logs.lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request');
  t.ok(requestLines.length >= 9, 'one line per request');
  t.ok(requestLines.every((l) => typeof l.reqId === 'string' && l.reqId.length > 0), 'every request line has a request id');
  t.ok(requestLines.some((l) => l.key === 'a-2026a'), 'the key id (not the key) is logged');
  for (const s of SECRETS) t.notOk(logs.text.includes(s), `"${s}" appears nowhere in the logs`);
  // Digits only, in case a formatter reflowed the number.
  t.notOk(logs.text.replace(/[^0-9]/g, ' ').includes('13912345678'));
});

t.test('the logger itself redacts known fields and scrubs free text', async (t) => {
  const logs = new LogCapture();
  const log = createLogger('info', logs);
  log.info({ req: { headers: { authorization: `Bearer ${KEYS.sourceA}`, 'x-api-key': KEYS.sourceB } } }, 'incoming');
  log.info({ alert: { caller: { name: NAME, phone: PHONE }, parties: [{ name: PARTY_NAME, idNumber: ID_NUMBER }] } }, 'alert');
  log.info(`call back ${PHONE_FORMATTED} or 027-88886666 about ${ID_NUMBER}`);
  log.error({ err: new Error(`failed for ${PHONE}`) }, 'boom');
  t.equal(logs.lines.length, 4);
  for (const s of [...SECRETS, '027-88886666']) t.notOk(logs.text.includes(s), `"${s}" redacted`);
  t.match(logs.text, /\[redacted\]/);
  t.match(logs.text, /\[phone\]/);
  t.match(logs.text, /\[id\]/);
});

t.test('censoring by path: every REDACT_PATHS shape, at any top-level key, without touching the logged object', async (t) => {
  const logs = new LogCapture();
  const log = createLogger('info', logs);
  const freeze = <T>(o: T): T => {
    if (o && typeof o === 'object') {
      Object.freeze(o);
      Object.values(o).forEach(freeze);
    }
    return o;
  };
  const logged = freeze({
    req: { headers: { authorization: 'Bearer k1', 'x-api-key': 'k2', cookie: 'c=1', host: 'fenliu.local' } },
    headers: { authorization: 'Bearer k3', 'x-api-key': 'k4' },
    anything: { caller: { name: NAME, phone: 'p1', confidential: true }, parties: [{ role: 'customer', name: PARTY_NAME, phone: 'p2', idNumber: 'i1' }, { role: 'merchant' }] },
    caller: { name: NAME, phone: 'p3' },
    alert: { caller: { x: 1 }, parties: [], summary: 'kept' },
    secret: 's1',
    password: 'pw1',
    token: 't1',
    nested: { secret: 's2', password: 'pw2', token: 't2', deeper: { secret: 'kept-below-one-level' } },
  });
  const before = JSON.stringify(logged);
  log.info(logged, 'paths');
  log.info('interpolated %o', { secret: 's3', x: { caller: { name: NAME } } });
  log.child({ reqId: PHONE }).info('child bindings are scrubbed');
  t.equal(JSON.stringify(logged), before, 'the logged object itself is not changed');
  const [line, interpolated, child] = logs.lines.map((l) => JSON.parse(l));
  t.same(line.req.headers, { authorization: '[redacted]', 'x-api-key': '[redacted]', cookie: '[redacted]', host: 'fenliu.local' });
  t.same(line.headers, { authorization: '[redacted]', 'x-api-key': '[redacted]' });
  t.same(line.anything, { caller: { name: '[redacted]', phone: '[redacted]', confidential: true }, parties: [{ role: 'customer', name: '[redacted]', phone: '[redacted]', idNumber: '[redacted]' }, { role: 'merchant' }] });
  t.same(line.caller, { name: '[redacted]', phone: '[redacted]' });
  t.same(line.alert, { caller: '[redacted]', parties: '[redacted]', summary: 'kept' });
  t.same([line.secret, line.password, line.token], ['[redacted]', '[redacted]', '[redacted]']);
  t.same(line.nested, { secret: '[redacted]', password: '[redacted]', token: '[redacted]', deeper: { secret: 'kept-below-one-level' } }, 'as pino paths: * is one level');
  t.notOk(interpolated.msg.includes('s3') || interpolated.msg.includes(NAME), 'interpolated objects are censored too');
  t.equal(child.reqId, '[phone]');
  for (const s of [NAME, PARTY_NAME]) t.notOk(logs.text.includes(s), `${s} censored everywhere`);
});

t.test('a request logger becomes a child only when used, and writes what a child writes', async (t) => {
  const logs = new LogCapture();
  const log = createLogger('info', logs);
  let made = 0;
  const child = log.child.bind(log);
  log.child = ((b: Record<string, unknown>, o?: Record<string, unknown>) => {
    made++;
    return child(b, o);
  }) as typeof log.child;
  const lazy = new LazyChildLogger(log, { reqId: PHONE }, {});
  t.equal(lazy.level, 'info');
  t.equal(made, 0, 'no child before something logs');
  lazy.debug('below the level');
  lazy.warn({ status: 503 }, 'through the request logger');
  lazy.error(new Error(`failed for ${PHONE}`));
  t.equal(made, 1, 'one child, made on first use');
  log.child({ reqId: PHONE }).warn({ status: 503 }, 'through the request logger');
  const [viaLazy, viaError, viaChild] = logs.lines.map((l) => JSON.parse(l));
  for (const l of [viaLazy, viaChild]) delete l.time;
  t.same(viaLazy, viaChild, 'the same line as a child of the root logger');
  t.equal(viaError.reqId, '[phone]');
  t.notOk(logs.text.includes(PHONE), 'bindings and messages scrubbed');
});
