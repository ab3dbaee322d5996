import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { HeaderMap } from './types';

// RFC 9110 §7.6.1 plus the legacy ones Envoy also drops. HTTP/2 forbids all of them outright, so
// forwarding one from an HTTP/1 caller to an HTTP/2 upstream would make the request invalid.
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'transfer-encoding', 'upgrade', 'http2-settings'];

// Headers only the mesh may set: a caller that sends them could spoof its origin (x-forwarded-for),
// steer the proxy (x-envoy-*) or impersonate mesh metadata (x-ambit-*, x-istio-*).
const INTERNAL_PREFIXES = ['x-envoy-', 'x-ambit-', 'x-istio-', 'x-forwarded-'];
const INTERNAL_EXACT = new Set(['forwarded']);

function internalPrefixed(name: string): boolean {
  for (let i = 0; i < INTERNAL_PREFIXES.length; i++) if (name.startsWith(INTERNAL_PREFIXES[i])) return true;
  return false;
}

// Any visible ASCII, as Envoy propagates the caller's id (AWS "Root=1-...", base64 ids): only a
// length cap and no spaces or control bytes, so the id stays one safe token in logs and headers.
const REQUEST_ID = /^[\x21-\x7e]{1,256}$/;

// RFC 9110 §7.2 / RFC 3986 §3.2: Host and :authority are uri-host [":" port], with no userinfo,
// path or whitespace. llhttp accepts any field value there ("evil\tx", "web@evil", "web/admin"),
// and policy (hosts) would match one string while a backend that parses it would see another.
const AUTHORITY = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=]+)(?::[0-9]*)?$/;

/** A Host / :authority value the waypoint can route, authorize and forward unambiguously; empty is allowed (RFC 9110 §7.2). */
export function validAuthority(a: string): boolean {
  return a === '' || AUTHORITY.test(a);
}

function connectionTokens(v: string | string[] | undefined): string[] {
  if (v === undefined) return [];
  const s = Array.isArray(v) ? v.join(',') : v;
  return s
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t !== '');
}

/**
 * Removes hop-by-hop fields in place, including those a Connection header nominates. `te` survives
 * only as "trailers", which gRPC needs end to end.
 */
export function stripHopByHop(h: HeaderMap, opts: { keepUpgrade?: boolean } = {}): void {
  const upgrade = h.upgrade;
  if (h.connection !== undefined) {
    for (const name of connectionTokens(h.connection)) {
      // A caller must not be able to strip the headers the mesh itself adds or checks afterwards.
      if (name !== 'te') delete h[name];
    }
  }
  // Checked before deleting: deleting a property turns the object into a slow dictionary, and most
  // messages carry none of these.
  for (let i = 0; i < HOP_BY_HOP.length; i++) if (h[HOP_BY_HOP[i]] !== undefined) delete h[HOP_BY_HOP[i]];
  if (h.te !== undefined) {
    const hasTrailers = connectionTokens(h.te).some((t) => t === 'trailers' || t.startsWith('trailers;'));
    if (hasTrailers) h.te = 'trailers';
    else delete h.te;
  }
  if (opts.keepUpgrade && upgrade !== undefined) {
    h.upgrade = upgrade;
    h.connection = 'upgrade';
  }
}

/** Copies node's header object without pseudo-headers and with multi-valued fields kept as arrays. */
export function copyHeaders(src: IncomingHttpHeaders | Record<string, string | string[] | undefined>): HeaderMap {
  const out: HeaderMap = {};
  for (const k of Object.keys(src)) {
    if (k.charCodeAt(0) === 0x3a /* ':' */) continue;
    const v = src[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}

export interface ForwardingFacts {
  sourceAddress: string;
  traceparent: string;
  requestId: string;
  /** The waypoint continues the caller's trace; when it started a new one the caller's tracestate does not belong to it. */
  continuesTrace: boolean;
}

/** Picks the x-request-id: the caller's when well-formed (so traces join up), a new one otherwise. */
export function requestIdOf(h: HeaderMap): string {
  const v = h['x-request-id'];
  return typeof v === 'string' && REQUEST_ID.test(v) ? v : randomUUID();
}

/** Headers from the caller that the mesh does not trust, replaced by what the waypoint knows. */
export function sanitizeRequestHeaders(h: HeaderMap, f: ForwardingFacts): void {
  for (const name of Object.keys(h)) {
    // Every internal prefix starts with "x-"; most names do not.
    if (INTERNAL_EXACT.has(name) || (name.charCodeAt(0) === 0x78 && name.charCodeAt(1) === 0x2d && internalPrefixed(name))) delete h[name];
  }
  h['x-forwarded-for'] = f.sourceAddress;
  // The caller spoke plain HTTP inside the tunnel; mTLS is the mesh's, not the application's.
  h['x-forwarded-proto'] = 'http';
  h['x-request-id'] = f.requestId;
  h.traceparent = f.traceparent;
  // W3C Trace Context: tracestate travels only with the traceparent it was sent with.
  if (!f.continuesTrace && h.tracestate !== undefined) delete h.tracestate;
}

export function headerValue(h: HeaderMap, name: string): string | undefined {
  const v = h[name];
  return v === undefined ? undefined : Array.isArray(v) ? v.join(',') : v;
}

export function isGrpcContentType(h: HeaderMap): boolean {
  const ct = headerValue(h, 'content-type');
  return ct !== undefined && ct.toLowerCase().startsWith('application/grpc') && !ct.toLowerCase().startsWith('application/grpc-web');
}
