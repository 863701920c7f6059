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
    /** Deliveries that reached `delivered`, by time (score: epoch ms): the console's flow out. */
    flowDelivered: (platformId: string) => `${prefix}:flow:delivered:${platformId}`,
    /** Queue prefix for BullMQ; the braces keep each platform's queue on one Redis Cluster shard. */
    queuePrefix: `${prefix}:q`,
  };
}

export type Keys = ReturnType<typeof keys>;

/** BullMQ queue name of a platform's deliveries. */
export function deliveryQueueName(platformId: string): string {
  return `deliver.${platformId}`;
}
