/**
 * Simulated receiving platforms for the demo and the tests: real HTTP servers on loopback, one
 * per platform, each speaking one adapter's protocol and able to fail in the ways real
 * municipal systems do (outage, throttling, hang, reset, trickling body, HTML error page).
 *
 * Control from a shell:
 *   curl -XPOST $URL/_sandbox/fault -d '{"fault":"5xx","times":3}'
 *   curl $URL/_sandbox/received
 */
import { SandboxPlatform, type SandboxPlatformOptions } from './platform.js';
import { SANDBOX_KINDS } from './protocols.js';

export { FAULTS, SandboxPlatform } from './platform.js';
export type { FaultName, FaultSpec, ReceivedRequest, SandboxPlatformOptions } from './platform.js';
export { SANDBOX_KINDS } from './protocols.js';
export type { SandboxKind, SandboxTicket } from './protocols.js';

export interface SandboxOptions {
  platforms: SandboxPlatformOptions[];
  /** Interface to bind; loopback by default, since the sandbox has no authentication. */
  host?: string;
}

export interface Sandbox {
  platforms: Map<string, SandboxPlatform>;
  /** The platform with this id; throws when there is none (a typo in a test should be loud). */
  get(id: string): SandboxPlatform;
  close(): Promise<void>;
}

export async function startSandbox(opts: SandboxOptions): Promise<Sandbox> {
  const host = opts.host ?? '127.0.0.1';
  const platforms = new Map<string, SandboxPlatform>();
  const close = async () => {
    await Promise.all([...platforms.values()].map((p) => p.close()));
  };
  try {
    for (const o of opts.platforms) {
      if (!SANDBOX_KINDS.includes(o.kind)) throw new Error(`sandbox: platform ${o.id} has unknown kind "${String(o.kind)}"`);
      if (platforms.has(o.id)) throw new Error(`sandbox: duplicate platform id ${o.id}`);
      const p = new SandboxPlatform(o, host);
      await p.listen();
      platforms.set(o.id, p);
    }
  } catch (err) {
    await close();
    throw err;
  }
  return {
    platforms,
    get(id) {
      const p = platforms.get(id);
      if (!p) throw new Error(`sandbox: no platform ${id} (have ${[...platforms.keys()].join(', ')})`);
      return p;
    },
    close,
  };
}

/**
 * Sends a platform-side callback (签收, 办结, ...) to fenliu, the way the simulated platform
 * would. Signing is left to the caller through `headers`, because the scheme belongs to fenliu's
 * callback endpoint, not to the sandbox.
 */
export async function sendCallback(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
    body: text,
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, headers: Object.fromEntries(res.headers), body: await res.text() };
}
