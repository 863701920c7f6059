/**
 * Clock skew between fenliu and a platform: signed status callbacks whose timestamps are off by
 * up to the tolerance are accepted; beyond it they are refused (401); a replayed message is
 * refused (409) even within the window.
 */
import t from 'tap';
import { randomUUID } from 'node:crypto';
import { standardWebhookSignature } from '../../src/delivery/http.js';
import { startRedis } from '../helpers/redis.js';
import { startTestFenliu } from '../helpers/fenliu.js';
import { KEYS, Receiver, WEBHOOK_OPTIONS, alert, api, faultConfig, inspector, settle } from './harness.js';
import { request } from 'undici';

const SECRET = 'whsec_Y2FsbGJhY2stc2VjcmV0LWZvci1za2V3LXRlc3RzLTAxMjM0NTY3ODk=';
const TOLERANCE_S = 60;

t.test('callback timestamps within ± tolerance pass; beyond it and replays are refused', async (t) => {
  const redis = await startRedis();
  const receiver = await new Receiver().listen();
  const ins = inspector(redis.url);
  t.teardown(async () => {
    ins.close();
    await receiver.close();
    await redis.stop();
  });
  const doc = faultConfig(receiver.url, {
    platform: {
      callback: { secret: SECRET, toleranceSeconds: TOLERANCE_S },
      options: { ...WEBHOOK_OPTIONS, callback: { statePath: 'state', stateMap: { ACCEPTED: 'accepted', WORKING: 'in_progress', DONE: 'resolved' }, deliveryIdPath: 'ref', eventIdPath: 'eventId' } },
    },
  });
  const f = await startTestFenliu({ redisUrl: redis.url, cfg: doc, role: 'all' });
  t.teardown(() => f.stop());

  const res = await api(f.url, KEYS.sourceA).post('/v1/alerts', alert('SKEW-1', { category: 'utility.water-leak' }));
  t.equal(res.status, 202);
  const id = res.body.deliveries[0].id;
  await settle('clock-skew (delivery)', ins, receiver, [id], 30_000);

  const post = async (state: string, skewS: number, msgId = `msg_${randomUUID()}`) => {
    const body = JSON.stringify({ eventId: `${state}-${msgId}`, ref: id, state });
    const ts = Math.floor(Date.now() / 1000) + skewS;
    const r = await request(`${f.url}/v1/platforms/p1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'webhook-id': msgId, 'webhook-timestamp': String(ts), 'webhook-signature': standardWebhookSignature(SECRET, msgId, ts, body) },
      body,
    });
    const text = await r.body.text();
    return { status: r.statusCode, code: text ? (JSON.parse(text) as { code?: string }).code : undefined, msgId };
  };
  const margin = 5;
  const outcomes: Record<string, number> = {};
  const count = (k: string) => (outcomes[k] = (outcomes[k] ?? 0) + 1);

  const ahead = await post('ACCEPTED', TOLERANCE_S - margin);
  t.equal(ahead.status, 200, `platform clock ${TOLERANCE_S - margin} s ahead: accepted`);
  count(String(ahead.status));
  const tooFarAhead = await post('WORKING', TOLERANCE_S + margin);
  t.same([tooFarAhead.status, tooFarAhead.code], [401, 'FENLIU_ERR_BAD_SIGNATURE'], `${TOLERANCE_S + margin} s ahead: refused`);
  count(String(tooFarAhead.status));
  const tooFarBehind = await post('WORKING', -(TOLERANCE_S + margin));
  t.same([tooFarBehind.status, tooFarBehind.code], [401, 'FENLIU_ERR_BAD_SIGNATURE'], `${TOLERANCE_S + margin} s behind: refused`);
  count(String(tooFarBehind.status));
  const behind = await post('WORKING', -(TOLERANCE_S - margin));
  t.equal(behind.status, 200, `platform clock ${TOLERANCE_S - margin} s behind: accepted`);
  count(String(behind.status));
  const replay = await post('DONE', 0, ahead.msgId);
  t.same([replay.status, replay.code], [409, 'FENLIU_ERR_REPLAYED'], 'a message id seen before is refused');
  count(String(replay.status));
  const done = await post('DONE', 0);
  t.equal(done.status, 200);
  count(String(done.status));
  t.equal(await ins.state(id), 'resolved', 'only the in-tolerance callbacks moved the case');
  process.stdout.write(`# fault ${JSON.stringify({ scenario: 'clock-skew', accepted: 1, delivered: 1, duplicated: 0, lost: 0, callbacks: outcomes, toleranceS: TOLERANCE_S })}\n`);
});
