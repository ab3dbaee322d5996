import fs from 'node:fs';
import net from 'node:net';

/**
 * A unix socket -> TCP forwarder, run by the supervisor inside the control plane's netns
 * (`ip netns exec <cluster>-cp node uds-proxy.js SOCKET HOST PORT`). The socket is a file,
 * so processes in any netns of the machine, the CLI included, reach the control plane
 * through it while no address or route is added to the machine's own netns. TLS is end to
 * end: the bytes are passed through untouched.
 */
export function runUdsProxy(socketPath: string, host: string, port: number): net.Server {
  try {
    fs.unlinkSync(socketPath);
  } catch {
    // not there
  }
  const server = net.createServer((c) => {
    const u = net.connect(port, host);
    u.setNoDelay(true);
    c.pipe(u);
    u.pipe(c);
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
    c.on('close', () => u.destroy());
    u.on('close', () => c.destroy());
  });
  server.listen(socketPath, () => {
    fs.chmodSync(socketPath, 0o600);
    process.stderr.write(`forwarding ${socketPath} -> ${host}:${port}\n`);
  });
  server.on('error', (err) => {
    process.stderr.write(`uds-proxy: ${err.message}\n`);
    process.exit(1);
  });
  return server;
}

if (require.main === module) {
  const [socketPath, host, port] = process.argv.slice(2);
  if (!socketPath || !host || !/^\d+$/.test(port ?? '')) {
    process.stderr.write('usage: uds-proxy.js SOCKET HOST PORT\n');
    process.exit(2);
  }
  runUdsProxy(socketPath, host, Number(port));
  const stop = () => process.exit(0);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
