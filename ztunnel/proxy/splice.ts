import type { Duplex } from 'node:stream';
import http2 from 'node:http2';
import type { ConnectionRecord } from '../telemetry/connection';

/**
 * Copies bytes both ways between the client side and the upstream side, preserving
 * half-close (a FIN or END_STREAM on one side ends only that direction), counting bytes
 * into the record, and closing the record once both sides are done. An error on either
 * side tears down both.
 */
export function splice(client: Duplex, upstream: Duplex, rec: ConnectionRecord, onDone?: () => void): void {
  let open = 2;
  let flags = '-';
  const finish = () => {
    if (--open === 0) {
      rec.close(flags);
      onDone?.();
    }
  };
  client.on('data', (b: Buffer) => (rec.received += b.length));
  upstream.on('data', (b: Buffer) => (rec.sent += b.length));
  client.pipe(upstream);
  upstream.pipe(client);
  const fail = (side: 'downstream' | 'upstream') => () => {
    if (flags === '-') flags = side === 'upstream' ? 'UC' : 'DC';
    abort(client);
    abort(upstream);
  };
  client.once('error', fail('downstream'));
  upstream.once('error', fail('upstream'));
  client.once('close', finish);
  upstream.once('close', finish);
}

/** Tears a side down: a TCP reset for sockets, RST_STREAM for a tunnel stream (errors only; normal ends use END_STREAM). */
export function abort(d: Duplex): void {
  if (d.destroyed) return;
  // http2 exports no stream class at runtime: a tunnel stream is the duplex with a session.
  const stream = d as Duplex & { session?: unknown; close?: (code?: number) => void };
  if (stream.session !== undefined && typeof stream.close === 'function') {
    stream.close(http2.constants.NGHTTP2_CANCEL);
    return;
  }
  const s = d as Duplex & { resetAndDestroy?: () => void };
  if (typeof s.resetAndDestroy === 'function') s.resetAndDestroy();
  else d.destroy();
}
