import type { Downstream } from './downstream';
import type { HeaderMap } from './types';

/** gRPC's HTTP-to-status mapping (doc/http-grpc-status-mapping.md), as Envoy applies it to its own replies. */
export function grpcStatusForHttp(status: number): number {
  switch (status) {
    case 400:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return 14; // UNAVAILABLE
    default:
      return 2; // UNKNOWN
  }
}

export interface LocalReplyOptions {
  grpc: boolean;
  /** Overrides the mapped gRPC status (timeouts are DEADLINE_EXCEEDED, fault aborts carry their own). */
  grpcStatus?: number;
  headers?: HeaderMap;
  /** Where the body's bytes are counted (istio_response_bytes, the access log), as for any response. */
  record?: { responseBytes: number };
}

/** What a local reply sent, for the request's record: the HTTP status on the wire and the gRPC status, if any. */
export interface LocalReplySent {
  status: number;
  grpcStatus?: string;
}

/**
 * A response the waypoint makes itself. gRPC callers get a trailers-only response (HTTP 200 with
 * grpc-status), since gRPC clients read errors only from there; the result says so, so the
 * request is recorded as sent.
 */
export function sendLocalReply(ds: Downstream, status: number, body: string, opts: LocalReplyOptions): LocalReplySent {
  if (ds.headersSent || ds.aborted) {
    ds.reset();
    return { status };
  }
  if (opts.grpc) {
    const code = String(opts.grpcStatus ?? grpcStatusForHttp(status));
    ds.sendHeaders(
      200,
      { ...opts.headers, 'content-type': 'application/grpc', 'grpc-status': code, 'grpc-message': encodeURIComponent(body) },
      { endStream: true, trailers: false },
    );
    return { status: 200, grpcStatus: code };
  }
  const buf = Buffer.from(body);
  const headers: HeaderMap = { ...opts.headers, 'content-type': 'text/plain', 'content-length': String(buf.length) };
  if (ds.method === 'HEAD' || buf.length === 0) {
    ds.sendHeaders(status, headers, { endStream: true, trailers: false });
    return { status };
  }
  ds.sendHeaders(status, headers, { endStream: false, trailers: false });
  ds.write(buf);
  ds.end();
  if (opts.record) opts.record.responseBytes += buf.length;
  return { status };
}
