/**
 * One colour per state, the same in every chart and badge: green is always 办结, red always 推送失败.
 * Figures that are not states (alerts received, diverted, repeats) have colours of their own
 * that no state uses.
 */
export const STATE_COLOUR: Readonly<Record<string, string>> = {
  queued: '#d48806',
  sending: '#d4b106',
  delivering: '#d4b106',
  retrying: '#fa8c16',
  delivered: '#1f6feb',
  accepted: '#13a8a8',
  in_progress: '#722ed1',
  resolved: '#389e0d',
  closed: '#135200',
  returned: '#8c8c8c',
  rejected: '#a8071a',
  failed: '#f5222d',
  cancelled: '#bfbfbf',
  reopened: '#c41d7f',
};

/** Figures about alerts (not deliveries). */
export const FIGURE_COLOUR = {
  received: '#434343',
  diverted: '#2f54eb',
  repeats: '#eb2f96',
} as const;

/** The statistics' delivery figures, coloured as the state they count. */
export const METRIC_COLOUR = {
  delivered: STATE_COLOUR.delivered,
  completed: STATE_COLOUR.resolved,
  failures: STATE_COLOUR.failed,
} as const;

export function stateColour(state: string): string {
  return STATE_COLOUR[state] ?? '#595959';
}
