import { ApiError, get, post, qs } from '../api.js';
import { fmtMs, fmtTime, h, replace, type Child } from '../dom.js';
import { t } from '../i18n.js';
import { can, categoryName, platformName, routeName, sourceName, type PageContext } from '../context.js';
import { bareMessage, label } from '../labels.js';
import type { AlertView, DeliveryDetail, Person } from '../types.js';
import { askReason, deliveryBadge, errorBox, errorView, stateBadge, table, verbatim } from '../ui.js';

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
  // The installation's category table, by name; a parent code (dispute) filters its children too.
  const cats = Object.entries(ctx.me.categories ?? {}).sort(([a], [b]) => a.localeCompare(b));
  const category = h('select', { name: 'category', 'data-testid': 'f-category' }, h('option', { value: '' }, t('all')), cats.map(([code]) => h('option', { value: code }, categoryName(ctx.me, code))));
  category.value = p.get('category') ?? '';
  const region = h('input', { name: 'region', value: p.get('region') ?? '', placeholder: '4202', 'data-testid': 'f-region', size: '8' });
  const state = h('select', { name: 'state', 'data-testid': 'f-state' }, h('option', { value: '' }, t('all')), STATES.map((s) => h('option', { value: s }, label('state', s))));
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
          categoryName(ctx.me, a.alert.category),
          a.alert.location.regionCode,
          h('span', { class: 'clip', title: a.alert.summary }, a.alert.summary),
          alertBadge(a),
          a.deliveries.map((d) => h('span', { class: 'chip', title: d.id }, `${platformName(ctx.me, d.platformId)}: `, d.retrying ? stateBadge('retrying') : stateBadge(d.state))),
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

/** An alert still in the gateway whose deliveries wait for a retry reads 重试中, not 排队. */
function alertBadge(a: AlertView): HTMLElement {
  return (a.status === 'queued' || a.status === 'delivering') && a.deliveries.some((d) => d.retrying) ? stateBadge('retrying') : stateBadge(a.status);
}

function person(x: Person | undefined): string {
  if (!x) return '—';
  return [x.role ? label('role', x.role) : '', x.name, x.phone, x.idNumber, x.confidential ? `(${t('confidential')})` : ''].filter(Boolean).join(' · ');
}

function dl(rows: ([string, Child] | null)[]): HTMLElement {
  return h('dl', { class: 'kv' }, rows.map((r) => (r ? [h('dt', null, r[0]), h('dd', null, r[1] ?? '—')] : null)));
}

/** Who acted, by name where config has one: a 110 system, a platform, an operator's key. */
function actorText(ctx: PageContext, a: { kind?: string; id?: string } | undefined): string {
  if (!a?.id) return '';
  const who = a.kind === 'source' ? sourceName(ctx.me, a.id) : a.kind === 'platform' ? platformName(ctx.me, a.id) : a.id;
  return a.kind ? `${label('actorKind', a.kind)} ${who}` : who;
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
    h('header', { class: 'page-head' }, h('a', { href: '#/alerts', class: 'button' }, `← ${t('back')}`), h('h1', null, `${t('alertDetail')} ${al.source.alertId}`), alertBadge(a)),
    h(
      'section',
      { class: 'panel' },
      personal ? null : h('p', { class: 'notice', 'data-testid': 'masked' }, t('masked')),
      dl([
        ['ID', a.id],
        [t('source'), `${sourceName(ctx.me, al.source.system)}${al.source.desk ? ` / ${al.source.desk}` : ''}`],
        [t('sourceAlertId'), al.source.alertId],
        [t('receivedAt'), fmtTime(a.receivedAt)],
        [t('reportedAt'), fmtTime(al.reportedAt)],
        [t('category'), h('span', { 'data-testid': 'category' }, categoryName(ctx.me, al.category))],
        [t('priority'), label('priority', al.priority ?? 'normal')],
        [t('summary'), al.summary],
        [t('description'), al.description ?? '—'],
        [t('address'), `${al.location.address ?? ''} (${al.location.regionCode}${al.location.gridCode ? ` / ${al.location.gridCode}` : ''})`],
        [t('caller'), h('span', { 'data-testid': 'caller' }, person(al.caller))],
        [t('parties'), (al.parties ?? []).map((x) => h('div', null, person(x)))],
        [t('police'), al.police ? [al.police.unit, al.police.officerId, al.police.sceneStatus ? `${t('sceneStatus')}：${label('sceneStatus', al.police.sceneStatus)}` : '', al.police.assessment].filter(Boolean).join(' · ') : '—'],
        [t('route'), `${a.route.ruleId ? routeName(ctx.me, a.route.ruleId) : ''} → ${a.route.targets.map((x) => platformName(ctx.me, x)).join('、')}`],
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
            h('strong', null, platformName(ctx.me, d.platformId)),
            ' ',
            deliveryBadge(d, `state-${d.platformId}`),
            (d.overdue ?? []).map((o) => h('span', { class: 'badge overdue' }, `${t('overdue')}: ${label('sla', o)}`)),
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
            [t('attempts'), h('span', { 'data-testid': `attempts-${d.platformId}` }, String(d.attempts))],
            d.retrying ? [t('nextAttempt'), h('span', { 'data-testid': `next-attempt-${d.platformId}` }, fmtTime(d.nextAttemptAt))] : null,
            [t('lastError'), errorView(d.lastError)],
          ]),
          h('h3', null, t('attemptLog')),
          table(
            ['#', t('kindOf'), t('at'), t('duration'), t('outcome'), t('status'), t('errorClass'), t('reason'), t('nextAttempt')],
            d.attemptLog.map((x) => [
              String(x.n),
              x.kind ? label('attemptKind', x.kind) : t('deliveries'),
              fmtTime(x.at),
              fmtMs(x.durationMs),
              label('outcome', x.outcome),
              x.status === undefined ? '—' : String(x.status),
              x.errorClass ? label('errorClass', x.errorClass) : '—',
              verbatim(bareMessage(x.reason, x.errorClass)),
              x.nextAttemptAt ? fmtTime(x.nextAttemptAt) : '—',
            ]),
            `attempts-table-${d.platformId}`,
          ),
          h('h3', null, t('history')),
          table(
            [t('at'), t('from'), t('to'), t('by'), t('note')],
            d.history.map((x) => [fmtTime(x.at), x.from ? stateBadge(x.from) : '—', stateBadge(x.to), label('changeSource', x.source), x.note ? verbatim(x.note) : '']),
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
        [t('at'), t('eventType'), t('platform'), t('actor'), t('note')],
        tl.items.map((x) => {
          const ev = x.event as { type: string; at: string; platformId?: string; sourceId?: string; actor?: { kind?: string; id?: string }; reason?: string; data?: Record<string, unknown> };
          // An attempt's event carries its answer and the state change it led to (docs/audit.md).
          const status = ev.type === 'delivery.attempt' && typeof ev.data?.status === 'number' ? `HTTP ${ev.data.status} ` : '';
          // Where the alert went: on its alert.received (one event per received alert), or on alert.routed in older logs.
          const targets = Array.isArray(ev.data?.targets) ? (ev.data.targets as string[]).map((p) => platformName(ctx.me, p)).join('、') : '';
          const note = ev.reason
            ? verbatim(ev.reason)
            : ev.data && typeof ev.data.to === 'string'
              ? `${status}→ ${label('state', ev.data.to)}`
              : targets
                ? `${label('auditType', 'alert.routed')} → ${targets}`
                : status;
          return [fmtTime(ev.at), label('auditType', ev.type), ev.platformId ? platformName(ctx.me, ev.platformId) : '', actorText(ctx, ev.actor), note];
        }),
        'timeline-table',
      ),
    );
  } catch (e) {
    replace(timeline, h('p', { class: 'muted' }, e instanceof ApiError && e.status === 404 ? t('notAvailable') : errorBox(e)));
  }
}
