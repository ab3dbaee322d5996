/**
 * HTTP/1.1 message syntax (RFC 9112) for the waypoint's own HTTP/1.1 codec: message heads, field
 * lines, chunked framing and the serialised form of heads.
 *
 * Written here rather than taken from node:http because node's parser (llhttp) is only reachable
 * through node:http's per-message objects (IncomingMessage, ServerResponse, ClientRequest, Agent),
 * and in the benchmark those objects cost more CPU per proxied request than all of the waypoint's
 * own work. The parsers are deliberately strict and small: the downstream side accepts only a
 * conservative subset and hands anything else (chunked uploads, Expect, Upgrade, duplicate fields,
 * odd syntax, smuggling attempts) to node:http, which answers it with llhttp's strict rules.
 */
import type { HeaderMap } from './types';

const CR = 0x0d;
const LF = 0x0a;

// RFC 9110 §5.6.2 tchar.
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;

export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || TCHAR[c] !== 1) return false;
  }
  return true;
}

/** RFC 9110 §5.5 field-value after OWS trimming: VCHAR, obs-text, SP and HTAB; no other control characters. */
export function isFieldValue(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f || c > 0xff) return false;
  }
  return true;
}

function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && (s.charCodeAt(a) === 0x20 || s.charCodeAt(a) === 0x09)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 0x20 || s.charCodeAt(b - 1) === 0x09)) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

/**
 * Index just past the CRLFCRLF ending a message head that starts at `from`, or -1 while incomplete.
 * A bare LF anywhere in the head makes the result -2: the caller must not parse the head itself.
 */
export function findHeadEnd(buf: Buffer, from: number, limit: number): number {
  const end = Math.min(buf.length, from + limit);
  let i = buf.indexOf(LF, from);
  while (i !== -1 && i < end) {
    if (i === from || buf[i - 1] !== CR) return -2;
    if (i + 2 < buf.length && buf[i + 1] === CR && buf[i + 2] === LF) return i + 3;
    if (i + 1 < buf.length && buf[i + 1] === LF) return -2;
    i = buf.indexOf(LF, i + 1);
  }
  return -1;
}

export type FieldLines =
  | { ok: true; headers: HeaderMap; count: number; duplicates: boolean }
  | { ok: false; reason: string };

/**
 * Parses "name: value" lines (no obs-fold, token names, clean values) into lower-case names. A
 * repeated name becomes an array and sets `duplicates`.
 */
/**
 * The connection-level fields of a head, kept out of its header map: they describe this hop only,
 * and deleting them from the map later would turn it into a slow dictionary-mode object.
 */
export interface HopFields {
  /** Connection values, in order. */
  connection: string[];
  /** Transfer-Encoding values, in order. */
  transferEncoding: string[];
}

export function parseFieldLines(
  lines: readonly string[],
  start: number,
  end: number,
  host?: { value: string | undefined; repeated: boolean },
  hop?: HopFields,
): FieldLines {
  const headers: HeaderMap = {};
  let duplicates = false;
  for (let i = start; i < end; i++) {
    const line = lines[i];
    const colon = line.indexOf(':');
    if (colon <= 0) return { ok: false, reason: 'malformed header line' };
    const rawName = line.slice(0, colon);
    if (!isToken(rawName)) return { ok: false, reason: 'invalid header name' };
    const value = trimOws(line.slice(colon + 1));
    if (!isFieldValue(value)) return { ok: false, reason: `invalid value in header ${rawName}` };
    const name = rawName.toLowerCase();
    if (host !== undefined && name === 'host') {
      // Kept out of the map: the authority travels separately, and deleting it later would turn
      // the header object into a slow dictionary-mode object.
      if (host.value !== undefined) host.repeated = true;
      host.value = value;
      continue;
    }
    if (hop !== undefined) {
      if (name === 'connection') {
        hop.connection.push(value);
        continue;
      }
      if (name === 'transfer-encoding') {
        hop.transferEncoding.push(value);
        continue;
      }
      if (name === 'keep-alive' || name === 'proxy-connection') continue;
    }
    const prev = headers[name];
    if (prev === undefined) headers[name] = value;
    else {
      duplicates = true;
      if (Array.isArray(prev)) prev.push(value);
      else headers[name] = [prev, value];
    }
  }
  return { ok: true, headers, count: end - start, duplicates };
}

/** The methods the fast path serves; llhttp knows more (WebDAV and others), which node:http serves. */
const FAST_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);

export interface RequestHead {
  method: string;
  target: string;
  /** The Host field; not in `headers`. */
  authority: string;
  headers: HeaderMap;
  count: number;
  /** Content-Length of the body (0 when none). */
  contentLength: number;
  /** The caller asked to close after this exchange. */
  close: boolean;
}

/**
 * A request head the fast path can serve exactly as node:http would, or null when it must go to
 * node:http: anything outside the common subset (HTTP/1.0, Transfer-Encoding, Expect, Upgrade,
 * absolute-form targets, repeated fields, more than `maxCount` fields, malformed syntax). Returning
 * null is always safe; returning a head must never be.
 */
export function parseRequestHead(head: string, maxCount: number): RequestHead | null {
  const lines = head.split('\r\n');
  // lines ends with two empty strings (the CRLFCRLF).
  const n = lines.length - 2;
  if (n < 1 || n - 1 > maxCount) return null;
  const rl = lines[0];
  const sp1 = rl.indexOf(' ');
  const sp2 = rl.indexOf(' ', sp1 + 1);
  if (sp1 <= 0 || sp2 <= sp1 + 1 || rl.indexOf(' ', sp2 + 1) !== -1) return null;
  const method = rl.slice(0, sp1);
  if (!FAST_METHODS.has(method)) return null;
  if (rl.slice(sp2 + 1) !== 'HTTP/1.1') return null;
  const target = rl.slice(sp1 + 1, sp2);
  if (target.charCodeAt(0) !== 0x2f /* '/' */) return null;
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return null;
  }
  const host = { value: undefined as string | undefined, repeated: false };
  const hop: HopFields = { connection: [], transferEncoding: [] };
  const f = parseFieldLines(lines, 1, n, host, hop);
  if (!f.ok || f.duplicates || host.value === undefined || host.repeated || hop.connection.length > 1) return null;
  const h = f.headers;
  // An h2c upgrade offer (curl --http2 on http://) is declined the way Envoy declines it: the upgrade
  // fields are dropped and the request is served as HTTP/1.1, body and all.
  const h2cOffer = typeof h.upgrade === 'string' && h.upgrade.trim().toLowerCase() === 'h2c';
  if (h2cOffer) {
    delete h.upgrade;
    delete h['http2-settings'];
  }
  if (hop.transferEncoding.length > 0 || h.expect !== undefined || h.upgrade !== undefined) return null;
  let contentLength = 0;
  const cl = h['content-length'];
  if (cl !== undefined) {
    if (typeof cl !== 'string' || !/^\d{1,15}$/.test(cl)) return null;
    contentLength = Number(cl);
  }
  let close = false;
  if (hop.connection.length === 1) {
    const conn = hop.connection[0];
    let nominates = false;
    for (const t of conn.split(',')) {
      const tok = t.trim().toLowerCase();
      if (tok === 'close') close = true;
      else if (h2cOffer && (tok === 'upgrade' || tok === 'http2-settings')) continue;
      else if (tok === 'upgrade') return null;
      else if (tok !== 'keep-alive' && tok !== '') nominates = true;
    }
    // Other tokens name hop-by-hop fields the filter chain must strip: it finds them through Connection.
    if (nominates) h.connection = conn;
  }
  return { method, target, authority: host.value, headers: h, count: f.count, contentLength, close };
}

export interface ResponseHead {
  status: number;
  /** Without Connection, Keep-Alive, Proxy-Connection and Transfer-Encoding (see `hop`), unless Connection names other fields. */
  headers: HeaderMap;
  hop: HopFields;
  /** HTTP/1.0 response: the connection closes afterwards unless it says keep-alive. */
  http10: boolean;
}

export function parseResponseHead(head: string): ResponseHead | { error: string } {
  const lines = head.split('\r\n');
  const n = lines.length - 2;
  if (n < 1) return { error: 'empty response head' };
  const sl = lines[0];
  const m = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([\t \x21-\x7e\x80-\xff]*))?$/.exec(sl);
  if (!m) return { error: 'malformed status line' };
  const hop: HopFields = { connection: [], transferEncoding: [] };
  const f = parseFieldLines(lines, 1, n, undefined, hop);
  if (!f.ok) return { error: f.reason };
  for (const conn of hop.connection) {
    for (const t of conn.split(',')) {
      const tok = t.trim().toLowerCase();
      if (tok !== '' && tok !== 'close' && tok !== 'keep-alive') {
        // Fields it names are hop-by-hop too; the router strips them by reading Connection.
        f.headers.connection = hop.connection.join(', ');
        break;
      }
    }
  }
  return { status: Number(m[2]), headers: f.headers, hop, http10: m[1] === '0' };
}

/** Whether a Connection field value asks to close; `http10`: closed by default unless keep-alive. */
export function connectionCloses(v: string | string[] | undefined, http10: boolean): boolean {
  if (v === undefined) return http10;
  let keep = false;
  for (const part of Array.isArray(v) ? v : [v]) {
    for (const t of part.split(',')) {
      const tok = t.trim().toLowerCase();
      if (tok === 'close') return true;
      if (tok === 'keep-alive') keep = true;
    }
  }
  return http10 && !keep;
}

/**
 * "name: value\r\n" lines for every field (one line per value of a repeated field). A name or value
 * that could end a line early or is not a single byte per character is left out, never written.
 */
export function serializeFields(h: HeaderMap, skip?: ReadonlySet<string>): string {
  let s = '';
  for (const k in h) {
    if (!isToken(k) || skip?.has(k)) continue;
    const v = h[k];
    if (typeof v === 'string') {
      if (isFieldValue(v)) s += `${k}: ${v}\r\n`;
    } else for (let i = 0; i < v.length; i++) if (isFieldValue(v[i])) s += `${k}: ${v[i]}\r\n`;
  }
  return s;
}

const enum ChunkState {
  Size,
  Data,
  DataCrlf,
  Trailers,
  Done,
}

/** Longest chunk-size line accepted (hex digits + extensions): llhttp allows long extensions, nothing needs them. */
const MAX_SIZE_LINE = 1024;

/**
 * Decodes a chunked body (RFC 9112 §7.1) incrementally. feed() returns the number of bytes of
 * `buf` that belonged to the body (the rest is the next message), or -1 on a framing error.
 */
export class ChunkedDecoder {
  private state = ChunkState.Size;
  private remaining = 0;
  private line = '';
  private trailerLines: string[] = [];
  private trailerBytes = 0;
  error = '';
  trailers: HeaderMap | undefined;

  constructor(private readonly maxTrailerBytes: number) {}

  get done(): boolean {
    return this.state === ChunkState.Done;
  }

  feed(buf: Buffer, onData: (chunk: Buffer) => void): number {
    let i = 0;
    while (i < buf.length && this.state !== ChunkState.Done) {
      switch (this.state) {
        case ChunkState.Data: {
          const take = Math.min(this.remaining, buf.length - i);
          onData(buf.subarray(i, i + take));
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) {
            this.state = ChunkState.DataCrlf;
            this.line = '';
          }
          break;
        }
        case ChunkState.Size:
        case ChunkState.DataCrlf:
        case ChunkState.Trailers: {
          const lf = buf.indexOf(LF, i);
          const stop = lf === -1 ? buf.length : lf + 1;
          this.line += buf.toString('latin1', i, stop);
          i = stop;
          if (lf === -1) {
            if (this.line.length > MAX_SIZE_LINE && this.state !== ChunkState.Trailers) return this.fail('chunk size line too long');
            if (this.state === ChunkState.Trailers && this.trailerBytes + this.line.length > this.maxTrailerBytes) return this.fail('trailers too large');
            break;
          }
          const line = this.line;
          this.line = '';
          if (line.length < 2 || line.charCodeAt(line.length - 2) !== CR) return this.fail('bare LF in chunked framing');
          const text = line.slice(0, -2);
          if (this.state === ChunkState.DataCrlf) {
            if (text !== '') return this.fail('missing CRLF after chunk data');
            this.state = ChunkState.Size;
          } else if (this.state === ChunkState.Size) {
            const semi = text.indexOf(';');
            const hex = semi === -1 ? text : text.slice(0, semi);
            if (!/^[0-9A-Fa-f]{1,13}$/.test(hex)) return this.fail('invalid chunk size');
            if (semi !== -1 && !isFieldValue(text.slice(semi))) return this.fail('invalid chunk extension');
            const size = parseInt(hex, 16);
            if (size === 0) this.state = ChunkState.Trailers;
            else {
              this.remaining = size;
              this.state = ChunkState.Data;
            }
          } else if (text === '') {
            if (this.trailerLines.length > 0) {
              const f = parseFieldLines(this.trailerLines, 0, this.trailerLines.length);
              if (!f.ok) return this.fail(`invalid trailer: ${f.reason}`);
              this.trailers = f.headers;
            }
            this.state = ChunkState.Done;
          } else {
            this.trailerBytes += line.length;
            if (this.trailerBytes > this.maxTrailerBytes) return this.fail('trailers too large');
            this.trailerLines.push(text);
          }
          break;
        }
      }
    }
    return i;
  }

  private fail(reason: string): number {
    this.error = reason;
    return -1;
  }
}

/** An IMF-fixdate for Date headers, recomputed at most once a second. */
let dateCache = '';
let dateSecond = -1;
export function httpDate(): string {
  const now = Date.now();
  const s = Math.floor(now / 1000);
  if (s !== dateSecond) {
    dateSecond = s;
    dateCache = new Date(now).toUTCString();
  }
  return dateCache;
}
