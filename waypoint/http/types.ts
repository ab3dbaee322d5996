/** Header maps on the data path: lower-case names, no HTTP/2 pseudo-headers. */
export type HeaderMap = Record<string, string | string[]>;

export interface HttpLimits {
  /** Bytes of request line + headers (HTTP/1) or of the header list (HTTP/2); beyond: 431. */
  maxHeaderSize: number;
  /** Header fields per request; beyond: 431 (node would silently drop the excess, which could hide a header from policy). */
  maxHeaderCount: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS advertised to callers. */
  maxConcurrentStreams: number;
  /** Time allowed to receive a complete request head (slowloris). */
  requestHeadersTimeoutMs: number;
  /** A connection (HTTP/1) or stream with no traffic for this long is closed. */
  idleTimeoutMs: number;
  /** How long an idle HTTP/1.1 keep-alive connection from a caller is kept. */
  keepAliveTimeoutMs: number;
  /** Silence before a tunnel is treated as opaque TCP (server-speaks-first protocols). */
  protocolDetectionTimeoutMs: number;
  /** Request body kept for retries; a request whose body exceeds it is not retried (mirrors stream the body instead). */
  maxRetryBufferBytes: number;
  /** Opening a stream to an endpoint (Istio's connectTimeout default is 10 s); a DestinationRule's connectionPool.tcp.connectTimeout overrides it. */
  connectTimeoutMs: number;
  /** Opaque TCP with no bytes either way for this long is closed (Istio's default is 1 h); connectionPool.tcp.idleTimeout overrides it. */
  tcpIdleTimeoutMs: number;
}

export const DEFAULT_LIMITS: HttpLimits = {
  maxHeaderSize: 60 * 1024,
  maxHeaderCount: 100,
  maxConcurrentStreams: 100,
  requestHeadersTimeoutMs: 10_000,
  idleTimeoutMs: 300_000,
  keepAliveTimeoutMs: 60_000,
  protocolDetectionTimeoutMs: 5_000,
  maxRetryBufferBytes: 64 * 1024,
  connectTimeoutMs: 10_000,
  tcpIdleTimeoutMs: 3_600_000,
};

/**
 * Envoy's response flags, so access logs and istio_requests_total{response_flags} read the same
 * as in Istio. "-" means none.
 */
export type ResponseFlag =
  | '-'
  | 'NR' // no route
  | 'UH' // no healthy upstream
  | 'UF' // upstream connect failure
  | 'UO' // upstream overflow (circuit breaker)
  | 'UT' // upstream request timeout
  | 'UC' // upstream connection termination / reset
  | 'URX' // retry limit exceeded
  | 'NC' // no cluster (undefined subset)
  | 'DC' // downstream connection termination
  | 'DPE' // downstream protocol error
  | 'DI' // delay injected
  | 'FI' // fault injected
  | 'RL'; // rate limited
