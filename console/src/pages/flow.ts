import { get } from '../api.js';
import { fmtMs, h, replace } from '../dom.js';
import { t } from '../i18n.js';
import type { PageContext } from '../context.js';
import type { Flow, PlatformStatus } from '../types.js';
import { FIGURE_COLOUR, STATE_COLOUR } from '../colours.js';
import { card, chart, errorBox, stateBadge, table, updatedAt } from '../ui.js';
import type { Chart } from 'chart.js';

const REFRESH_MS = 5_000;
const DASHES: number[][] = [[], [6, 3], [2, 2], [10, 3, 2, 3], [4, 6], [1, 4]];

function hhmm(ms: number): string {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

export async function renderFlow(ctx: PageContext): Promise<void> {
  const cards = h('div', { class: 'cards' });
  const canvas = h('canvas', { 'data-testid': 'flow-chart', 'aria-label': t('flowTitle') });
  const states = h('div');
  const perPlatform = h('div');
  const stamp = h('span');
  const err = h('div');
  replace(
    ctx.root,
    h('header', { class: 'page-head' }, h('h1', null, t('flowTitle')), stamp),
    err,
    cards,
    h('section', { class: 'panel' }, h('div', { class: 'chart-box' }, canvas)),
    h('div', { class: 'two-col' }, h('section', { class: 'panel' }, h('h2', null, t('byState')), states), h('section', { class: 'panel' }, h('h2', null, t('navPlatforms')), perPlatform)),
  );
  let c: Chart | undefined;
  let stopped = false;
  ctx.onLeave(() => {
    stopped = true;
    clearInterval(timer);
    c?.destroy();
  });

  const load = async () => {
    try {
      const [flow, plats] = await Promise.all([get<Flow>('/v1/flow?minutes=60'), get<{ items: PlatformStatus[] }>('/v1/platforms').catch(() => ({ items: [] as PlatformStatus[] }))]);
      if (stopped) return;
      replace(err);
      const dead = plats.items.reduce((n, p) => n + p.deadLetters, 0);
      const waiting = plats.items.reduce((n, p) => n + (p.queue.waiting ?? 0) + (p.queue.prioritized ?? 0) + (p.queue.delayed ?? 0), 0);
      const delivered = flow.platforms.reduce((n, p) => n + p.delivered, 0);
      replace(
        cards,
        card(t('receivedLastHour'), String(flow.received), 'kpi-received'),
        card(t('deliveredLastHour'), String(delivered), 'kpi-delivered'),
        card(t('deadLettersTotal'), String(dead), 'kpi-dead'),
        card(t('queueWaiting'), String(waiting), 'kpi-waiting'),
      );
      const labels = flow.buckets.map(hhmm);
      const datasets = [
        { label: t('alertsIn'), data: flow.in, borderColor: FIGURE_COLOUR.received, backgroundColor: `${FIGURE_COLOUR.received}1f`, fill: true, tension: 0, pointRadius: 0, borderWidth: 2 },
        // Every platform's line is "delivered", so all share the delivered colour; dashes tell them apart.
        ...flow.platforms.map((p, i) => ({ label: `${t('deliveredOut')} · ${p.name}`, data: p.out, borderColor: STATE_COLOUR.delivered, borderDash: DASHES[i % DASHES.length], backgroundColor: 'transparent', fill: false, tension: 0, pointRadius: 0, borderWidth: 1.5 })),
      ];
      if (!c) {
        c = chart(canvas, {
          type: 'line',
          data: { labels, datasets },
          options: { interaction: { mode: 'index', intersect: false }, scales: { y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: t('perMinute') } } }, plugins: { legend: { position: 'bottom' } } },
        });
      } else {
        c.data.labels = labels;
        c.data.datasets = datasets;
        c.update();
      }
      const stateRows = Object.entries(flow.states)
        .filter(([, n]) => n > 0)
        .map(([s, n]) => [stateBadge(s), h('span', { 'data-testid': `state-${s}` }, String(n))]);
      // Retrying deliveries are counted in queued/sending too; shown apart so a failing platform stands out.
      if (flow.retrying) stateRows.push([stateBadge('retrying'), h('span', { 'data-testid': 'state-retrying' }, `${flow.retrying}（${t('includedAbove')}）`)]);
      replace(states, table([t('state'), '#'], stateRows, 'states'), flow.statesSampled ? h('p', { class: 'muted small' }, t('statesSampled')) : null);
      replace(
        perPlatform,
        table(
          [t('platform'), t('delivered'), t('latency')],
          flow.platforms.map((p) => [p.name, h('span', { 'data-testid': `out-${p.platformId}` }, String(p.delivered)), `${fmtMs(p.latency.p50)} / ${fmtMs(p.latency.p95)}`]),
          'flow-platforms',
        ),
      );
      replace(stamp, updatedAt());
    } catch (e) {
      if (!stopped) replace(err, errorBox(e));
    }
  };
  const timer = setInterval(() => void load(), REFRESH_MS);
  await load();
}
