import http from 'node:http';
import type { Registry } from 'prom-client';

/** What a proxy's admin endpoint serves besides the common routes. */
export interface ProxyAdmin {
  configDump: () => object;
  ready: () => boolean;
  /** Why the proxy is not ready, for /healthz/ready's 503 body. */
  notReadyReason: string;
  quit: () => void;
}

/**
 * The admin endpoint the ztunnel and the waypoint share (Envoy's paths): /config_dump,
 * /healthz/ready, /metrics (also /stats/prometheus) and POST /quitquitquit.
 */
export function createAdminServer(d: ProxyAdmin, metrics: Registry): http.Server {
  return http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url === '/config_dump') {
      res.setHeader('content-type', 'application/json');
      return res.end(`${JSON.stringify(d.configDump(), null, 2)}\n`);
    }
    if (url === '/healthz/ready') {
      const ok = d.ready();
      res.statusCode = ok ? 200 : 503;
      return res.end(ok ? 'ready\n' : `not ready: ${d.notReadyReason}\n`);
    }
    if (url === '/quitquitquit' && req.method === 'POST') {
      res.end('draining\n');
      return d.quit();
    }
    if (url === '/metrics' || url === '/stats/prometheus') return serveMetrics(metrics, res);
    res.statusCode = 404;
    res.end('not found: /config_dump, /healthz/ready, /metrics, POST /quitquitquit\n');
  });
}

function serveMetrics(metrics: Registry, res: http.ServerResponse): void {
  metrics.metrics().then(
    (m) => {
      res.setHeader('content-type', metrics.contentType);
      res.end(m);
    },
    (err: Error) => {
      res.statusCode = 500;
      res.end(`metrics: ${err.message}\n`);
    },
  );
}

/** Prometheus scrape endpoint (:15020): every path answers the metrics. */
export function createMetricsServer(metrics: Registry): http.Server {
  return http.createServer((_req, res) => serveMetrics(metrics, res));
}

/** Listens on "host:port" (IPv6 in brackets); resolves the bound port, rejects with the address in the message. */
export function listenOn(server: http.Server | import('node:net').Server, addr: string): Promise<number> {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(addr);
  if (!m) return Promise.reject(new Error(`"${addr}" is not host:port`));
  return new Promise((resolve, reject) => {
    server.once('error', (err: Error) => reject(new Error(`cannot listen on ${addr}: ${err.message}`)));
    server.listen(Number(m[2]), m[1], () => resolve((server.address() as { port: number }).port));
  });
}
