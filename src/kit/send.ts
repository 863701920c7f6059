/**
 * `fenliu send FILE --to PLATFORM [--config FILE]`: one alert, one platform, through the engine's
 * own steps — minimise, translate, check the output schema, serialise, authorise, send, classify —
 * printing the exact request and response. No Redis, no queue, no retries: the integrator's first
 * smoke test against a real endpoint (or the sandbox).
 *
 * FILE is a fenliu alert (JSON), or an EIDO / CAP / vendor document, normalised for `--source`.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { OutboundRequest, TranslateContext } from '../../adapters/sdk.js';
import { loadConfig } from '../config/load.js';
import { prepare, redactHeaders } from '../delivery/http.js';
import { minimise } from '../delivery/minimise.js';
import { discoverPlatforms } from '../delivery/discovery.js';
import { classifyResponse, classifyTransportError } from '../delivery/policy.js';
import { ProblemError } from '../errors.js';
import { mapErrors, type Normalised } from '../inbound/common.js';
import { isEido } from '../inbound/eido.js';
import { InboundService } from '../inbound/service.js';
import { validateAlert } from '../ingest/validate.js';
import type { Runtime } from '../runtime.js';
import { KitUsageError } from './adapter-test.js';
import { checkPlatforms } from './config-check.js';

const USAGE = 'usage: fenliu send FILE --to PLATFORM [--config FILE] [--source ID] [--format fenliu|eido|cap|vendor] [--show-secrets] [--timeout-ms N]';

function out(line = ''): void {
  process.stdout.write(`${line}\n`);
}

function pretty(body: string | undefined, contentType: string | undefined): string {
  if (body === undefined || body === '') return '(no body)';
  if (contentType?.includes('json')) {
    try {
      return JSON.stringify(JSON.parse(body), null, 2);
    } catch {
      // not JSON after all: print as is
    }
  }
  return body;
}

export async function sendCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      to: { type: 'string' },
      config: { type: 'string', default: 'config/demo.yaml' },
      source: { type: 'string' },
      format: { type: 'string' },
      'show-secrets': { type: 'boolean', default: false },
      'timeout-ms': { type: 'string' },
    },
  });
  const [file] = positionals;
  if (!file || !values.to) throw new KitUsageError(USAGE);
  const cfg = await loadConfig(values.config!);
  const pc = cfg.platforms.find((p) => p.id === values.to);
  if (!pc) throw new KitUsageError(`no platform "${values.to}" in ${values.config} (have: ${cfg.platforms.map((p) => p.id).join(', ')})`);
  if (values['timeout-ms']) {
    const ms = Number(values['timeout-ms']);
    (pc as Record<string, unknown>).timeouts = { connectMs: ms, headersMs: ms, bodyMs: ms };
  }
  const platforms = await checkPlatforms(cfg, [pc]);
  const platform = platforms.get(pc.id)!;
  // As at start: the platform's own description may set options (Open311 format) and warns of
  // what it will refuse (unknown service codes, unmapped required attributes).
  await discoverPlatforms(platforms, {
    warn: (o, msg) => out(`WARN ${msg}${(o as { err?: { message?: string } }).err?.message ? `: ${(o as { err: { message: string } }).err.message}` : ''}`),
    info: (_o, msg) => out(msg),
  });

  // --- the alert
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new KitUsageError(`cannot read ${file}: ${(err as Error).message}`);
  }
  let body: unknown = text;
  const xml = values.format === 'cap' || (!values.format && text.trimStart().startsWith('<'));
  if (!xml) {
    try {
      body = JSON.parse(text);
    } catch (err) {
      throw new KitUsageError(`${file} is neither JSON nor XML: ${(err as Error).message}`);
    }
  }
  const format = values.format ?? (xml ? 'cap' : isEido(body) ? 'eido' : 'fenliu');
  let alertDoc: unknown = body;
  let n: Normalised | undefined;
  if (format !== 'fenliu') {
    if (!['eido', 'cap', 'vendor'].includes(format)) throw new KitUsageError(`--format must be fenliu, eido, cap or vendor, not ${format}`);
    const source = values.source ? cfg.sources.find((s) => s.id === values.source) : cfg.sources[0];
    if (!source) throw new KitUsageError(`no source "${values.source}" in ${values.config}`);
    if (format === 'vendor' && !source.inbound?.mapping) throw new KitUsageError(`source ${source.id} has no inbound.mapping`);
    try {
      n = new InboundService({ cfg } as Runtime).normalise(format as 'eido' | 'cap' | 'vendor', source, body);
    } catch (err) {
      if (!(err instanceof ProblemError)) throw err;
      out(`✗ ${file}: ${err.code} ${err.message}`);
      for (const e of err.errors ?? []) out(`    ${e.pointer}: ${e.message}`);
      return 1;
    }
    alertDoc = n.alert;
    out(`${file}: ${format.toUpperCase()} normalised for source ${source.id}`);
  }
  const v = validateAlert(alertDoc);
  if (!v.ok || n?.issues.length) {
    const errors = [...(n?.issues ?? []), ...(v.ok ? [] : n ? mapErrors(v.errors, n) : v.errors)];
    out(`✗ ${file} is not a valid alert (${errors.length} problem(s)); nothing was sent:`);
    for (const e of errors) out(`    ${e.pointer}: ${e.message}`);
    return 1;
  }
  const alert = v.alert;

  // --- the engine's steps, in its order
  const now = new Date();
  const stamp = now.getTime().toString(36);
  const ctx: TranslateContext = {
    platform: { id: platform.id, config: pc.options },
    delivery: { id: `dlv_send_${stamp}.${platform.id}`, alertId: `alt_send_${stamp}` },
    alertId: `alt_send_${stamp}`,
    now: now.toISOString(),
    interveneBy: new Date(now.getTime() + platform.settings.interveneHours * 3_600_000).toISOString(),
  };
  const minimised = minimise(alert, pc.fields);
  out(`platform ${platform.id}: adapter ${platform.adapter.id}@${platform.adapter.version}, ${pc.url}`);
  const dropped = Object.keys(alert).filter((k) => !(k in minimised));
  if (dropped.length) out(`data minimisation: not sent to this platform: ${dropped.join(', ')} (grant with platforms[].fields)`);
  let req: OutboundRequest;
  try {
    req = platform.adapter.translate(minimised, ctx);
  } catch (err) {
    out(`✗ translate failed: ${(err as Error).message}`);
    return 1;
  }
  if (req.body !== undefined && typeof req.body !== 'string' && !platform.validateOutput(req.body)) {
    out(`✗ the translated body violates the adapter's output schema (a configuration bug); nothing was sent:`);
    for (const e of platform.validateOutput.errors ?? []) out(`    ${e.instancePath || '/'} ${e.message}`);
    out(JSON.stringify(req.body, null, 2));
    return 1;
  }
  const prepared = prepare(pc.url, req);
  const sent = await platform.client.authorise(prepared, ctx.delivery.id);
  const headers = values['show-secrets'] ? sent.headers : redactHeaders(sent.headers);
  out('');
  out(`> ${sent.method} ${sent.url}`);
  for (const [k, val] of Object.entries(headers)) out(`> ${k}: ${val}`);
  out('>');
  out(pretty(sent.body, sent.headers['content-type']));
  out('');
  let res;
  try {
    res = await platform.client.send(sent);
  } catch (err) {
    const d = classifyTransportError(err);
    out(`✗ no answer: ${d.reason}`);
    out(`= ${d.outcome} (${d.errorClass}): the engine would retry this on its schedule`);
    return 1;
  }
  out(`< HTTP ${res.response.status} (${res.durationMs} ms${res.truncated ? ', body truncated' : ''})`);
  for (const [k, val] of Object.entries(res.response.headers)) out(`< ${k}: ${val}`);
  out('<');
  out(pretty(res.response.body, res.response.headers['content-type']));
  out('');
  const d = classifyResponse(res.response, () => platform.adapter.interpretResponse(res.response, ctx));
  if (d.outcome === 'delivered') {
    out(`= delivered${d.remoteTicketId ? `: ticket ${d.remoteTicketId}` : ''}${d.pendingToken ? `: pending token ${d.pendingToken}` : ''}`);
    return 0;
  }
  out(`= ${d.outcome} (${d.errorClass}): ${d.reason ?? ''}${d.outcome === 'retry' ? ' — the engine would retry' : ' — the engine would give up and dead-letter'}`);
  return 1;
}
