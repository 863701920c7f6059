import { randomUUID } from 'node:crypto';
import { standardWebhookSignature } from '../delivery/http.js';
import type { Sandbox } from './index.js';
import { sendCallback } from './index.js';
import type { SandboxKind, SandboxTicket } from './protocols.js';

export interface AutopilotOptions {
  /** fenliu's base URL; callbacks go to `${fenliuUrl}/v1/platforms/:id/events`. */
  fenliuUrl: string;
  /** Callback secrets per platform id (Standard Webhooks signing). */
  secrets: Record<string, string | undefined>;
  /** Delay from ticket creation to 签收 (accepted). Default 5 s. */
  acceptAfterMs?: number;
  /** Delay from ticket creation to 办结 (resolved). Default 20 s. */
  resolveAfterMs?: number;
  onError?: (err: Error) => void;
}

type Step = 'accepted' | 'resolved';

/** Each kind's own callback body for a step, as its adapter's parseCallback reads it. */
function callbackBody(kind: SandboxKind, t: SandboxTicket, step: Step, n: string, at: string): unknown {
  switch (kind) {
    case 'hotline-12345':
      return { eventId: `CB-${t.id}-${n}`, 工单编号: t.id, 外部编号: t.externalId, 工单状态: step === 'accepted' ? '签收' : '办结', 时间: at, 承办单位: '下陆区市场监督管理局', 处理意见: step === 'resolved' ? '已联系双方，达成调解协议' : undefined };
    case 'grid-governance':
      return { id: `cb-${t.id}-${n}`, eventId: t.id, status: step === 'accepted' ? 'ACCEPTED' : 'FINISHED', time: at, remark: step === 'resolved' ? '双方签订调解协议' : '网格员已签收' };
    case 'city-ops':
      return { eventId: `ev-${t.id}-${n}`, caseId: t.id, externalId: t.externalId, status: step === 'accepted' ? 'acknowledged' : 'resolved', at, comment: step === 'resolved' ? 'Handled on site' : undefined };
    default:
      return undefined;
  }
}

/**
 * Plays the departments behind the sandbox platforms, so `npm start` shows a whole case: each new
 * ticket is signed for, then resolved, by signed callbacks (or, for Open311, by a status the next
 * poll reads).
 */
export function startAutopilot(sandbox: Sandbox, kinds: Record<string, SandboxKind>, o: AutopilotOptions): () => void {
  // Sandbox ticket ids start again at 1 when the demo restarts while Redis keeps what it saw:
  // a per-run tag keeps event and message ids unique, or fenliu would take them as duplicates.
  const run = randomUUID().slice(0, 8);
  const timers = new Set<NodeJS.Timeout>();
  const seen = new Set<string>();
  const later = (ms: number, fn: () => Promise<void>) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn().catch((err) => o.onError?.(err as Error));
    }, ms);
    timers.add(t);
  };
  const unsubscribe: (() => void)[] = [];
  for (const [id, platform] of sandbox.platforms) {
    const kind = kinds[id];
    const onRequest = () => {
      for (const t of platform.tickets.values()) {
        if (seen.has(`${id}/${t.id}`)) continue;
        seen.add(`${id}/${t.id}`);
        const steps: [Step, number][] = [
          ['accepted', o.acceptAfterMs ?? 5_000],
          ['resolved', o.resolveAfterMs ?? 20_000],
        ];
        steps.forEach(([step, ms], i) =>
          later(ms, async () => {
            if (kind === 'open311') {
              // GeoReport v2 itself only has open|closed, and open is merely received; servers
              // with a sign-for step report an extended status (config/demo.yaml maps it).
              platform.setTicketStatus(t.id, step === 'accepted' ? 'acknowledged' : 'closed', step === 'resolved' ? 'Handled on site' : 'Assigned');
              return;
            }
            const body = callbackBody(kind, t, step, `${run}-${i + 1}`, new Date().toISOString());
            if (!body) return;
            const text = JSON.stringify(body);
            const headers: Record<string, string> = {};
            const secret = o.secrets[id];
            if (secret) {
              const msgId = `msg_${id}_${t.id}_${run}_${i + 1}`;
              const ts = Math.floor(Date.now() / 1000);
              headers['webhook-id'] = msgId;
              headers['webhook-timestamp'] = String(ts);
              headers['webhook-signature'] = standardWebhookSignature(secret, msgId, ts, text);
            }
            await sendCallback(`${o.fenliuUrl}/v1/platforms/${id}/events`, text, headers);
          }),
        );
      }
    };
    // Tickets exist once the request is answered; look on the next turn.
    const listener = () => setImmediate(onRequest);
    platform.on('request', listener);
    unsubscribe.push(() => platform.off('request', listener));
  }
  return () => {
    for (const t of timers) clearTimeout(t);
    for (const u of unsubscribe) u();
  };
}
