/**
 * What pages share with the shell: the page context, scope checks and names for ids and codes.
 * Pages import this module, never main.ts, so there is no import circle (main.ts imports the pages).
 */
import type { Me } from './api.js';
import { getLang } from './i18n.js';

/** What a page gets: where to draw, who is signed in, and the route's parameters. */
export interface PageContext {
  root: HTMLElement;
  me: Me;
  params: URLSearchParams;
  id?: string;
  /** Registers a cleanup (timers, charts) run when the page is left. */
  onLeave(fn: () => void): void;
}

export type Page = (ctx: PageContext) => void | Promise<void>;

export function can(m: Me, ...scopes: string[]): boolean {
  return m.scopes.includes('admin') || scopes.some((s) => m.scopes.includes(s));
}

const byId = (list: { id: string; name: string }[], id: string | undefined): string => (id ? (list.find((x) => x.id === id)?.name ?? id) : '—');

/** Names from config, for the ids the API returns. */
export const platformName = (m: Me, id: string | undefined) => byId(m.platforms, id);
export const sourceName = (m: Me, id: string | undefined) => byId(m.sources, id);
export const routeName = (m: Me, id: string | undefined) => byId(m.routes ?? [], id);

/** A category code as the installation's category table names it (the code itself when unnamed). */
export function categoryName(m: Me, code: string | undefined): string {
  if (!code) return '—';
  const c = m.categories?.[code];
  return c ? (getLang() === 'zh' ? c.zh : c.en) : code;
}
