import { get } from '../api.js';
import { fmtMs, fmtTime, h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { label } from '../labels.js';
import { platformName, type PageContext } from '../context.js';
import type { SlaItem } from '../types.js';
import { errorBox, stateBadge, table, updatedAt } from '../ui.js';

const REFRESH_MS = 30_000;

export async function renderSla(ctx: PageContext): Promise<void> {
  const body = h('div');
  const stamp = h('span');
  const kind = h('select', { 'data-testid': 'sla-kind' }, h('option', { value: '' }, t('all')), ['ack', 'intervene', 'resolve'].map((k) => h('option', { value: k }, label('sla', k))));
  replace(ctx.root, h('header', { class: 'page-head' }, h('h1', null, t('slaTitle')), h('label', { class: 'field inline' }, h('span', null, t('kind')), kind), stamp), body);
  let items: SlaItem[] = [];
  let stopped = false;
  const draw = () => {
    const now = Date.now();
    const shown = items.filter((x) => !kind.value || x.kind === kind.value);
    replace(
      body,
      table(
        [t('dueAt'), '', t('kind'), t('platform'), t('state'), t('alert'), t('delivery')],
        shown.map((x) => {
          const left = Date.parse(x.dueAt) - now;
          return [
            fmtTime(x.dueAt),
            x.overdue ? h('span', { class: 'badge overdue' }, `${t('overdueYes')} ${fmtMs(-left)}`) : h('span', { class: 'badge soon' }, `${t('dueSoon')} ${fmtMs(left)}`),
            label('sla', x.kind),
            platformName(ctx.me, x.platformId),
            stateBadge(x.state),
            h('a', { href: `#/alerts/${encodeURIComponent(x.alertId)}` }, x.alertId),
            h('code', null, x.deliveryId),
          ];
        }),
        'sla',
      ),
    );
  };
  kind.addEventListener('change', draw);
  const load = async () => {
    try {
      const res = await get<{ items: SlaItem[] }>('/v1/sla?within=3600000');
      if (stopped) return;
      items = res.items;
      draw();
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
