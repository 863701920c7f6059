import { get } from '../api.js';
import { fmtMs, h, replace } from '../dom.js';
import { t, tx } from '../i18n.js';
import type { PageContext } from '../main.js';
import type { Flow, PlatformStatus } from '../types.js';
import { errorBox, table, updatedAt } from '../ui.js';

const REFRESH_MS = 10_000;

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
          [t('platform'), t('adapter'), t('circuit'), `${t('queue')} (${t('waiting')}/${t('active')}/${t('delayed')})`, t('deadLetters'), t('rate'), t('latency'), t('attemptLatency'), t('lastError')],
          plats.items.map((p) => {
            const f = byId.get(p.id);
            const q = p.queue;
            return [
              h('span', { title: p.id }, p.name ?? p.id),
              p.adapter,
              h('span', { class: `badge cb-${p.circuit}`, 'data-testid': `circuit-${p.id}` }, tx('cb_', p.circuit)),
              `${(q.waiting ?? 0) + (q.prioritized ?? 0)} / ${q.active ?? 0} / ${q.delayed ?? 0}`,
              h('a', { href: '#/dead', 'data-testid': `dead-count-${p.id}` }, String(p.deadLetters)),
              f ? (f.delivered / minutes).toFixed(1) : '—',
              f ? `${fmtMs(f.latency.p50)} / ${fmtMs(f.latency.p95)}` : '—',
              f ? `${fmtMs(f.attempt.p50)} / ${fmtMs(f.attempt.p95)}` : '—',
              h('span', { class: 'clip wide', title: p.lastError ?? '' }, p.lastError ?? '—'),
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
