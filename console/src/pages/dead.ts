import { get, post } from '../api.js';
import { fmtTime, h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { can, type PageContext } from '../context.js';
import type { Delivery, PlatformStatus } from '../types.js';
import { askReason, errorBox, errorView, table, updatedAt } from '../ui.js';

export async function renderDead(ctx: PageContext): Promise<void> {
  const admin = can(ctx.me, 'admin');
  const body = h('div');
  const flash = h('div', { 'data-testid': 'flash' });
  const stamp = h('span');
  replace(ctx.root, h('header', { class: 'page-head' }, h('h1', null, t('deadTitle')), stamp), admin ? null : h('p', { class: 'notice', 'data-testid': 'admin-only' }, t('adminOnly')), flash, body);

  const retry = async (path: string, title: string, detail: string) => {
    const reason = await askReason(title, detail);
    if (!reason) return;
    try {
      const res = await post<{ retried?: number; id?: string }>(path, { reason });
      replace(flash, h('p', { class: 'ok', role: 'status' }, `${t('retried')}${res.retried !== undefined ? `: ${res.retried}` : `: ${res.id ?? detail}`}`));
    } catch (e) {
      replace(flash, errorBox(e));
    }
    await load();
  };

  const load = async () => {
    try {
      const plats = await get<{ items: PlatformStatus[] }>('/v1/platforms');
      const sections = await Promise.all(
        plats.items.map(async (p) => {
          const dead = await get<{ items: Delivery[]; nextCursor: string | null }>(`/v1/platforms/${encodeURIComponent(p.id)}/dead-letters?limit=200`);
          return h(
            'section',
            { class: 'panel', 'data-testid': `dead-${p.id}` },
            h(
              'header',
              { class: 'panel-head' },
              h('h2', null, `${p.name ?? p.id} (${p.deadLetters})`),
              admin && dead.items.length
                ? h('button', { type: 'button', class: 'danger', 'data-testid': `retry-all-${p.id}`, onclick: () => void retry(`/v1/platforms/${encodeURIComponent(p.id)}/dead-letters/retry`, t('confirmRetryAll'), p.name ?? p.id) }, t('retryAll'))
                : null,
            ),
            table(
              [t('delivery'), t('alert'), t('failedAt'), t('attempts'), t('reason'), ''],
              dead.items.map((d) => [
                h('code', null, d.id),
                h('a', { href: `#/alerts/${encodeURIComponent(d.alertId)}` }, d.alertId),
                fmtTime(d.failedAt ?? d.updatedAt),
                String(d.attempts),
                h('span', { class: 'clip wide', title: d.lastError ?? '' }, errorView(d.lastError)),
                admin ? h('button', { type: 'button', class: 'danger small', 'data-testid': `retry-${d.id}`, onclick: () => void retry(`/v1/deliveries/${encodeURIComponent(d.id)}/retry`, t('confirmRetry'), d.id) }, t('retry')) : '',
              ]),
            ),
          );
        }),
      );
      replace(body, sections);
      replace(stamp, updatedAt());
    } catch (e) {
      replace(body, errorBox(e));
    }
  };
  await load();
}
