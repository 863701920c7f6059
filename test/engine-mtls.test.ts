import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { startRedis } from './helpers/redis.js';
import { KEYS, alert, api, startTestFenliu, testConfig } from './helpers/fenliu.js';
import { until } from './helpers/engine.js';

/** A private CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl. */
function makePki(dir: string) {
  const ssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=fenliu test CA']);
  for (const [name, cn, ext] of [
    ['server', '127.0.0.1', 'subjectAltName=IP:127.0.0.1'],
    ['client', 'fenliu-gateway', 'extendedKeyUsage=clientAuth'],
  ]) {
    ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
    writeFileSync(join(dir, `${name}.ext`), `${ext}\n`);
    ssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`]);
  }
}

t.test('mTLS: fenliu presents its client certificate and checks the platform against the CA', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fenliu-mtls-'));
  try {
    makePki(dir);
  } catch (err) {
    t.comment(`openssl could not make test certificates: ${(err as Error).message}`);
    t.pass('skipped: no openssl');
    return;
  }
  const seen: { cn?: string; authorized: boolean }[] = [];
  const server: Server = createServer(
    { key: readFileSync(join(dir, 'server.key')), cert: readFileSync(join(dir, 'server.pem')), ca: readFileSync(join(dir, 'ca.pem')), requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      const sock = req.socket as TLSSocket;
      seen.push({ cn: (sock.getPeerCertificate().subject as { CN?: string } | undefined)?.CN, authorized: sock.authorized });
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ code: 0, msg: '接收成功', data: { 工单编号: `GD-TLS-${seen.length}` } }));
      });
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `https://127.0.0.1:${(server.address() as { port: number }).port}`;
  const redis = await startRedis();
  const platform = (tls: Record<string, string>) => ({ id: 'p-12345', adapter: 'hotline-12345', url, options: { defaultCategoryCode: '9999' }, tls, retry: { delaysMs: [50], jitter: 'none' } });
  const doc = testConfig({
    platforms: [platform({ cert: join(dir, 'client.pem'), key: join(dir, 'client.key'), ca: join(dir, 'ca.pem') })],
    routes: [{ id: 'default', default: true, targets: ['p-12345'] }],
  });
  const f = await startTestFenliu({ redisUrl: redis.url, cfg: doc, role: 'all' });
  t.teardown(async () => {
    await f.stop();
    await redis.stop();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const src = api(f.url, KEYS.sourceA);
  const res = await src.post('/v1/alerts', alert('TLS-1'));
  const id = res.body.deliveries[0].id;
  const admin = api(f.url, KEYS.admin);
  const d = await until(async () => {
    const x = (await admin.get(`/v1/deliveries/${id}`)).body;
    return x.state === 'delivered' ? x : undefined;
  }, 10_000, 'delivered over mTLS');
  t.equal(d.remoteTicketId, 'GD-TLS-1');
  t.same(seen[0], { cn: 'fenliu-gateway', authorized: true }, 'the platform saw fenliu’s client certificate');

  // Without the client certificate the platform refuses the handshake: a transport fault, retried then failed.
  await f.stop();
  const f2 = await startTestFenliu({ redisUrl: redis.url, cfg: { ...doc, redis: { prefix: 'nocert' }, platforms: [platform({ ca: join(dir, 'ca.pem') })] }, role: 'all' });
  t.teardown(() => f2.stop());
  const res2 = await api(f2.url, KEYS.sourceA).post('/v1/alerts', alert('TLS-2'));
  const id2 = res2.body.deliveries[0].id;
  const d2 = await until(async () => {
    const x = (await api(f2.url, KEYS.admin).get(`/v1/deliveries/${id2}`)).body;
    return x.state === 'failed' ? x : undefined;
  }, 15_000, 'failed without a client certificate');
  t.equal(d2.attempts, 2, 'retried once, as configured');
  t.match(d2.lastError, /connection|tls|socket/i, 'classified as a transport fault');
  t.equal(seen.length, 1, 'no request got through without the certificate');
});
