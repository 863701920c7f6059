import { parseArgs } from 'node:util';
import { request } from 'undici';
import { loadConfig } from '../config/load.js';
import { loadPlatforms } from '../delivery/platforms.js';
import { collectAlerts, diffAlert, type Difference } from './replay.js';
import { setAuditKeys } from './format.js';
import { openReplayRecorder } from './replay-record.js';
import { redisTarget } from '../redis/connect.js';

interface Out {
  out: (s: string) => void;
  err: (s: string) => void;
  isTTY: boolean;
}

const std: Out = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s), isTTY: !!process.stderr.isTTY };

/** A progress line with counts and ETA on stderr, redrawn in place on a terminal. */
export function progress(io: Out, total: number, label: string) {
  const started = Date.now();
  let last = 0;
  let shown = -1;
  return (done: number, force = false) => {
    const now = Date.now();
    if (done === shown || (!force && now - last < 200 && done < total)) return;
    last = now;
    shown = done;
    const width = 24;
    const filled = total ? Math.round((done / total) * width) : width;
    const rate = done / Math.max(1, (now - started) / 1000);
    const eta = rate > 0 ? Math.ceil((total - done) / rate) : 0;
    const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${label}, ETA ${eta}s`;
    io.err(io.isTTY ? `\r${line}` : `${line}\n`);
    if (done >= total && io.isTTY) io.err('\n');
  };
}

function time(v: string | undefined, name: string): number | undefined {
  if (!v) return undefined;
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new Error(`--${name} must be an ISO 8601 time`);
  return t;
}

/**
 * `fenliu replay DIR --mode diff|redeliver`: diff re-translates logged alerts with today's code and
 * config; redeliver asks a running fenliu to send the selected deliveries again.
 */
export async function replayCommand(argv: string[], io: Out = std): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      from: { type: 'string' },
      to: { type: 'string' },
      source: { type: 'string' },
      platform: { type: 'string' },
      mode: { type: 'string', default: 'diff' },
      config: { type: 'string', default: 'config/demo.yaml' },
      json: { type: 'boolean', default: false },
      reason: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      url: { type: 'string', default: process.env.FENLIU_URL ?? 'http://127.0.0.1:8110' },
      key: { type: 'string' },
      redis: { type: 'string' },
      report: { type: 'string' },
    },
  });
  const dir = positionals[0];
  if (!dir || !['diff', 'redeliver'].includes(values.mode!)) {
    io.err('usage: fenliu replay DIR [--from ISO] [--to ISO] [--source ID] [--platform ID] --mode diff|redeliver [--config FILE] [--json] [--redis URL | --report FILE]\n       redeliver also needs --reason TEXT and an admin key (--key or FENLIU_KEY); --dry-run lists what would be sent\n');
    return 2;
  }
  const sel = { from: time(values.from, 'from'), to: time(values.to, 'to'), source: values.source, platform: values.platform };
  // The config also holds the audit keys, needed to read encrypted bodies.
  const cfg = await loadConfig(values.config!);
  if (cfg.audit.encryption) setAuditKeys(cfg.audit.encryption.currentKey, cfg.audit.encryption.keys);
  const alerts = await collectAlerts(dir, sel);
  const selection = { from: values.from, to: values.to, source: values.source, platform: values.platform };
  if (values.mode === 'diff') {
    const platforms = await loadPlatforms(cfg);
    const rec = await openReplayRecorder({ mode: 'diff', reason: values.reason, redis: redisTarget(cfg.redis, {}, values.redis), prefix: cfg.redis.prefix, report: values.report, warn: io.err });
    await rec.started({ selection, selected: alerts.reduce((n, a) => n + a.sent.size, 0), alerts: alerts.length });
    const tick = progress(io, alerts.length, 'alerts');
    const diffs: Difference[] = [];
    let deliveries = 0;
    for (const [i, a] of alerts.entries()) {
      deliveries += a.sent.size;
      const found = diffAlert(a, cfg, platforms);
      diffs.push(...found);
      for (const [deliveryId, sent] of a.sent) {
        const kinds = found.filter((d) => d.deliveryId === deliveryId || !d.deliveryId).map((d) => d.kind);
        await rec.delivery({ alertId: a.alertId, deliveryId, platformId: sent.platformId, data: { result: kinds.length ? 'differs' : 'same', differences: kinds } });
      }
      tick(i + 1);
    }
    tick(alerts.length, true);
    await rec.finished({ alerts: alerts.length, deliveries, differences: diffs.length });
    const { where } = await rec.close();
    io.err(`replay ${rec.replayId} recorded in ${where}\n`);
    if (values.json) io.out(`${JSON.stringify({ alerts: alerts.length, deliveries, differences: diffs }, null, 2)}\n`);
    else {
      for (const d of diffs) io.out(`DIFF ${d.kind.padEnd(15)} ${d.alertId} ${d.deliveryId ?? ''} ${d.platformId ?? ''}\n     ${d.detail}\n`);
      const byKind = new Map<string, number>();
      for (const d of diffs) byKind.set(d.kind, (byKind.get(d.kind) ?? 0) + 1);
      io.out(`\n| alerts | deliveries | differences |${[...byKind.keys()].map((k) => ` ${k} |`).join('')}\n`);
      io.out(`|--------|------------|-------------|${[...byKind.keys()].map(() => '---|').join('')}\n`);
      io.out(`| ${alerts.length} | ${deliveries} | ${diffs.length} |${[...byKind.values()].map((v) => ` ${v} |`).join('')}\n`);
    }
    return diffs.length ? 1 : 0;
  }
  // redeliver
  if (!values.reason) {
    io.err('fenliu replay: --reason is required for redeliver (it is written to the audit log)\n');
    return 2;
  }
  const targets = alerts.flatMap((a) => [...a.sent.entries()].map(([id, s]) => ({ alertId: a.alertId, deliveryId: id, platformId: s.platformId })));
  if (values['dry-run']) {
    for (const t of targets) io.out(`would redeliver ${t.deliveryId} (${t.platformId}) of ${t.alertId}\n`);
    io.out(`${targets.length} deliveries would be sent again\n`);
    return 0;
  }
  const key = values.key ?? process.env.FENLIU_KEY;
  if (!key) {
    io.err('fenliu replay: an admin key is required (--key or FENLIU_KEY)\n');
    return 2;
  }
  // The run is on the log: replay.started here, replay.delivery per redelivery, replay.finished.
  const started = await request(`${values.url}/v1/replays`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ mode: 'redeliver', reason: values.reason, selection: Object.fromEntries(Object.entries(selection).filter(([, v]) => v !== undefined)), selected: targets.length }),
  });
  const startedText = await started.body.text();
  if (started.statusCode !== 201) {
    io.err(`fenliu replay: the server refused to start a replay run: HTTP ${started.statusCode} ${startedText.slice(0, 200)}\n`);
    return 1;
  }
  const { replayId } = JSON.parse(startedText) as { replayId: string };
  const tick = progress(io, targets.length, 'deliveries');
  const results = { queued: 0, missing: 0, refused: 0 };
  const failures: string[] = [];
  for (const [i, t] of targets.entries()) {
    const res = await request(`${values.url}/v1/deliveries/${encodeURIComponent(t.deliveryId)}/redeliver`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ reason: values.reason, replayId }),
    });
    const text = await res.body.text();
    if (res.statusCode === 202) results.queued++;
    else if (res.statusCode === 404) results.missing++;
    else {
      results.refused++;
      failures.push(`${t.deliveryId}: HTTP ${res.statusCode} ${text.slice(0, 200)}`);
    }
    tick(i + 1);
  }
  const fin = await request(`${values.url}/v1/replays/${encodeURIComponent(replayId)}/finish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ counts: { selected: targets.length, ...results } }),
  });
  await fin.body.text();
  if (fin.statusCode !== 200) io.err(`fenliu replay: replay.finished not recorded: HTTP ${fin.statusCode}\n`);
  if (values.json) io.out(`${JSON.stringify({ replayId, ...results, failures }, null, 2)}\n`);
  else {
    for (const f of failures) io.out(`FAILED ${f}\n`);
    io.out(`\n| selected | queued | not in Redis | refused |\n|---|---|---|---|\n| ${targets.length} | ${results.queued} | ${results.missing} | ${results.refused} |\n`);
  }
  return results.refused ? 1 : 0;
}
