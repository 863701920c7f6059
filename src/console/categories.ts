import type { Config } from '../config/types.js';

/** A category's display names. */
export interface CategoryName {
  zh: string;
  en: string;
}

/**
 * Built-in names of the categories fenliu knows out of the box (BRIEF.md's examples, the
 * police-only ones and the targets of the inbound category tables). An installation adds or
 * renames categories in config (`categories`); a code in neither is shown as its code.
 */
export const DEFAULT_CATEGORY_NAMES: Readonly<Record<string, CategoryName>> = {
  dispute: { zh: '纠纷', en: 'Dispute' },
  'dispute.debt': { zh: '债务纠纷', en: 'Debt dispute' },
  'dispute.neighbor': { zh: '邻里纠纷', en: 'Neighbour dispute' },
  'dispute.family': { zh: '家庭纠纷', en: 'Family dispute' },
  'dispute.property-management': { zh: '物业纠纷', en: 'Property-management dispute' },
  labor: { zh: '劳动保障', en: 'Labour' },
  'labor.wage-arrears': { zh: '欠薪', en: 'Unpaid wages' },
  consumer: { zh: '消费', en: 'Consumer' },
  'consumer.refund': { zh: '消费纠纷（退换货）', en: 'Consumer dispute (refund)' },
  'consumer.food-safety': { zh: '食品安全', en: 'Food safety' },
  assist: { zh: '求助', en: 'Assistance' },
  'assist.unlock': { zh: '开锁', en: 'Lockout' },
  utility: { zh: '公用设施', en: 'Utilities' },
  'utility.water-leak': { zh: '漏水', en: 'Water leak' },
  nuisance: { zh: '扰民', en: 'Nuisance' },
  'nuisance.noise': { zh: '噪声扰民', en: 'Noise' },
  violence: { zh: '暴力', en: 'Violence' },
  'violence.assault': { zh: '殴打他人', en: 'Assault' },
  'violence.domestic': { zh: '家庭暴力', en: 'Domestic violence' },
  'violence.robbery': { zh: '抢劫', en: 'Robbery' },
  'theft.in-progress': { zh: '盗窃（正在发生）', en: 'Theft in progress' },
  'traffic.injury': { zh: '交通事故（有人员受伤）', en: 'Traffic accident with injury' },
  'person.missing': { zh: '人员走失', en: 'Missing person' },
  fire: { zh: '火灾', en: 'Fire' },
  'public-security': { zh: '治安', en: 'Public security' },
  'public-security.civil-danger': { zh: '公共安全危险', en: 'Civil danger' },
  'public-security.law-enforcement-warning': { zh: '执法预警', en: 'Law-enforcement warning' },
};

/** The installation's category table: the built-in names overlaid with config `categories`. */
export function categoryNames(cfg: Pick<Config, 'categories'>): Record<string, CategoryName> {
  const out: Record<string, CategoryName> = { ...DEFAULT_CATEGORY_NAMES };
  for (const [code, v] of Object.entries(cfg.categories ?? {})) {
    out[code] = typeof v === 'string' ? { zh: v, en: out[code]?.en ?? v } : { zh: v.zh, en: v.en ?? out[code]?.en ?? v.zh };
  }
  return out;
}
