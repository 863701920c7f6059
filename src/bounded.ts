/**
 * Waits for `work` at most `ms`: true when it settled in time (a rejection counts, and is
 * swallowed), false when the time ran out. The timer never outlives the wait. For stops that
 * must end even with Redis gone, where what they wait for may never settle.
 */
export async function settledWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((res) => (timer = setTimeout(() => res(false), Math.max(0, ms))));
  try {
    return await Promise.race([work.then(() => true, () => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * `work`, or an error ("no answer within `ms` ms") when it has not settled in time. For reads that
 * must answer while Redis does not (a readiness probe, a metrics scrape): a command to a Redis
 * that is hung, or mid-failover behind Sentinel, waits up to the client's command timeout.
 */
export async function answerWithin<T>(work: Promise<T>, ms: number): Promise<T> {
  work.catch(() => undefined);
  if (!(await settledWithin(work, ms))) throw new Error(`no answer within ${ms} ms`);
  return work;
}
