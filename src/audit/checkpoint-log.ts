/**
 * Signing and publishing checkpoints of the audit tree: the signed note goes to `<dir>/checkpoint`
 * (temp file, fsync, rename) and to Redis (`<prefix>:{audit}:checkpoint`, {size, root, note}),
 * where the API serves it and receipts read {size, root} from a cached copy.
 */
import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { duplicateConnection } from '../redis/connect.js';
import { formatCheckpoint, parseCheckpointBody, parseNote, signNote, type NoteSigner } from './checkpoint.js';
import { EMPTY_ROOT } from './merkle.js';
import { CHECKPOINT_FILE, readCheckpointFile } from './proof.js';
import { TileTree, writeDurably } from './tiles.js';

export function auditCheckpointKey(prefix: string): string {
  return `${prefix}:{audit}:checkpoint`;
}

/** Pub/sub channel on which API processes ask the archiving process for a checkpoint now. */
export function auditCheckpointRequestChannel(prefix: string): string {
  return `${prefix}:audit:checkpoint:request`;
}

/** List the archiving process pushes its answer to one request on (short-lived). */
export function auditCheckpointReplyKey(prefix: string, requestId: string): string {
  return `${prefix}:{audit}:checkpoint:reply:${requestId}`;
}

export interface PublishedCheckpoint {
  size: number;
  /** base64 root hash */
  root: string;
  /** the signed note */
  note: string;
}

export interface SigningOptions {
  signer: NoteSigner;
  /** checkpoint origin line; default the key name */
  origin?: string;
}

/**
 * Signs a checkpoint of the tree now on disk unless `<dir>/checkpoint` already states it (then
 * that file, cosignatures included, is kept). The tiles are checked against tree.json first.
 */
export async function refreshCheckpoint(dir: string, s: SigningOptions): Promise<PublishedCheckpoint & { signed: boolean }> {
  const tree = await TileTree.open(dir);
  const root = tree.size ? await tree.root() : EMPTY_ROOT;
  const body = formatCheckpoint({ origin: s.origin ?? s.signer.name, size: tree.size, root });
  const existing = await readCheckpointFile(dir);
  if (existing) {
    try {
      if (parseNote(existing).text === body) return { size: tree.size, root: root.toString('base64'), note: existing, signed: false };
    } catch {
      // unreadable: sign a new one
    }
  }
  const note = signNote(body, s.signer);
  await mkdir(dir, { recursive: true });
  await writeDurably(join(dir, CHECKPOINT_FILE), note);
  return { size: tree.size, root: root.toString('base64'), note, signed: true };
}

export async function publishCheckpoint(redis: Redis, prefix: string, cp: PublishedCheckpoint): Promise<void> {
  await redis.set(auditCheckpointKey(prefix), JSON.stringify({ size: cp.size, root: cp.root, note: cp.note }));
}

export async function readPublishedCheckpoint(redis: Redis, prefix: string): Promise<PublishedCheckpoint | null> {
  const raw = await redis.get(auditCheckpointKey(prefix));
  if (!raw) return null;
  const v = JSON.parse(raw) as PublishedCheckpoint;
  // the note is the truth; size and root are a convenience copy
  const cp = parseCheckpointBody(parseNote(v.note).text);
  return { size: cp.size, root: cp.root.toString('base64'), note: v.note };
}

export interface CheckpointPublisherOptions extends SigningOptions {
  redis: Redis;
  prefix: string;
  dir: string;
  /** Time between checkpoints. Default 60 s. */
  intervalMs?: number;
  logger?: { warn(obj: object, msg?: string): void };
}

/** Signs and publishes a checkpoint at an interval (in the archiving process) and on demand. */
export class CheckpointPublisher {
  private timer: NodeJS.Timeout | null = null;
  private busy: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: CheckpointPublisherOptions) {}

  start(): void {
    if (this.timer) return;
    this.listen();
    this.publishNow().catch((err: unknown) => this.o.logger?.warn({ err }, 'audit checkpoint: not published'));
    this.timer = setInterval(() => {
      this.publishNow().catch((err: unknown) => this.o.logger?.warn({ err }, 'audit checkpoint: not published'));
    }, this.o.intervalMs ?? 60_000);
    this.timer.unref();
  }

  stop(): Promise<unknown> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.sub?.disconnect();
    this.sub = null;
    return this.busy.catch(() => undefined);
  }

  private sub: Redis | null = null;

  /**
   * On demand across processes: an API process (which may not archive) publishes a request id on
   * the request channel; this process signs and publishes, then pushes the result (or the error)
   * to the request's reply list, which the asker waits on with BLPOP.
   */
  private listen(): void {
    const { redis, prefix } = this.o;
    const sub = duplicateConnection(redis, { enableOfflineQueue: true }); // the app's connection may refuse commands while connecting
    this.sub = sub;
    sub.on('error', (err: unknown) => this.o.logger?.warn({ err }, 'audit checkpoint: request channel'));
    sub.on('message', (_channel: string, requestId: string) => {
      this.publishNow()
        .then((cp) => ({ ok: true, size: cp.size, root: cp.root, note: cp.note }), (err: unknown) => ({ ok: false, error: (err as Error).message }))
        .then(async (answer) => {
          const key = auditCheckpointReplyKey(prefix, requestId);
          await redis.multi().rpush(key, JSON.stringify(answer)).pexpire(key, 60_000).exec();
        })
        .catch((err: unknown) => this.o.logger?.warn({ err }, 'audit checkpoint: request not answered'));
    });
    sub.subscribe(auditCheckpointRequestChannel(prefix)).catch((err: unknown) => this.o.logger?.warn({ err }, 'audit checkpoint: cannot listen for requests'));
  }

  /** Resolves once this process listens for on-demand requests (tests). */
  listening(): Promise<unknown> {
    return this.sub ? this.sub.subscribe(auditCheckpointRequestChannel(this.o.prefix)) : Promise.resolve();
  }

  /** Signs (if the tree grew) and publishes now; one at a time. */
  publishNow(): Promise<PublishedCheckpoint> {
    const run = async () => {
      const cp = await refreshCheckpoint(this.o.dir, this.o);
      // never step back: a process that sees fewer records (another host, a lost directory)
      // must not replace a larger published checkpoint
      const published = await readPublishedCheckpoint(this.o.redis, this.o.prefix).catch(() => null);
      if (published && published.size > cp.size) {
        this.o.logger?.warn({ published: published.size, local: cp.size, dir: this.o.dir }, 'audit checkpoint: the published checkpoint is larger than the tree in this directory; not replacing it');
        return published;
      }
      await publishCheckpoint(this.o.redis, this.o.prefix, cp);
      return cp;
    };
    const p = this.busy.then(run, run);
    this.busy = p.catch(() => undefined);
    return p;
  }
}

/** Why an on-demand checkpoint could not be had: nobody signs, or the signer failed or was slow. */
export class CheckpointRequestError extends Error {}

/**
 * Asks the archiving process (any process, through Redis) to sign and publish a checkpoint now,
 * and returns it. Throws `CheckpointRequestError` when no process with `audit.signing` listens,
 * when it fails, or after `timeoutMs` (default 10 s).
 */
export async function requestCheckpoint(redis: Redis, prefix: string, timeoutMs = 10_000): Promise<PublishedCheckpoint> {
  const requestId = randomUUID();
  // BLPOP blocks its connection: a dedicated one per request (on-demand checkpoints are rare)
  const waiter = duplicateConnection(redis, { enableOfflineQueue: true });
  try {
    const wait = waiter.blpop(auditCheckpointReplyKey(prefix, requestId), timeoutMs / 1000);
    wait.catch(() => undefined); // rejected by the disconnect below when nobody listens
    const listeners = await redis.publish(auditCheckpointRequestChannel(prefix), requestId);
    if (listeners === 0) throw new CheckpointRequestError('no archiving process with audit.signing is running to sign a checkpoint');
    const got = await wait;
    if (!got) throw new CheckpointRequestError(`the archiving process did not answer within ${timeoutMs} ms`);
    const answer = JSON.parse(got[1]) as { ok: boolean; error?: string } & PublishedCheckpoint;
    if (!answer.ok) throw new CheckpointRequestError(`the archiving process could not sign a checkpoint: ${answer.error}`);
    return { size: answer.size, root: answer.root, note: answer.note };
  } finally {
    waiter.disconnect();
  }
}

/**
 * {size, root} of the latest published checkpoint for receipts and feedback: refreshed in the
 * background, so a request costs nothing but reading a field.
 */
export class CheckpointCache {
  private value: { size: number; root: string } | undefined;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly refreshMs = 5_000,
  ) {}

  get current(): { size: number; root: string } | undefined {
    return this.value;
  }

  async refresh(): Promise<void> {
    const raw = await this.redis.get(auditCheckpointKey(this.prefix));
    if (!raw) return;
    const v = JSON.parse(raw) as PublishedCheckpoint;
    this.value = { size: v.size, root: v.root };
  }

  start(): void {
    if (this.timer) return;
    this.refresh().catch(() => undefined);
    this.timer = setInterval(() => this.refresh().catch(() => undefined), this.refreshMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
