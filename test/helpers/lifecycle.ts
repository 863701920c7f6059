/**
 * Test helper for the case lifecycle: a private Redis, sandbox platforms (any kind, Open311 batch
 * mode, a 110 feedback receiver), and fenliu (role `all`) wired to them with short retries.
 *
 *   const env = await startLifecycleEnv(t, { platforms: [{ id: 'p1', kind: 'hotline-12345', callback: { secret } }] });
 *   const { alertId, deliveries } = await env.submit();
 *   const d = await env.waitFor(deliveries.p1, 'delivered');
 *   await env.callback('p1', { 工单编号: d.remoteTicketId, 工单状态: '签收' });
 *
 * Real Redis, BullMQ and HTTP; waiting polls Redis, never sleeps blindly.
 */
import { Redis } from 'ioredis';
import { standardWebhookSignature } from '../../src/delivery/http.js';
import { startSandbox, type Sandbox, type SandboxKind } from '../../src/sandbox/index.js';
import { keys as redisKeys } from '../../src/store/keys.js';
import { ADAPTER_OPTIONS, FAST, until } from './engine.js';
import { KEYS, SOURCE_A, alert, api, sha256hex, startTestFenliu, testConfig, type ApiResponse, type ConfigDoc, type TestFenliu } from './fenliu.js';
import { startRedis, type TestRedis } from './redis.js';

export { KEYS, SOURCE_A, alert, api, until };

export const FEEDBACK_ID = `fb.${SOURCE_A}`;

export interface LcPlatform {
  id: string;
  kind: SandboxKind;
  open311Mode?: 'realtime' | 'batch';
  adapter?: string;
  options?: Record<string, unknown>;
  /** Any other platform config keys (callback, poll, sla, keys, retry, ...). */
  [k: string]: unknown;
}

export interface LcEnvOptions {
  platforms: LcPlatform[];
  routes?: unknown[];
  sla?: Record<string, string>;
  repeat?: Record<string, unknown>;
  /** Give source A a feedback endpoint (a sandbox feedback-110 receiver); extra feedback keys. */
  feedback?: boolean | Record<string, unknown>;
  redis?: TestRedis;
  prefix?: string;
}

let seq = 0;

export async function startLifecycleEnv(t: { teardown(fn: () => unknown): void }, o: LcEnvOptions) {
  const redis = o.redis ?? (await startRedis());
  const sbPlatforms = o.platforms.map((p) => ({ id: p.id, kind: p.kind, open311Mode: p.open311Mode }));
  if (o.feedback) sbPlatforms.push({ id: FEEDBACK_ID, kind: 'feedback-110', open311Mode: undefined });
  const sandbox: Sandbox = await startSandbox({ platforms: sbPlatforms });
  const platforms = o.platforms.map((p) => {
    const { kind, open311Mode: _m, adapter, options, ...rest } = p;
    return { ...FAST, ...rest, adapter: adapter ?? kind, url: sandbox.get(p.id).url, options: options ?? ADAPTER_OPTIONS[adapter ?? kind] ?? {} };
  });
  const base = testConfig();
  if (o.feedback) {
    const extra = typeof o.feedback === 'object' ? o.feedback : {};
    base.sources[0].feedback = { url: sandbox.get(FEEDBACK_ID).url, ...FAST, ...extra };
  }
  const doc: ConfigDoc = testConfig({
    sources: base.sources,
    platforms,
    routes: o.routes ?? [{ id: 'default', default: true, targets: o.platforms.map((p) => p.id) }],
    redis: { prefix: o.prefix ?? `lc${process.pid}x${++seq}` },
    ...(o.sla ? { sla: o.sla } : {}),
    // Short test deadlines should fire close to when they are due.
    engine: { slaSweepMs: 100 },
    ...(o.repeat ? { repeat: o.repeat } : {}),
  });
  let f: TestFenliu = await startTestFenliu({ redisUrl: redis.url, cfg: doc, role: 'all' });
  const r = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  r.on('error', () => undefined);
  const k = redisKeys(f.cfg.redis.prefix);
  let n = 0;

  const delivery = async (id: string): Promise<Record<string, any>> => {
    const h: Record<string, any> = await r.hgetall(k.delivery(id));
    if (h.overdue) h.overdue = JSON.parse(h.overdue);
    return h;
  };
  const history = async (id: string): Promise<any[]> => (await r.lrange(k.history(id), 0, -1)).map((x) => JSON.parse(x));

  let closed = false;
  const env = {
    redis,
    sandbox,
    doc,
    r,
    k,
    get f() {
      return f;
    },
    get url() {
      return f.url;
    },
    source: () => api(f.url, KEYS.sourceA),
    admin: () => api(f.url, KEYS.admin),
    auditor: () => api(f.url, KEYS.auditor),
    /** Posts an alert of source A; the 202 body's delivery ids by platform. */
    async submit(over: Record<string, unknown> = {}, alertId = `LC-${process.pid}-${++n}-${seq}`) {
      const res = await api(f.url, KEYS.sourceA).post('/v1/alerts', alert(alertId, over));
      if (res.status !== 202) throw new Error(`submit: ${res.status} ${res.text}`);
      const deliveries: Record<string, string> = {};
      for (const d of res.body.deliveries) deliveries[d.platformId] = d.id;
      return { alertId: res.body.id as string, sourceAlertId: alertId, deliveries, res };
    },
    delivery,
    history,
    async waitFor(id: string, state: string | string[], timeoutMs = 10_000): Promise<Record<string, any>> {
      const want = Array.isArray(state) ? state : [state];
      await until(async () => want.includes((await r.hget(k.delivery(id), 'state')) ?? ''), timeoutMs, `${id} to be ${want.join('|')} (now ${await r.hget(k.delivery(id), 'state')})`);
      return delivery(id);
    },
    /** Posts a callback body to fenliu, signed with the platform's callback secret when it has one. */
    async callback(platformId: string, body: unknown, opts: { key?: string; msgId?: string; timestamp?: number; secret?: string; signature?: string } = {}): Promise<ApiResponse> {
      const text = typeof body === 'string' ? body : JSON.stringify(body);
      const p = f.cfg.platforms.find((x) => x.id === platformId) as { callback?: { secret?: string } } | undefined;
      const secret = opts.secret ?? p?.callback?.secret;
      const headers: Record<string, string> = {};
      if (secret) {
        const id = opts.msgId ?? `msg_${process.pid}_${++n}_${Date.now()}`;
        const ts = opts.timestamp ?? Math.floor(Date.now() / 1000);
        headers['webhook-id'] = id;
        headers['webhook-timestamp'] = String(ts);
        headers['webhook-signature'] = opts.signature ?? standardWebhookSignature(secret, id, ts, text);
      }
      return api(f.url, opts.key).post(`/v1/platforms/${platformId}/events`, undefined, { raw: text, headers, contentType: 'application/json' });
    },
    /** Stops this fenliu (the sandbox and Redis stay) and starts a new one on the same Redis. */
    async restart(): Promise<void> {
      await f.stop();
      f = await startTestFenliu({ redisUrl: redis.url, cfg: doc, role: 'all' });
    },
    async stopFenliu(): Promise<void> {
      await f.stop();
    },
    async startFenliu(): Promise<void> {
      f = await startTestFenliu({ redisUrl: redis.url, cfg: doc, role: 'all' });
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await sandbox.close().catch(() => undefined);
      await f.stop().catch(() => undefined);
      r.disconnect();
      if (!o.redis) await redis.stop().catch(() => undefined);
    },
  };
  t.teardown(() => env.close());
  return env;
}

export type LcEnv = Awaited<ReturnType<typeof startLifecycleEnv>>;

/** A platform key (scope events:write) for config and its plain text for requests. */
export function platformKey(id: string): { plain: string; config: { id: string; sha256: string; scopes: string[] } } {
  const plain = `test-platform-key-${id}`;
  return { plain, config: { id: `${id}-key`, sha256: sha256hex(plain), scopes: ['events:write'] } };
}

/** A 12345 callback body (工单状态 in Chinese, as the platform sends it). */
export function hotlineEvent(ticket: string, status: string, eventId: string, extra: Record<string, unknown> = {}) {
  return { eventId, 工单编号: ticket, 工单状态: status, 时间: new Date().toISOString(), ...extra };
}

/** The platform's word for each canonical state, 12345 vocabulary. */
export const HOTLINE_WORD: Record<string, string> = {
  accepted: '签收',
  in_progress: '办理中',
  resolved: '办结',
  closed: '回访',
  returned: '退回',
  rejected: '不予受理',
  reopened: '重新办理',
  cancelled: '撤单',
};
