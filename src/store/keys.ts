/** Every Redis key fenliu writes, in one place. */
export function keys(prefix: string) {
  return {
    alert: (id: string) => `${prefix}:alert:${id}`,
    /** All alerts by receipt time (score: epoch ms). */
    alerts: `${prefix}:alerts`,
    /** Alerts of one source by receipt time. */
    alertsBySource: (sourceId: string) => `${prefix}:alerts:src:${sourceId}`,
    idem: (sourceId: string, key: string) => `${prefix}:idem:${sourceId}:${key}`,
    delivery: (id: string) => `${prefix}:dlv:${id}`,
    attempts: (id: string) => `${prefix}:dlv:${id}:attempts`,
    history: (id: string) => `${prefix}:dlv:${id}:history`,
    /** Remote ticket id → delivery id, per platform. */
    ticket: (platformId: string) => `${prefix}:ticket:${platformId}`,
    deadLetters: (platformId: string) => `${prefix}:dead:${platformId}`,
    /** The platform's last failed attempt (at, errorClass, status, message, deliveryId): one small hash, overwritten. */
    platformLastError: (platformId: string) => `${prefix}:platform:${platformId}:lasterror`,
    /** Deliveries that reached `delivered`, by time (score: epoch ms): the console's flow out. */
    flowDelivered: (platformId: string) => `${prefix}:flow:delivered:${platformId}`,
    /** Deliveries created after ingest (re-routes, feedback, escalations), in order. */
    alertDeliveries: (alertId: string) => `${prefix}:alert:${alertId}:dlv`,
    /** Platforms that ever held this alert: a returned case never goes back to one of them. */
    alertPlatforms: (alertId: string) => `${prefix}:alert:${alertId}:platforms`,
    alertAux: (alertId: string) => `${prefix}:alert:${alertId}:aux`,
    /** Deliveries of a platform that are delivered but not final: what polling asks about. */
    open: (platformId: string) => `${prefix}:open:${platformId}`,
    seenEvent: (platformId: string, eventId: string) => `${prefix}:evt:${platformId}:${eventId}`,
    /** Callback message ids (webhook-id) seen: a replayed callback is refused. */
    seenMessage: (platformId: string, messageId: string) => `${prefix}:msg:${platformId}:${messageId}`,
    /** Counters for /v1/stats that records cannot give (refusals, repeats, overdue). */
    stats: `${prefix}:stats`,
    refusals: `${prefix}:refusals`,
    /** Deliveries with a missed deadline that are not settled yet (the SLA board). */
    overdue: `${prefix}:overdue`,
    /** SLA timers: delivery id → epoch ms of its next open deadline (swept by the lifecycle worker). */
    slaDue: `${prefix}:sla:due`,
    /** Repeat-call matching: keyed phone hash or address+category hash → open case id. */
    repeatPhone: (hash: string) => `${prefix}:repeat:phone:${hash}`,
    repeatPlace: (hash: string) => `${prefix}:repeat:place:${hash}`,
    /** A replay run started through the API and not finished yet (its mode, for replay.finished). */
    replayRun: (id: string) => `${prefix}:replay:${id}`,
    /** Queue prefix for BullMQ (not cluster-safe yet: see docs/scaling.md). */
    queuePrefix: `${prefix}:q`,
  };
}

export type Keys = ReturnType<typeof keys>;

/** BullMQ queue name of a platform's deliveries. */
export function deliveryQueueName(platformId: string): string {
  return `deliver.${platformId}`;
}
