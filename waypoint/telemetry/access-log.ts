import type { Logger } from '../../lib/telemetry/log';
import type { RequestOutcome } from './outcome';
import type { RequestInfo } from './types';

// Request-controlled strings are logged verbatim but bounded, so one request cannot
// produce a multi-kilobyte log line.
const MAX_FIELD = 2048;
const cap = (s: string | undefined): string | undefined => (s !== undefined && s.length > MAX_FIELD ? s.slice(0, MAX_FIELD) : s);

/**
 * One JSON line per request (or opaque TCP connection), Envoy-style field names, flat so
 * pino serialises it in a single pass. Fields that are undefined are left out by pino.
 */
export class AccessLog {
  private readonly log: Logger;

  constructor(log: Logger) {
    // Bindings are serialised once by pino, not per line.
    this.log = log.child({ type: 'access', reporter: 'waypoint' });
  }

  write(info: RequestInfo, o: RequestOutcome): void {
    // Skip building the object at all when access logging is filtered out.
    if (!this.log.isLevelEnabled('info')) return;
    const src = info.source?.msg;
    const dst = o.destination?.msg;
    this.log.info(
      {
        start_time: new Date(o.startTime).toISOString(),
        method: info.method,
        path: cap(info.path),
        protocol: info.protocol,
        response_code: o.responseCode,
        response_flags: o.responseFlags || '-',
        grpc_status: o.grpcStatus,
        duration_ms: Math.round(o.durationMs * 1000) / 1000,
        bytes_received: o.requestBytes,
        bytes_sent: o.responseBytes,
        upstream_host: o.upstreamAddress,
        route_name: o.route,
        authority: cap(info.authority),
        user_agent: cap(info.userAgent),
        request_id: cap(info.requestId),
        trace_id: o.traceId,
        src_addr: info.sourceAddress,
        src_principal: info.sourcePrincipal ?? undefined,
        src_workload: src?.name,
        src_namespace: src?.namespace,
        dst_principal: o.destinationPrincipal ?? undefined,
        dst_workload: dst?.name,
        dst_namespace: dst?.namespace,
        dst_service: info.destinationService.hostname,
      },
      'request complete',
    );
  }
}
