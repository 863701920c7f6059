import { BarController, BarElement, CategoryScale, Chart, Filler, Legend, LinearScale, LineController, LineElement, PointElement, Tooltip, type ChartConfiguration } from 'chart.js';
import { ApiError } from './api.js';
import { fmtTime, h, type Child } from './dom.js';
import { stateColour } from './colours.js';
import { t, tf } from './i18n.js';
import { label, splitError } from './labels.js';

Chart.register(LineController, LineElement, PointElement, LinearScale, CategoryScale, BarController, BarElement, Legend, Tooltip, Filler);
Chart.defaults.animation = false;
Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily || 'sans-serif';

export function chart(canvas: HTMLCanvasElement, cfg: ChartConfiguration): Chart {
  return new Chart(canvas, { ...cfg, options: { responsive: true, maintainAspectRatio: false, ...cfg.options } });
}

export function table(headers: string[], rows: Child[][], testid?: string): HTMLElement {
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { 'data-testid': testid },
      h('thead', null, h('tr', null, headers.map((x) => h('th', null, x)))),
      h('tbody', null, rows.length ? rows.map((r) => h('tr', null, r.map((c) => h('td', null, c)))) : h('tr', null, h('td', { colspan: String(headers.length), class: 'muted' }, t('none')))),
    ),
  );
}

export function stateBadge(state: string): HTMLElement {
  const el = h('span', { class: `badge st-${state}`, 'data-state': state }, label('state', state));
  // Through the CSSOM (allowed by the CSP, unlike a style attribute): the shared state colour.
  el.style.setProperty('--c', stateColour(state));
  return el;
}

/**
 * A delivery's state as a duty officer needs it: a retrying delivery (queued or sending again
 * after a failed attempt) shows 重试中, its attempt count and when the next attempt is due.
 */
export function deliveryBadge(d: { state: string; retrying?: boolean; attempts?: number; nextAttemptAt?: string }, testid?: string): HTMLElement {
  if (!d.retrying) return h('span', { 'data-testid': testid }, stateBadge(d.state));
  return h(
    'span',
    { class: 'retrying', 'data-testid': testid },
    stateBadge('retrying'),
    ' ',
    // No attempt yet while the circuit is open: then only the time the cool-down ends.
    h('span', { class: 'small' }, `${d.attempts ? `${tf('attemptNo', { n: d.attempts })} · ` : ''}${t('nextAttempt')} ${fmtTime(d.nextAttemptAt)}`),
  );
}

export function card(label: string, value: Child, testid?: string): HTMLElement {
  return h('div', { class: 'card', 'data-testid': testid }, h('div', { class: 'card-label' }, label), h('div', { class: 'card-value' }, value));
}

export function errorText(err: unknown): string {
  if (err instanceof ApiError) {
    if (err.status === 404) return t('notAvailable');
    if (err.status === 403) return `${t('forbidden')}: ${err.message}`;
  }
  return `${t('error')}: ${(err as Error).message}`;
}

export function errorBox(err: unknown): HTMLElement {
  return h('p', { class: 'error', role: 'alert' }, errorText(err));
}

/** A confirmation dialog asking for a reason; resolves to the reason, or null when cancelled. */
export function askReason(title: string, detail: Child): Promise<string | null> {
  return new Promise((resolve) => {
    const reason = h('textarea', { name: 'reason', required: true, maxlength: '1000', rows: '3', 'data-testid': 'reason' });
    const err = h('p', { class: 'error' });
    const dlg = h('dialog', { class: 'dialog', 'data-testid': 'confirm-dialog' });
    const done = (v: string | null) => {
      dlg.close();
      dlg.remove();
      resolve(v);
    };
    dlg.append(
      h(
        'form',
        {
          method: 'dialog',
          onsubmit: (e: Event) => {
            e.preventDefault();
            const v = reason.value.trim();
            if (!v) {
              err.textContent = t('retryReason');
              reason.focus();
              return;
            }
            done(v);
          },
        },
        h('h2', null, title),
        h('div', { class: 'dialog-detail' }, detail),
        h('label', null, t('retryReason')),
        reason,
        err,
        h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => done(null), 'data-testid': 'cancel' }, t('cancel')), h('button', { type: 'submit', class: 'danger', 'data-testid': 'confirm' }, t('confirm'))),
      ),
    );
    dlg.addEventListener('cancel', () => done(null));
    document.body.append(dlg);
    dlg.showModal();
    reason.focus();
  });
}

export function updatedAt(): HTMLElement {
  const d = new Date();
  return h('span', { class: 'muted small', 'data-testid': 'updated' }, `${t('updatedAt')} ${d.toLocaleTimeString()}`);
}

/** Downloads text as a file (CSV export). */
export function download(name: string, text: string, type = 'text/csv;charset=utf-8'): void {
  // The BOM makes spreadsheet programs read the Chinese text as UTF-8.
  const blob = new Blob(['\ufeff', text], { type });
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function csvCell(v: unknown): string {
  const s = v === null || v === undefined ? '' : String(v);
  // Guard against formula injection in spreadsheet programs.
  const safe = /^[=+\-@\t\r]/.test(s) ? `'${s}` : s;
  return /[",\n\r]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

/** Words a platform or a person wrote (error bodies, reasons, notes): shown as they are, never translated. */
export function verbatim(text: string | undefined | null, title?: string): HTMLElement {
  return h('span', { class: 'verbatim', title }, text || '—');
}

/** An error as `<class name>：<the platform's words>`. */
export function errorView(text: string | undefined | null, errorClass?: string): Child {
  const e = splitError(text, errorClass);
  if (!e.errorClass) return verbatim(e.rest);
  return h('span', null, label('errorClass', e.errorClass), e.rest ? ['：', verbatim(e.rest)] : null);
}
