/** Query parameters shared by the routes that read a period of history (stats, audit). */
export const PERIOD_FILTER = {
  from: { type: 'string', format: 'date-time' },
  to: { type: 'string', format: 'date-time' },
  source: { type: 'string' },
  platform: { type: 'string' },
} as const;
