import './style.css';
import { ApiError, api, get, setCsrf, whenSignedOut, type Me } from './api.js';
import { can, type Page, type PageContext } from './context.js';
import { h, replace } from './dom.js';
import { getLang, setLang, t, type Key } from './i18n.js';
import { label } from './labels.js';
import { renderFlow } from './pages/flow.js';
import { renderAlerts, renderAlertDetail } from './pages/alerts.js';
import { renderDead } from './pages/dead.js';
import { renderPlatforms } from './pages/platforms.js';
import { renderSla } from './pages/sla.js';
import { renderStats } from './pages/stats.js';

const app = document.getElementById('app')!;
let me: Me | null = null;
let leave: (() => void)[] = [];

const NAV: { hash: string; key: Key; page: Page }[] = [
  { hash: 'flow', key: 'navFlow', page: renderFlow },
  { hash: 'alerts', key: 'navAlerts', page: renderAlerts },
  { hash: 'dead', key: 'navDead', page: renderDead },
  { hash: 'platforms', key: 'navPlatforms', page: renderPlatforms },
  { hash: 'sla', key: 'navSla', page: renderSla },
  { hash: 'stats', key: 'navStats', page: renderStats },
];

function parseHash(): { name: string; id?: string; params: URLSearchParams } {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query] = raw.split('?');
  const [name, id] = (path || 'flow').split('/');
  return { name, id: id ? decodeURIComponent(id) : undefined, params: new URLSearchParams(query ?? '') };
}

function langButton(): HTMLElement {
  return h('button', {
    class: 'link lang',
    type: 'button',
    'data-testid': 'lang',
    onclick: () => {
      setLang(getLang() === 'zh' ? 'en' : 'zh');
      void route();
    },
    text: t('language'),
  });
}

function renderSignIn(message?: string): void {
  const input = h('input', { type: 'password', name: 'key', id: 'key', autocomplete: 'off', required: true, 'data-testid': 'key' });
  const err = h('p', { class: 'error', role: 'alert', 'data-testid': 'signin-error' }, message ?? '');
  const form = h(
    'form',
    {
      class: 'signin',
      onsubmit: async (e: Event) => {
        e.preventDefault();
        err.textContent = '';
        try {
          me = await api<Me>('POST', '/console/api/session', { key: input.value });
          setCsrf(me.csrfToken);
          input.value = '';
          if (!location.hash || location.hash === '#/signin') location.hash = '#/flow';
          else void route();
        } catch (e2) {
          err.textContent = e2 instanceof ApiError && e2.status === 401 ? t('signInFailed') : `${t('error')}: ${(e2 as Error).message}`;
        }
      },
    },
    h('h1', null, t('appTitle')),
    h('label', { for: 'key' }, t('apiKey')),
    input,
    h('button', { type: 'submit', class: 'primary', 'data-testid': 'signin' }, t('signIn')),
    h('p', { class: 'hint' }, t('signInHint')),
    err,
    langButton(),
  );
  document.title = t('appTitle');
  replace(app, h('main', { class: 'signin-page' }, form));
  input.focus();
}

async function signOut(): Promise<void> {
  try {
    await api('DELETE', '/console/api/session');
  } catch {
    // the session may already be gone
  }
  me = null;
  setCsrf('');
  location.hash = '#/signin';
  renderSignIn();
}

function layout(m: Me, active: string): HTMLElement {
  const content = h('main', { class: 'content', id: 'content' });
  const nav = h(
    'nav',
    { class: 'nav' },
    h('span', { class: 'brand' }, t('appTitle')),
    NAV.map((n) => h('a', { href: `#/${n.hash}`, class: n.hash === active ? 'active' : '', 'data-testid': `nav-${n.hash}` }, t(n.key))),
    can(m, 'admin') ? h('a', { href: '/admin/queues', target: '_blank', rel: 'noopener' }, t('navQueues')) : null,
    h('span', { class: 'spacer' }),
    h('span', { class: 'who', title: m.scopes.join(' '), 'data-testid': 'who' }, `${m.keyId} · ${m.scopes.map((x) => label('scope', x)).join('、')}`),
    langButton(),
    h('button', { class: 'link', type: 'button', 'data-testid': 'signout', onclick: () => void signOut() }, t('signOut')),
  );
  replace(app, nav, content);
  return content;
}

async function route(): Promise<void> {
  for (const fn of leave) {
    try {
      fn();
    } catch {
      // a failing cleanup must not block navigation
    }
  }
  leave = [];
  const { name, id, params } = parseHash();
  if (!me) {
    try {
      me = await get<Me>('/console/api/session');
      setCsrf(me.csrfToken);
    } catch {
      renderSignIn();
      return;
    }
  }
  if (name === 'signin') {
    location.hash = '#/flow';
    return;
  }
  const entry = NAV.find((n) => n.hash === name) ?? NAV[0];
  document.title = `${t(entry.key)} · ${t('appTitle')}`;
  const root = layout(me, entry.hash);
  const ctx: PageContext = { root, me, params, id, onLeave: (fn) => leave.push(fn) };
  try {
    if (entry.hash === 'alerts' && id) await renderAlertDetail(ctx);
    else await entry.page(ctx);
  } catch (err) {
    replace(root, h('p', { class: 'error' }, `${t('error')}: ${(err as Error).message}`));
  }
}

whenSignedOut(() => {
  me = null;
  renderSignIn();
});
setLang(getLang());
window.addEventListener('hashchange', () => void route());
void route();
