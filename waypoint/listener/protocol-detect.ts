import type { Duplex } from 'node:stream';

export type DetectedProtocol = 'http1' | 'http2' | 'tcp';

export interface DetectOptions {
  /** How long to wait for the first bytes; server-first protocols (MySQL, SMTP) send nothing, so silence means opaque TCP. */
  timeoutMs: number;
  /** Bytes to look at, at most, before giving up on finding an HTTP/1 request line. */
  maxPeekBytes?: number;
}

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
// RFC 9110 token characters, for the method.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const DEFAULT_MAX_PEEK = 8192;
// A method token, one space, then an origin-, absolute- or asterisk-form target with no space or control byte yet.
const REQUEST_LINE_START = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32} [!-~]+$/;

/**
 * Decides from the bytes seen so far; undefined means "need more". HTTP/1 is recognised by a
 * request line ending in HTTP/1.x (Envoy's http_inspector does the same), so a binary protocol
 * that happens to start with letters is not fed to the HTTP parser.
 */
export function classify(whole: Buffer, maxPeek = DEFAULT_MAX_PEEK): DetectedProtocol | undefined {
  const n = Math.min(whole.length, H2_PREFACE.length);
  if (whole.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) return whole.length >= H2_PREFACE.length ? 'http2' : undefined;
  // RFC 9112 section 2.2: empty lines before a request line are ignored, and the HTTP parsers
  // behind this (llhttp, the application's own) do ignore them. Calling such a request opaque
  // TCP would carry it past every HTTP filter to a server that still reads it as HTTP.
  let start = 0;
  while (start < whole.length && (whole[start] === 0x0d || whole[start] === 0x0a)) start++;
  if (start === whole.length) return whole.length >= maxPeek ? 'tcp' : undefined;
  const head = start === 0 ? whole : whole.subarray(start);
  const nl = head.indexOf(0x0a);
  if (nl < 0) {
    // A request line longer than the peek window (a long URL) is still HTTP: the HTTP parser
    // answers it (414/431, or serves it), never an opaque pass-through that skips every filter.
    if (whole.length >= maxPeek) return REQUEST_LINE_START.test(head.toString('latin1')) ? 'http1' : 'tcp';
    // A request line in progress: letters of a method, then a space and a target. Anything else is not HTTP.
    const sp = head.indexOf(0x20);
    const method = head.subarray(0, sp < 0 ? head.length : sp).toString('latin1');
    if (method.length > 0 && !TOKEN.test(method)) return 'tcp';
    if (sp < 0 && method.length > 32) return 'tcp';
    return undefined;
  }
  // A bare LF is still classified as HTTP/1 so that llhttp, not we, answers 400 to it.
  const line = head.subarray(0, nl).toString('latin1').replace(/\r$/, '');
  const parts = line.split(' ');
  if (parts.length === 3 && TOKEN.test(parts[0]) && parts[1].length > 0 && /^HTTP\/1\.[01]$/.test(parts[2])) return 'http1';
  return 'tcp';
}

/**
 * Reads the first bytes of a tunnel, decides which protocol it carries and puts the bytes back
 * (unshift), so the server that takes the stream over sees it from its first byte. The stream is
 * left paused. Resolves 'tcp' on silence, on EOF before a decision, and for anything not HTTP.
 */
export interface Detection {
  protocol: DetectedProtocol;
  /**
   * Bytes that could not be put back because the peer already half-closed (a stream cannot be
   * unshifted after 'end'): the caller must send them first. Empty otherwise.
   */
  leftover: Buffer;
  /** The peer half-closed before the decision. */
  ended: boolean;
}

export function detectProtocol(stream: Duplex, opts: DetectOptions): Promise<Detection> {
  const maxPeek = opts.maxPeekBytes ?? DEFAULT_MAX_PEEK;
  return new Promise((resolve) => {
    let head: Buffer = Buffer.alloc(0);
    let done = false;
    let ended = false;
    const finish = (p: DetectedProtocol) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      stream.removeListener('data', onData);
      stream.removeListener('end', onEnd);
      stream.removeListener('close', onEnd);
      stream.removeListener('error', onEnd);
      stream.pause();
      let leftover: Buffer = Buffer.alloc(0);
      if (head.length > 0) {
        if (ended || stream.destroyed) leftover = head;
        else stream.unshift(head);
      }
      resolve({ protocol: p, leftover, ended });
    };
    const onData = (chunk: Buffer) => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const p = classify(head, maxPeek);
      if (p !== undefined) finish(p);
    };
    const onEnd = () => {
      ended = true;
      finish('tcp');
    };
    const timer = setTimeout(() => finish('tcp'), opts.timeoutMs);
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
    stream.once('error', onEnd);
  });
}
