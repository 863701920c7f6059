import { ApiError, get, post, qs } from '../api.js';
import { fmtMs, fmtTime, h, replace, type Child } from '../dom.js';
import { t, tx } from '../i18n.js';
import { can, type PageContext } from '../main.js';
import type { AlertView, DeliveryDetail, Person } from '../types.js';
import { askReason, errorBox, stateBadge, table } from '../ui.js';

const STATES = ['queued', 'delivering', 'delivered', 'in_progress', 'resolved', 'closed', 'failed', 'cancelled', 'returned', 'accepted', 'rejected', 'reopened'];
/** Pages scanned when filtering on fields the API does not filter on (source alert id, region). */
const MAX_CLIENT_PAGES = 5;

function toIso(local: string): string | undefined {
  if (!local) return undefined;
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

export async function renderAlerts(ctx: PageContext): Promise<void> {
  const p = ctx.params;
  const field = (name: string, input: HTMLElement) => h('label', { class: 'field' }, h('span', null, t(name as never)), input);
  const source = h('select', { name: 'source', 'data-testid': 'f-source' }, h('option', { value: '' }, t('all')), ctx.me.sources.map((s) => h('option', { value: s.id }, s.name)));
  source.value = p.get('source') ?? '';
  const alertId = h('input', { name: 'alertId', value: p.get('alertId') ?? '', 'data-testid': 'f-alertId', size: '14' });
  const category = h('input', { name: 'category', value: p.get('category') ?? '', placeholder: 'dispute / consumer.refund', 'data-testid': 'f-category', size: '16' });
  const region = h('input', { name: 'region', value: p.get('region') ?? '', placeholder: '4202', 'data-testid': 'f-region', size: '8' });
  const state = h('select', { name: 'state', 'data-testid': 'f-state' }, h('option', { value: '' }, t('all')), STATES.map((s) => h('option', { value: s }, tx('st_', s))));
  state.value = p.get('state') ?? '';
  const since = h('input', { type: 'datetime-local', name: 'since', value: p.get('since') ?? '' });
  const until = h('input', { type: 'datetime-local', name: 'until', value: p.get('until') ?? '' });
  const results = h('div');
  const form = h(
    'form',
    {
      class: 'filters',
      onsubmit: (e: Event) => {
        e.preventDefault();
        const q = new URLSearchParams();
        for (const [k, el] of Object.entries({ source, alertId, category, region, state, since, until })) if (el.value) q.set(k, el.value);
        location.hash = `#/alerts?${q.toString()}`;
      },
    },
    field('source', source),
    field('sourceAlertId', alertId),
    field('category', category),
    field('region', region),
    field('state', state),
    field('since', since),
    field('until', until),
    h('div', { class: 'field-actions' }, h('button', { type: 'submit', class: 'primary', 'data-testid': 'search' }, t('search')), h('a', { href: '#/alerts', class: 'button' }, t('reset'))),
  );
  replace(ctx.root, h('header', { class: 'page-head' }, h('h1', null, t('alertsTitle'))), form, results);

  const wantId = (p.get('alertId') ?? '').trim();
  const wantRegion = (p.get('region') ?? '').trim();
  const base = { source: p.get('source'), category: p.get('category'), state: p.get('state'), since: toIso(p.get('since') ?? ''), until: toIso(p.get('until') ?? '') };
  const items: AlertView[] = [];
  let cursor: string | null = null;
  const more = h('button', { type: 'button', class: 'button', 'data-testid': 'more' }, t('loadMore'));
  const draw = () =>
    replace(
      results,
      h('p', { class: 'muted small', 'data-testid': 'count' }, `${items.length} ${t('results')}`),
      table(
        [t('receivedAt'), t('sourceAlertId'), t('category'), t('region'), t('summary'), t('state'), t('deliveries')],
        items.map((a) => [
          fmtTime(a.receivedAt),
          h('a', { href: `#/alerts/${encodeURIComponent(a.id)}`, 'data-testid': `alert-${a.alert.source.alertId}` }, a.alert.source.alertId),
          a.alert.category,
          a.alert.location.regionCode,
          h('span', { class: 'clip', title: a.alert.summary }, a.alert.summary),
          stateBadge(a.status),
          a.deliveries.map((d) => h('span', { class: 'chip', title: d.id }, `${d.platformId}: `, stateBadge(d.state))),
        ]),
        'alerts',
      ),
      cursor ? more : null,
    );
  const fetchPages = async (pages: number) => {
    for (let i = 0; i < pages; i++) {
      const res: { items: AlertView[]; nextCursor: string | null } = await get(`/v1/alerts${qs({ ...base, limit: 100, cursor })}`);
      for (const a of res.items) {
        if (wantId && !a.alert.source.alertId.includes(wantId)) continue;
        if (wantRegion && !a.alert.location.regionCode.startsWith(wantRegion)) continue;
        items.push(a);
      }
      cursor = res.nextCursor;
      if (!cursor) break;
      if (!wantId && !wantRegion) break;
    }
  };
  more.addEventListener('click', async () => {
    more.setAttribute('disabled', '');
    try {
      await fetchPages(wantId || wantRegion ? MAX_CLIENT_PAGES : 1);
      draw();
    } catch (e) {
      replace(results, errorBox(e));
    }
  });
  replace(results, h('p', { class: 'muted' }, t('loading')));
  try {
    await fetchPages(wantId || wantRegion ? MAX_CLIENT_PAGES : 1);
    draw();
  } catch (e) {
    replace(results, errorBox(e));
  }
}

function person(x: Person | undefined): string {
  if (!x) return '—';
  return [x.role, x.name, x.phone, x.idNumber, x.confidential ? `(${t('confidential')})` : ''].filter(Boolean).join(' · ');
}

function dl(rows: [string, Child][]): HTMLElement {
  return h('dl', { class: 'kv' }, rows.map(([k, v]) => [h('dt', null, k), h('dd', null, v ?? '—')]));
}

export async function renderAlertDetail(ctx: PageContext): Promise<void> {
  const id = ctx.id!;
  replace(ctx.root, h('p', { class: 'muted' }, t('loading')));
  let a: AlertView;
  try {
    a = await get<AlertView>(`/v1/alerts/${encodeURIComponent(id)}`);
  } catch (e) {
    replace(ctx.root, h('a', { href: '#/alerts', class: 'button' }, t('back')), errorBox(e));
    return;
  }
  const al = a.alert;
  const personal = can(ctx.me, 'audit:read');
  const deliveries = h('div');
  const timeline = h('div', { 'data-testid': 'timeline' }, h('p', { class: 'muted' }, t('loading')));
  replace(
    ctx.root,
    h('header', { class: 'page-head' }, h('a', { href: '#/alerts', class: 'button' }, `← ${t('back')}`), h('h1', null, `${t('alertDetail')} ${al.source.alertId}`), stateBadge(a.status)),
    h(
      'section',
      { class: 'panel' },
      personal ? null : h('p', { class: 'notice', 'data-testid': 'masked' }, t('masked')),
      dl([
        ['ID', a.id],
        [t('source'), `${al.source.system}${al.source.desk ? ` / ${al.source.desk}` : ''}`],
        [t('sourceAlertId'), al.source.alertId],
        [t('receivedAt'), fmtTime(a.receivedAt)],
        [t('reportedAt'), fmtTime(al.reportedAt)],
        [t('category'), al.category],
        [t('priority'), al.priority ?? 'normal'],
        [t('summary'), al.summary],
        [t('description'), al.description ?? '—'],
        [t('address'), `${al.location.address ?? ''} (${al.location.regionCode}${al.location.gridCode ? ` / ${al.location.gridCode}` : ''})`],
        [t('caller'), h('span', { 'data-testid': 'caller' }, person(al.caller))],
        [t('parties'), (al.parties ?? []).map((x) => h('div', null, person(x)))],
        [t('police'), al.police ? [al.police.unit, al.police.officerId, al.police.sceneStatus, al.police.assessment].filter(Boolean).join(' · ') : '—'],
        [t('route'), `${a.route.ruleId ?? ''} → ${a.route.targets.join(', ')}`],
      ]),
    ),
    h('section', { class: 'panel' }, h('h2', null, t('deliveries')), deliveries),
    h('section', { class: 'panel' }, h('h2', null, t('timeline')), timeline),
  );

  const drawDeliveries = async () => {
    const details = await Promise.all(a.deliveries.map((d) => get<DeliveryDetail>(`/v1/deliveries/${encodeURIComponent(d.id)}`).catch(() => ({ ...d, attemptLog: [], history: [] }) as DeliveryDetail)));
    replace(
      deliveries,
      details.map((d) =>
        h(
          'article',
          { class: 'delivery', 'data-testid': `delivery-${d.platformId}` },
          h(
            'header',
            null,
            h('strong', null, d.platformId),
            ' ',
            stateBadge(d.state),
            (d.overdue ?? []).map((o) => h('span', { class: 'badge overdue' }, `${t('overdue')}: ${tx('sla_', o)}`)),
            d.state === 'failed' && can(ctx.me, 'admin')
              ? h(
                  'button',
                  {
                    type: 'button',
                    class: 'danger small',
                    onclick: async () => {
                      const reason = await askReason(t('confirmRetry'), d.id);
                      if (!reason) return;
                      try {
                        await post(`/v1/deliveries/${encodeURIComponent(d.id)}/retry`, { reason });
                        await drawDeliveries();
                      } catch (e) {
                        deliveries.prepend(errorBox(e));
                      }
                    },
                  },
                  t('retry'),
                )
              : null,
          ),
          dl([
            [t('delivery'), d.id],
            [t('ticketId'), h('span', { 'data-testid': `ticket-${d.platformId}` }, d.remoteTicketId ?? '—')],
            [t('attempts'), String(d.attempts)],
            [t('lastError'), d.lastError ?? '—'],
          ]),
          h('h3', null, t('attemptLog')),
          table(
            ['#', t('at'), t('duration'), t('outcome'), t('status'), t('reason')],
            d.attemptLog.map((x) => [String(x.n), fmtTime(x.at), fmtMs(x.durationMs), x.outcome, x.status === undefined ? '—' : String(x.status), [x.errorClass, x.reason].filter(Boolean).join(': ') || '—']),
          ),
          h('h3', null, t('history')),
          table(
            [t('at'), t('from'), t('to'), t('by'), t('note')],
            d.history.map((x) => [fmtTime(x.at), x.from ? stateBadge(x.from) : '—', stateBadge(x.to), x.source, x.note ?? '']),
          ),
        ),
      ),
    );
  };
  await drawDeliveries();
  try {
    const tl = await get<{ items: { seq?: string; streamId: string; archived: boolean; event: { type: string; at: string; [k: string]: unknown } }[] }>(`/v1/alerts/${encodeURIComponent(id)}/timeline`);
    replace(
      timeline,
      table(
        [t('at'), 'type', t('platform'), 'actor', t('note')],
        tl.items.map((x) => {
          const ev = x.event as { type: string; at: string; platformId?: string; actor?: { id?: string }; reason?: string; data?: Record<string, unknown> };
          const note = ev.reason ?? (ev.data && typeof ev.data.to === 'string' ? `→ ${ev.data.to}` : '');
          return [fmtTime(ev.at), ev.type, ev.platformId ?? '', ev.actor?.id ?? '', note];
        }),
        'timeline-table',
      ),
    );
  } catch (e) {
    replace(timeline, h('p', { class: 'muted' }, e instanceof ApiError && e.status === 404 ? t('notAvailable') : errorBox(e)));
  }
}
