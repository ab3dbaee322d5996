import pino from 'pino';
import type { WorkloadView } from '../../lib/mesh/snapshot';
import type { Logger } from '../../lib/telemetry/log';
import type { RequestOutcome } from './outcome';
import type { RequestInfo } from './types';

// Request-controlled strings are logged verbatim but bounded, so one request cannot
// produce a multi-kilobyte log line.
const MAX_FIELD = 2048;
const cap = (s: string): string => (s.length > MAX_FIELD ? s.slice(0, MAX_FIELD) : s);

interface PinoInternals {
  [pino.symbols.streamSym]: { write(line: string): unknown };
  [pino.symbols.chindingsSym]: string;
  [pino.symbols.timeSym]: () => string;
}

/**
 * Date.toISOString() for a millisecond timestamp, with the part up to the seconds kept from the
 * previous call: at a thousand lines a second, formatting whole dates was a visible share of the
 * line's cost.
 */
let isoSecond = -1;
let isoPrefix = '';
function isoTime(ms: number): string {
  const sec = Math.floor(ms / 1000);
  if (sec !== isoSecond) {
    isoSecond = sec;
    isoPrefix = new Date(sec * 1000).toISOString().slice(0, 20);
  }
  const milli = ms - sec * 1000;
  return `${isoPrefix}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
}

const NO_WORKLOAD = {};

/** `,"key":"value"` with JSON escaping, or nothing for an absent value. */
function str(key: string, v: string | null | undefined): string {
  return v === undefined || v === null ? '' : `,"${key}":${JSON.stringify(v)}`;
}

export interface AccessLogOptions {
  /**
   * Hand lines to the destination in batches of about this many characters (and at least every
   * `flushMs`) rather than one by one: pino's destination re-measures its whole pending buffer on
   * every write, which at a line per request was a visible share of the waypoint's CPU. 0: one by one.
   */
  batchChars?: number;
  flushMs?: number;
}

/** Logs with lines not yet handed on; flushed when the process exits, whatever the reason. */
const unflushed = new Set<AccessLog>();
let exitHooked = false;
function flushAllOnExit(): void {
  for (const l of unflushed) l.flush();
}

/**
 * One JSON line per request (or opaque TCP connection), Envoy-style field names. The line is the
 * one pino would write for `log.info({...}, 'request complete')` (level, time, the logger's
 * bindings, the fields, msg) but formatted here and handed to pino's destination directly: pino's
 * generic per-field serialisation was ~7 % of the waypoint's CPU per request in the benchmark.
 */
export class AccessLog {
  private readonly log: Logger;
  private readonly internals: PinoInternals;
  /** The logger writes ISO times (as createLogger's loggers do): formatted here, the same way. */
  private readonly isoTimes: boolean;

  private readonly batchChars: number;
  private readonly flushMs: number;
  private pending: string[] = [];
  private pendingChars = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(log: Logger, opts: AccessLogOptions = {}) {
    this.batchChars = opts.batchChars ?? 0;
    this.flushMs = opts.flushMs ?? 250;
    if (this.batchChars > 0 && !exitHooked) {
      exitHooked = true;
      // Before the destination's own exit hook (createLogger's flushSync), or these lines would miss it.
      process.prependOnceListener('exit', flushAllOnExit);
    }
    this.log = log.child({ type: 'access', reporter: 'waypoint' });
    this.internals = this.log as unknown as PinoInternals;
    this.isoTimes = this.internals[pino.symbols.timeSym] === pino.stdTimeFunctions.isoTime;
  }

  // The peer fields of a workload and principal, formatted once: the same few peers make every line.
  private readonly sources = new WeakMap<object, Map<string, string>>();
  private readonly destinations = new WeakMap<object, Map<string, string>>();

  private peerFields(cache: WeakMap<object, Map<string, string>>, side: 'src' | 'dst', view: WorkloadView | undefined, principal: string | null): string {
    const key = view ?? NO_WORKLOAD;
    let byPrincipal = cache.get(key);
    if (byPrincipal === undefined) cache.set(key, (byPrincipal = new Map()));
    const p = principal ?? '';
    let f = byPrincipal.get(p);
    if (f === undefined) {
      f = str(`${side}_principal`, principal) + str(`${side}_workload`, view?.msg.name) + str(`${side}_namespace`, view?.msg.namespace);
      // Bounded: principals come from certificates the mesh issued, but a long-lived view must not collect without limit.
      if (byPrincipal.size < 1024) byPrincipal.set(p, f);
    }
    return f;
  }

  write(info: RequestInfo, o: RequestOutcome): void {
    if (!this.log.isLevelEnabled('info')) return;
    const p = this.internals;
    const line =
      `{"level":30${this.isoTimes ? `,"time":"${isoTime(Date.now())}"` : p[pino.symbols.timeSym]()}${p[pino.symbols.chindingsSym]}` +
      `,"start_time":"${isoTime(o.startTime)}"` +
      str('method', cap(info.method)) +
      str('path', cap(info.path)) +
      `,"protocol":"${info.protocol}","response_code":${o.responseCode}` +
      str('response_flags', o.responseFlags || '-') +
      str('grpc_status', o.grpcStatus) +
      `,"duration_ms":${Math.round(o.durationMs * 1000) / 1000},"bytes_received":${o.requestBytes},"bytes_sent":${o.responseBytes}` +
      str('upstream_host', o.upstreamAddress) +
      str('route_name', o.route) +
      str('authority', cap(info.authority)) +
      str('user_agent', info.userAgent === undefined ? undefined : cap(info.userAgent)) +
      str('request_id', info.requestId === undefined ? undefined : cap(info.requestId)) +
      str('trace_id', o.traceId) +
      str('src_addr', info.sourceAddress) +
      this.peerFields(this.sources, 'src', info.source, info.sourcePrincipal) +
      this.peerFields(this.destinations, 'dst', o.destination, o.destinationPrincipal) +
      str('dst_service', info.destinationService.hostname) +
      `,"msg":"request complete"}\n`;
    if (this.batchChars <= 0) {
      p[pino.symbols.streamSym].write(line);
      return;
    }
    this.pending.push(line);
    this.pendingChars += line.length;
    if (this.pendingChars >= this.batchChars) this.flush();
    else if (this.timer === null) {
      unflushed.add(this);
      this.timer = setTimeout(this.onTimer, this.flushMs);
      this.timer.unref();
    }
  }

  private readonly onTimer = (): void => {
    this.timer = null;
    this.flush();
  };

  /** Hands every pending line to the destination now. */
  flush(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    unflushed.delete(this);
    if (this.pending.length === 0) return;
    const text = this.pending.length === 1 ? this.pending[0] : this.pending.join('');
    this.pending = [];
    this.pendingChars = 0;
    this.internals[pino.symbols.streamSym].write(text);
  }
}
