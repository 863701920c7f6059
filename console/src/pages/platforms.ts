import { get } from '../api.js';
import type { PageContext } from '../context.js';
import { fmtMs, fmtTime, h, replace } from '../dom.js';
import { t, tf } from '../i18n.js';
import { bareMessage, label } from '../labels.js';
import type { Flow, PlatformStatus } from '../types.js';
import { errorBox, errorView, table, updatedAt, verbatim } from '../ui.js';

const REFRESH_MS = 10_000;

/** The circuit as the engine sees it: state, and how close a closed circuit is to opening. */
function circuitCell(p: PlatformStatus): HTMLElement {
  const detail =
    p.circuit === 'open' && p.circuitOpenUntil
      ? `${t('circuitOpenUntil')} ${fmtTime(p.circuitOpenUntil)}`
      : p.circuitFailures
        ? tf('circuitFailures', { n: p.circuitFailures, of: p.circuitThreshold ?? '?' })
        : '';
  return h('span', { 'data-testid': `circuit-${p.id}` }, h('span', { class: `badge cb-${p.circuit}` }, label('circuit', p.circuit)), detail ? h('div', { class: 'small muted' }, detail) : null);
}

function lastErrorCell(p: PlatformStatus): HTMLElement {
  const e = p.lastFailure;
  if (!e) return h('span', { 'data-testid': `last-error-${p.id}` }, p.lastError ? errorView(p.lastError) : '—');
  // Stale once the platform delivered again after it: shown, but not in red.
  const stale = p.lastDeliveredAt !== undefined && Date.parse(p.lastDeliveredAt) > Date.parse(e.at);
  return h(
    'div',
    { class: stale ? 'muted' : 'error-cell', 'data-testid': `last-error-${p.id}` },
    h('div', { class: 'small' }, fmtTime(e.at)),
    h('strong', { 'data-testid': `last-error-class-${p.id}` }, label('errorClass', e.errorClass)),
    e.status !== undefined ? ` · HTTP ${e.status}` : '',
    h('div', { class: 'clip wide' }, verbatim(bareMessage(e.message, e.errorClass), e.message)),
  );
}

export async function renderPlatforms(ctx: PageContext): Promise<void> {
  const body = h('div');
  const stamp = h('span');
  replace(ctx.root, h('header', { class: 'page-head' }, h('h1', null, t('platformsTitle')), stamp), h('section', { class: 'panel' }, body));
  let stopped = false;
  const load = async () => {
    try {
      const [plats, flow] = await Promise.all([get<{ items: PlatformStatus[] }>('/v1/platforms'), get<Flow>('/v1/flow?minutes=15').catch(() => undefined)]);
      if (stopped) return;
      const byId = new Map(flow?.platforms.map((p) => [p.platformId, p]) ?? []);
      const minutes = flow ? flow.buckets.length : 15;
      replace(
        body,
        table(
          [
            t('platform'),
            t('adapter'),
            t('circuit'),
            t('lastError'),
            t('queueDepth'),
            `${t('queue')} (${t('waiting')}/${t('active')}/${t('delayed')})`,
            t('oldestWaiting'),
            t('deadLetters'),
            t('lastDelivered'),
            t('rate'),
            t('latency'),
            t('attemptLatency'),
          ],
          plats.items.map((p) => {
            const f = byId.get(p.id);
            const q = p.queue;
            return [
              h('span', { title: p.id, 'data-testid': `platform-${p.id}` }, p.name ?? p.id),
              p.adapter,
              circuitCell(p),
              lastErrorCell(p),
              h('span', { 'data-testid': `depth-${p.id}` }, String(p.queueDepth ?? 0)),
              `${(q.waiting ?? 0) + (q.prioritized ?? 0)} / ${q.active ?? 0} / ${q.delayed ?? 0}`,
              h('span', { 'data-testid': `oldest-${p.id}`, title: p.oldestWaitingAt ? fmtTime(p.oldestWaitingAt) : '' }, p.oldestWaitingAgeMs !== undefined ? fmtMs(p.oldestWaitingAgeMs) : '—'),
              h('a', { href: '#/dead', 'data-testid': `dead-count-${p.id}` }, String(p.deadLetters)),
              fmtTime(p.lastDeliveredAt),
              f ? (f.delivered / minutes).toFixed(1) : '—',
              f ? `${fmtMs(f.latency.p50)} / ${fmtMs(f.latency.p95)}` : '—',
              f ? `${fmtMs(f.attempt.p50)} / ${fmtMs(f.attempt.p95)}` : '—',
            ];
          }),
          'platforms',
        ),
      );
      replace(stamp, updatedAt());
    } catch (e) {
      if (!stopped) replace(body, errorBox(e));
    }
  };
  const timer = setInterval(() => void load(), REFRESH_MS);
  ctx.onLeave(() => {
    stopped = true;
    clearInterval(timer);
  });
  await load();
}
