import type { Redirect } from '../route-table';
import { rewritePath } from './header-mutation';

const DEFAULT_PORT: Record<string, number> = { http: 80, https: 443 };

/** The Location for a RequestRedirect / VirtualService redirect, from the request as received. */
export function redirectLocation(r: Redirect, req: { authority: string; pathAndQuery: string; scheme: string; listenerPort: number }): string {
  const scheme = r.scheme ?? req.scheme;
  const { host: reqHost, port: reqPort } = splitAuthority(req.authority);
  const host = r.hostname ?? reqHost;
  let port: number | undefined = r.port;
  if (port === undefined) {
    if (r.listenerPort) {
      // Gateway API: a redirect scheme brings its well-known port; without one the port is the
      // listener's, which for a mesh route is the service port the request came in on.
      if (r.scheme === undefined) port = req.listenerPort;
    } else if (r.derivePort === 'FROM_REQUEST_PORT') port = reqPort ?? req.listenerPort;
    else if (r.derivePort === undefined && r.scheme === undefined && r.hostname === undefined) port = reqPort;
    // FROM_PROTOCOL_DEFAULT: the scheme's default port, left out below.
  }
  // A port that is the scheme's default is left out, as the Gateway API specifies.
  const portPart = port !== undefined && port !== DEFAULT_PORT[scheme] ? `:${port}` : '';
  const path = r.path ? rewritePath(req.pathAndQuery, r.path) : req.pathAndQuery;
  return `${scheme}://${host}${portPart}${path}`;
}

export function splitAuthority(a: string): { host: string; port?: number } {
  if (a.startsWith('[')) {
    const end = a.indexOf(']');
    const rest = a.slice(end + 1);
    return { host: a.slice(0, end + 1), port: rest.startsWith(':') ? Number(rest.slice(1)) : undefined };
  }
  const c = a.lastIndexOf(':');
  if (c < 0 || a.indexOf(':') !== c) return { host: a };
  const port = Number(a.slice(c + 1));
  return Number.isInteger(port) && port > 0 && port < 65536 ? { host: a.slice(0, c), port } : { host: a };
}
