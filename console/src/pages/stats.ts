import type { Chart } from 'chart.js';
import { get, qs } from '../api.js';
import { fmtMs, fmtPct, h, replace } from '../dom.js';
import { t, type Key } from '../i18n.js';
import { platformName, type PageContext } from '../context.js';
import { FIGURE_COLOUR, METRIC_COLOUR } from '../colours.js';
import type { Stats } from '../types.js';
import { card, chart, csvCell, download, errorBox, table } from '../ui.js';

const unit = (k: Key) => h('span', { class: 'unit' }, t(k));

function day(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

/** The figures of /v1/stats as CSV rows: one summary block, then by platform, then by region. */
export function statsCsv(s: Stats): string {
  const rows: unknown[][] = [
    ['metric', 'value'],
    ['from', s.from],
    ['to', s.to],
    ...(['received', 'diverted', 'refusedPoliceOnly', 'diversionRate', 'delivered', 'completed', 'completionRate', 'interventionCompliance', 'medianTimeToAcceptMs', 'medianTimeToResolveMs', 'repeats', 'repeatRate', 'failures'] as const).map((k) => [k, s[k]]),
    [],
    ['platformId', 'delivered', 'completed', 'failures', 'completionRate', 'interventionCompliance', 'medianTimeToAcceptMs'],
    ...s.byPlatform.map((p) => [p.platformId, p.delivered, p.completed, p.failures, p.completionRate, p.interventionCompliance, p.medianTimeToAcceptMs]),
    [],
    ['regionCode', 'received', 'diverted', 'completed'],
    ...s.byRegion.map((r) => [r.regionCode, r.received, r.diverted, r.completed]),
  ];
  return rows.map((r) => r.map(csvCell).join(',')).join('\r\n') + '\r\n';
}

export async function renderStats(ctx: PageContext): Promise<void> {
  const p = ctx.params;
  const now = new Date();
  const from = h('input', { type: 'date', name: 'from', value: p.get('from') ?? day(new Date(now.getTime() - 7 * 86_400_000)), 'data-testid': 'stats-from' });
  const to = h('input', { type: 'date', name: 'to', value: p.get('to') ?? day(now), 'data-testid': 'stats-to' });
  const source = h('select', { name: 'source' }, h('option', { value: '' }, t('all')), ctx.me.sources.map((s) => h('option', { value: s.id }, s.name)));
  source.value = p.get('source') ?? '';
  const platform = h('select', { name: 'platform' }, h('option', { value: '' }, t('all')), ctx.me.platforms.map((s) => h('option', { value: s.id }, s.name)));
  platform.value = p.get('platform') ?? '';
  const region = h('input', { name: 'region', value: p.get('region') ?? '', size: '8', placeholder: '4202' });
  const exportBtn = h('button', { type: 'button', class: 'button', disabled: true, 'data-testid': 'export' }, t('exportCsv'));
  const body = h('div');
  const field = (k: Key, el: HTMLElement) => h('label', { class: 'field' }, h('span', null, t(k)), el);
  replace(
    ctx.root,
    h('header', { class: 'page-head' }, h('h1', null, t('statsTitle'))),
    h(
      'form',
      {
        class: 'filters',
        onsubmit: (e: Event) => {
          e.preventDefault();
          const q = new URLSearchParams();
          for (const [k, el] of Object.entries({ from, to, source, platform, region })) if (el.value) q.set(k, el.value);
          location.hash = `#/stats?${q.toString()}`;
        },
      },
      field('since', from),
      field('until', to),
      field('source', source),
      field('platform', platform),
      field('region', region),
      h('div', { class: 'field-actions' }, h('button', { type: 'submit', class: 'primary', 'data-testid': 'stats-apply' }, t('apply')), exportBtn),
    ),
    body,
  );
  const charts: Chart[] = [];
  ctx.onLeave(() => charts.forEach((c) => c.destroy()));
  replace(body, h('p', { class: 'muted' }, t('loading')));
  const fromIso = new Date(`${from.value}T00:00:00`).toISOString();
  const toIso = new Date(new Date(`${to.value}T00:00:00`).getTime() + 86_400_000).toISOString();
  let s: Stats;
  try {
    s = await get<Stats>(`/v1/stats${qs({ from: fromIso, to: toIso, source: source.value, platform: platform.value, region: region.value })}`);
  } catch (e) {
    replace(body, errorBox(e));
    return;
  }
  exportBtn.removeAttribute('disabled');
  exportBtn.addEventListener('click', () => download(`fenliu-stats-${from.value}-${to.value}.csv`, statsCsv(s)));
  const c1 = h('canvas', { 'data-testid': 'chart-platforms' });
  const c2 = h('canvas', { 'data-testid': 'chart-regions' });
  replace(
    body,
    h(
      'div',
      { class: 'cards', 'data-testid': 'stats-cards' },
      card(t('received'), String(s.received)),
      card(t('diversionRate'), fmtPct(s.diversionRate), 'kpi-diversion'),
      card(t('completionRate'), fmtPct(s.completionRate), 'kpi-completion'),
      card(t('interventionCompliance'), fmtPct(s.interventionCompliance)),
      card(t('repeatRate'), fmtPct(s.repeatRate)),
      card(t('medianTimeToAccept'), fmtMs(s.medianTimeToAcceptMs)),
      card(t('medianTimeToResolve'), fmtMs(s.medianTimeToResolveMs)),
    ),
    // One unit per table: alerts (起) or deliveries (条, one per alert × platform), never mixed.
    h(
      'div',
      { class: 'two-col' },
      h(
        'section',
        { class: 'panel' },
        h('h2', null, t('alertFigures'), unit('unitAlerts')),
        table(
          [t('received'), t('diverted'), t('refusedPoliceOnly'), t('refusedNoRoute'), t('repeats')],
          [[String(s.received), String(s.diverted), String(s.refusedPoliceOnly), String(s.refusedNoRoute ?? 0), String(s.repeats)]],
          'stats-alerts',
        ),
      ),
      h(
        'section',
        { class: 'panel' },
        h('h2', null, t('deliveryFigures'), unit('unitDeliveries')),
        table([t('delivered'), t('completed'), t('failures')], [[String(s.delivered), String(s.completed), String(s.failures)]], 'stats-deliveries'),
      ),
    ),
    h(
      'section',
      { class: 'panel' },
      h('h2', null, t('byPlatform'), unit('unitDeliveries')),
      h('div', { class: 'chart-box small' }, c1),
      table(
        [t('platform'), t('delivered'), t('completed'), t('failures'), t('completionRate'), t('interventionCompliance'), t('medianTimeToAccept')],
        s.byPlatform.map((x) => [platformName(ctx.me, x.platformId), String(x.delivered), String(x.completed), String(x.failures), fmtPct(x.completionRate), fmtPct(x.interventionCompliance), fmtMs(x.medianTimeToAcceptMs)]),
        'stats-platforms',
      ),
    ),
    h(
      'div',
      { class: 'two-col' },
      h(
        'section',
        { class: 'panel' },
        h('h2', null, t('byRegion'), unit('unitAlerts')),
        h('div', { class: 'chart-box small' }, c2),
        table([t('region'), t('received'), t('diverted'), t('repeats')], s.byRegion.map((x) => [x.regionCode, String(x.received), String(x.diverted), String(x.repeats ?? 0)]), 'stats-regions'),
      ),
      h(
        'section',
        { class: 'panel' },
        h('h2', null, t('byRegion'), unit('unitDeliveries')),
        table([t('region'), t('completed'), t('completionRate')], s.byRegion.map((x) => [x.regionCode, String(x.completed), fmtPct(x.completionRate ?? null)]), 'stats-regions-deliveries'),
      ),
    ),
  );
  const bar = (labels: string[], sets: [string, number[], string][]) => ({
    type: 'bar' as const,
    data: { labels, datasets: sets.map(([label, data, colour]) => ({ label, data, backgroundColor: colour })) },
    options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } }, plugins: { legend: { position: 'bottom' as const } } },
  });
  charts.push(
    chart(
      c1,
      bar(
        s.byPlatform.map((x) => platformName(ctx.me, x.platformId)),
        [
          [t('delivered'), s.byPlatform.map((x) => x.delivered), METRIC_COLOUR.delivered],
          [t('completed'), s.byPlatform.map((x) => x.completed), METRIC_COLOUR.completed],
          [t('failures'), s.byPlatform.map((x) => x.failures), METRIC_COLOUR.failures],
        ],
      ),
    ),
    chart(
      c2,
      bar(
        s.byRegion.map((x) => x.regionCode),
        [
          [t('received'), s.byRegion.map((x) => x.received), FIGURE_COLOUR.received],
          [t('diverted'), s.byRegion.map((x) => x.diverted), FIGURE_COLOUR.diverted],
          [t('repeats'), s.byRegion.map((x) => x.repeats ?? 0), FIGURE_COLOUR.repeats],
        ],
      ),
    ),
  );
}
