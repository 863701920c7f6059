/**
 * The key layout (docs/scaling.md, "Redis Cluster"): every key of one alert and of its deliveries,
 * and every index entry about them, lives in one of BUCKETS hash-tag buckets, so each Lua script
 * and MULTI touches one slot. An alert's bucket is in its id (the last character, see
 * src/store/ids.ts), and a delivery id carries its alert's id, so a key is found from an id alone.
 * Indexes that span alerts are one key per bucket, read with a fan-out over `bucketList`.
 * The same keys are used on a single Redis; only the grouping of buckets per call differs (setStandalone).
 */
export const BUCKETS = 16;

// Tags chosen so that bucket b's slot lies in the b-th sixteenth of the 16384 slots: the
// default `redis-cli --cluster create` ranges then give every shard 5 or 6 buckets (8 of 2).
const TAGS = ['b0-954', 'b1-412', 'b2-4859', 'b3-886', 'b4-1914', 'b5-1042', 'b6-3396', 'b7-518', 'b8-1353', 'b9-200', 'b10-4836', 'b11-3824', 'b12-2231', 'b13-3770', 'b14-2903', 'b15-890'];

const B32 = '0123456789abcdefghjkmnpqrstvwxyz';

/**
 * Bucket of an alert id (`alt_…`) or of an id derived from one (`dlv_<alert>.<platform>`,
 * `fb_<alert>.<n>`, `esc_<alert>.<n>`): the alert id's last character, modulo BUCKETS.
 */
export function bucketOf(id: string): number {
  const dot = id.indexOf('.');
  const c = dot < 0 ? id[id.length - 1] : id[dot - 1];
  const i = B32.indexOf(c);
  return i < 0 ? 0 : i % BUCKETS;
}

/** Bucket of a string that is not an id (idempotency key, repeat-call hash): FNV-1a. */
export function bucketOfString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return (h >>> 0) % BUCKETS;
}

/** The hash tag of a bucket, braces included. */
export function bucketTag(b: number): string {
  return `{${TAGS[b]}}`;
}

/** The bucket a key belongs to (from its hash tag), or undefined for a key outside the buckets. */
export function bucketOfKey(key: string): number | undefined {
  const m = /\{([^}]*)\}/.exec(key);
  if (!m) return undefined;
  const i = TAGS.indexOf(m[1]);
  return i < 0 ? undefined : i;
}

const standalone = new Set<string>();

/**
 * Declares that the data under `prefix` lives on one Redis (a URL or Sentinel), not a Cluster.
 * Slots then mean nothing: one script call may write the keys of every bucket (`groups`), and
 * audit events go straight to the one stream the archiver reads (`audit(b)`), with no relay copy.
 * Not declared (the default, and always on Cluster): one bucket per script, per-bucket audit
 * streams relayed by src/store/audit-relay.ts. Both are correct on a single Redis; a process that
 * did not declare it (a CLI tool) just takes the Cluster path.
 */
export function setStandalone(prefix: string, on: boolean): void {
  if (on) standalone.add(prefix);
  else standalone.delete(prefix);
}

export function isStandalone(prefix: string): boolean {
  return standalone.has(prefix);
}

/** Every Redis key fenliu writes, in one place. */
export function keys(prefix: string) {
  const at = (id: string) => `${prefix}:${bucketTag(bucketOf(id))}`;
  const inB = (b: number) => `${prefix}:${bucketTag(b)}`;
  const auditStream = `${prefix}:{audit}`;
  return {
    bucketList: Array.from({ length: BUCKETS }, (_, b) => b),
    /**
     * Buckets that one script call (or MULTI) may write together: all of them on a standalone
     * Redis (setStandalone), each alone otherwise (one slot per call on Cluster).
     */
    groups: (buckets: Iterable<number>): number[][] => (standalone.has(prefix) ? [[...buckets]] : [...buckets].map((b) => [b])),
    alert: (id: string) => `${at(id)}:alert:${id}`,
    /**
     * The id of the ingest log entry that materialises the alert (src/store/ingest-log.ts), from
     * the 202 until the entry is written out: while it exists, the alert's deliveries exist only
     * as that entry. A key of its own, not a field of the record, so that materialising deletes
     * ~60 bytes instead of rewriting the record (a ~1 KB rewrite, 11% of the AOF's bytes per alert).
     */
    alertLog: (id: string) => `${at(id)}:alert:${id}:log`,
    /** All alerts of a bucket by receipt time (score: epoch ms). */
    alerts: (b: number) => `${inB(b)}:alerts`,
    /** Alerts of one source in a bucket by receipt time. */
    alertsBySource: (b: number, sourceId: string) => `${inB(b)}:alerts:src:${sourceId}`,
    /** The bucket of an idempotency key; the alert it creates gets an id in the same bucket. */
    idemBucket: (sourceId: string, key: string) => bucketOfString(`${sourceId}\n${key}`),
    idem: (sourceId: string, key: string) => `${inB(bucketOfString(`${sourceId}\n${key}`))}:idem:${sourceId}:${key}`,
    delivery: (id: string) => `${at(id)}:dlv:${id}`,
    attempts: (id: string) => `${at(id)}:dlv:${id}:attempts`,
    history: (id: string) => `${at(id)}:dlv:${id}:history`,
    /** Remote ticket id → delivery id, per platform and bucket (a lookup asks every bucket). */
    ticket: (b: number, platformId: string) => `${inB(b)}:ticket:${platformId}`,
    deadLetters: (b: number, platformId: string) => `${inB(b)}:dead:${platformId}`,
    /** The platform's last failed attempt (at, errorClass, status, message, deliveryId) in a bucket: one small hash, overwritten by the attempt script (same slot as the delivery); a read takes the newest of the buckets. */
    platformLastError: (b: number, platformId: string) => `${inB(b)}:platform:${platformId}:lasterror`,
    /** Deliveries that reached `delivered`, by time (score: epoch ms): the console's flow out. */
    flowDelivered: (b: number, platformId: string) => `${inB(b)}:flow:delivered:${platformId}`,
    /** Deliveries created after ingest (re-routes, feedback, escalations), in order. */
    alertDeliveries: (alertId: string) => `${at(alertId)}:alert:${alertId}:dlv`,
    /** Platforms that ever held this alert: a returned case never goes back to one of them. */
    alertPlatforms: (alertId: string) => `${at(alertId)}:alert:${alertId}:platforms`,
    alertAux: (alertId: string) => `${at(alertId)}:alert:${alertId}:aux`,
    /** Deliveries of a platform that are delivered but not final: what polling asks about. */
    open: (b: number, platformId: string) => `${inB(b)}:open:${platformId}`,
    /**
     * A bucket's ingest log (a Redis Stream): one entry per ingest script call, one field per alert
     * (alert id → what materialising it needs beside its record), read by the dispatcher's
     * consumer group and deleted once materialised (src/ingest/dispatcher.ts).
     */
    ingestLog: (b: number) => `${inB(b)}:ingest`,
    /** Ingest log entries the dispatcher could not read, copied as they were (field `entry`: their id) before deletion. */
    ingestParked: (b: number) => `${inB(b)}:ingest:parked`,
    /**
     * A platform's work set in a bucket (src/delivery/work.ts): member a job id (it starts with its
     * delivery's id, so it is in the delivery's bucket), score the epoch ms it is due. Urgent jobs
     * have their own set, taken before the normal one.
     */
    work: (b: number, platformId: string, urgent: boolean) => `${inB(b)}:work:${platformId}:${urgent ? 'u' : 'n'}`,
    /** Jobs of a platform being attempted in a bucket: member a job id, score its lease expiry (epoch ms). */
    working: (b: number, platformId: string) => `${inB(b)}:working:${platformId}`,
    /**
     * Job data of a bucket's jobs that are not plain first deliveries (field: job id → JSON), and
     * per job its attempts made (`<id>#n`) and lease expiries (`<id>#s`); removed when the job ends.
     */
    jobs: (b: number) => `${inB(b)}:jobs`,
    /** A platform's shared rate-limit window (a counter with a TTL), one key per platform. */
    rate: (platformId: string) => `${prefix}:rate:{${platformId}}`,
    /** Before the fenliu work sets: delivery ids whose BullMQ job may not be added yet. Read only by the migration (src/store/migrate.ts). */
    outbox: (b: number) => `${inB(b)}:outbox`,
    /** Where a script writing bucket b's keys appends audit events: the bucket's stream, relayed to the one stream the archiver reads; that stream itself on a standalone Redis (setStandalone). */
    audit: (b: number) => (standalone.has(prefix) ? auditStream : `${inB(b)}:audit`),
    /** A bucket's own audit stream (what the relay reads), whatever the mode. */
    bucketAudit: (b: number) => `${inB(b)}:audit`,
    seenEvent: (platformId: string, eventId: string) => `${prefix}:evt:${platformId}:${eventId}`,
    /** Callback message ids (webhook-id) seen: a replayed callback is refused. */
    seenMessage: (platformId: string, messageId: string) => `${prefix}:msg:${platformId}:${messageId}`,
    /** Counters for /v1/stats that records cannot give (refusals, repeats, overdue), per bucket. */
    stats: (b: number) => `${inB(b)}:stats`,
    /** Refused alerts (no alert id, so no bucket): one key, written with their audit event's relay slot. */
    refusals: `${prefix}:{audit}:refusals`,
    /** Deliveries with a missed deadline that are not settled yet (the SLA board), per bucket. */
    overdue: (b: number) => `${inB(b)}:overdue`,
    /** SLA timers: delivery id → epoch ms of its next open deadline (swept by the lifecycle worker), per bucket. */
    slaDue: (b: number) => `${inB(b)}:sla:due`,
    /** Repeat-call matching: keyed phone hash or address+category hash → open case id (bucket from the hash). */
    repeatPhone: (hash: string) => `${inB(bucketOfString(hash))}:repeat:phone:${hash}`,
    repeatPlace: (hash: string) => `${inB(bucketOfString(hash))}:repeat:place:${hash}`,
    /** Queue prefix of the lifecycle queue (its own hash tag: all of a BullMQ queue's keys share a slot). */
    queuePrefix: `{${prefix}:q}`,
    /** Queue prefix of a platform's BullMQ delivery queue before the work sets (read by the migration). */
    queuePrefixOf: (platformId: string) => platformQueuePrefix(`{${prefix}:q}`, platformId),
    /** A replay run started through the API and not finished yet (its mode, for replay.finished): in the audit stream's slot, written in one MULTI with replay.started. */
    replayRun: (id: string) => `${prefix}:{audit}:replay:${id}`,
  };
}

export type Keys = ReturnType<typeof keys>;

/** A platform queue's prefix from the lifecycle queue's: `{fenliu:q}` → `{fenliu:q:<platform>}`. */
export function platformQueuePrefix(queuePrefix: string, platformId: string): string {
  return queuePrefix.endsWith('}') ? `${queuePrefix.slice(0, -1)}:${platformId}}` : `${queuePrefix}:${platformId}`;
}

/** BullMQ queue name of a platform's deliveries before the work sets (the migration reads it: src/store/migrate.ts). */
export function deliveryQueueName(platformId: string): string {
  return `deliver.${platformId}`;
}
