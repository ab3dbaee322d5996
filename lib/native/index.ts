/**
 * The only boundary to Ambit's native addon (src/ambit_native.cc, built by node-gyp on
 * `npm ci` through the package's "install" script). The addon exposes just what Node
 * lacks: creating sockets inside another network namespace, SO_MARK before connect,
 * IP_TRANSPARENT/IP_FREEBIND, and SO_ORIGINAL_DST. Nothing else in the tree touches a raw
 * fd: the fds returned here are handed straight to Node, as the docs of each function
 * show.
 *
 * Every call is synchronous and runs on the calling JS thread. setns(2) applies per
 * thread, so the addon switches that thread into the target netns only for socket(),
 * then switches back. If switching back fails, the process aborts.
 *
 * Errors from the system carry `errno` (negative, as in Node's own errors), `code`
 * ('ENOENT', 'EPERM', 'EADDRINUSE', ...), `syscall`, `netns` when one was given, and a
 * message naming the operation and the namespace, e.g.
 * "setns(/var/run/netns/x): Operation not permitted" or
 * "bind(0.0.0.0:15001) in /var/run/netns/x: Address already in use".
 * Bad arguments throw a TypeError with code 'ERR_INVALID_ARG_VALUE'.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import util from 'node:util';

export interface ListenTcpOptions {
  /** Path of the target netns (/var/run/netns/X, /proc/PID/ns/net). Omitted: the caller's netns. */
  netns?: string;
  /** Numeric IPv4 or IPv6 address. "::" is dual-stack unless net.ipv6.bindv6only=1. */
  host: string;
  /** 0 picks a free port: read it back after adoption with server.address(). */
  port: number;
  /** Default 511. Node calls listen() again on adoption with its own backlog (also 511 unless given). */
  backlog?: number;
  reusePort?: boolean;
  transparent?: boolean;
  freebind?: boolean;
}

export interface BindUdpOptions {
  netns?: string;
  host: string;
  port: number;
  reusePort?: boolean;
}

export interface ConnectSocketOptions {
  netns?: string;
  family: 4 | 6;
  /** SO_MARK, set before connect(). Needs CAP_NET_ADMIN. */
  mark?: number;
  bindAddress?: string;
  bindPort?: number;
  transparent?: boolean;
  freebind?: boolean;
}

export interface ConnectMarkedOptions extends Omit<ConnectSocketOptions, 'family'> {
  /** Keep the writable side open after the peer's FIN (a proxy forwards each direction's end separately). */
  allowHalfOpen?: boolean;
  /** Numeric address only. Its family selects the socket's family. */
  host: string;
  port: number;
}

export interface OriginalDst {
  address: string;
  port: number;
  family: 4 | 6;
}

/** A failed system call in the addon. */
export interface NativeSystemError extends Error {
  errno: number;
  code: string;
  syscall: string;
  netns?: string;
}

interface Addon {
  listenTcp(opts: ListenTcpOptions): number;
  bindUdp(opts: BindUdpOptions): number;
  connectSocket(opts: ConnectSocketOptions): number;
  getOriginalDst(fd: number): OriginalDst;
  setMark(fd: number, mark: number): void;
  setKeepalive(fd: number, idleSeconds: number, intervalSeconds: number, probes: number): void;
  getKeepalive(fd: number): KeepaliveSettings;
}

const ADDON_REL = path.join('lib', 'native', 'build', 'Release', 'ambit_native.node');
let addon: Addon | undefined;

// The addon is loaded on first use rather than at import. Code that only imports this
// module, such as config parsing and unit tests, then runs where the addon was never
// built, including on non-Linux laptops.
function native(): Addon {
  if (addon) return addon;
  if (process.platform !== 'linux') {
    throw new Error(`lib/native: network namespaces and socket marks need Linux (this is ${process.platform})`);
  }
  // The TS compiles to dist/lib/native/, while node-gyp builds into lib/native/build/ of
  // the source tree. So walk up to the package root, the directory that holds both
  // package.json and lib/native/binding.gyp, and never further. That way an unrelated
  // checkout higher up cannot supply the addon.
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'lib', 'native', 'binding.gyp'))) {
      const file = path.join(dir, ADDON_REL);
      if (!fs.existsSync(file)) {
        throw new Error(`lib/native: the native addon is not built (${file} is missing): run \`npm ci\`, or \`npm run install\` to build only the addon`);
      }
      addon = require(file) as Addon;
      return addon;
    }
    if (path.dirname(dir) === dir) {
      throw new Error(`lib/native: no package root with lib/native/binding.gyp above ${__dirname}`);
    }
  }
}

// The addon sets errno, syscall and the message. The code is derived here from the
// errno, so that the C side needs no table of errno names.
function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    const e = err as Partial<NativeSystemError>;
    if (err instanceof Error && typeof e.errno === 'number' && e.code === undefined) {
      e.code = util.getSystemErrorName(e.errno);
    }
    throw err;
  }
}

/**
 * A TCP listener inside `netns`, bound and listening. It is non-blocking and close-on-exec.
 * Adopt it with `net.createServer(...).listen({ fd })` (verified on Node 20).
 * SO_REUSEADDR is always set.
 */
export function listenTcp(opts: ListenTcpOptions): number {
  return call(() => native().listenTcp(opts));
}

/**
 * A bound UDP socket inside `netns`. It is non-blocking and close-on-exec. Adopt it with
 * `dgram.createSocket('udp4' | 'udp6').bind({ fd })` (verified on Node 20). The type must
 * match the socket's family, because Node picks the address family for send() from the
 * type, not from the fd.
 */
export function bindUdp(opts: BindUdpOptions): number {
  return call(() => native().bindUdp(opts));
}

/**
 * An unconnected TCP socket inside `netns`, with SO_MARK (when given) and TCP_NODELAY
 * already set, optionally bound. Prefer connectMarked(), which adopts and connects it safely.
 * To adopt the fd by hand, call `new net.Socket({ fd }).connect(port, ip)` in the SAME
 * tick, with a numeric `ip`. On Node 20 the net.Socket constructor starts reading at
 * once. Node defers the connect of a numeric address only to process.nextTick, so the
 * socket is already in SYN_SENT when libuv first polls it. If connect() comes after the
 * event loop has polled (a setImmediate, an await, or a hostname that needs a DNS lookup),
 * epoll reports the unconnected socket as hung up. The socket then dies with
 * "ENOTCONN read" (seen on Node 20.20).
 */
export function connectSocket(opts: ConnectSocketOptions): number {
  return call(() => native().connectSocket(opts));
}

/**
 * Connects from inside `netns` (with `mark`, bindAddress, ...) and returns a net.Socket
 * that is already connecting. Listen for 'connect' and 'error' as for net.connect().
 * Connection errors arrive as 'error' with syscall 'connect' (e.g. ECONNREFUSED).
 * Failures to create the socket (netns, mark, bind) are thrown synchronously.
 */
export function connectMarked(opts: ConnectMarkedOptions): net.Socket {
  const { host, port, allowHalfOpen, ...rest } = opts;
  const family = net.isIP(host);
  if (family === 0) throw typeError(`host must be a numeric IPv4 or IPv6 address: ${String(host)}`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw typeError(`port must be an integer in [1, 65535]: ${String(port)}`);
  const fd = connectSocket({ ...rest, family: family as 4 | 6 });
  let socket: net.Socket;
  try {
    socket = new net.Socket({ fd, allowHalfOpen: allowHalfOpen ?? false });
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  // Same tick as the constructor: see connectSocket().
  return socket.connect(port, host);
}

/**
 * The destination an accepted connection had before iptables REDIRECT rewrote it.
 * IPv4 clients of a dual-stack [::] listener are reported with family 4.
 * Caveat: it also "succeeds" on connections that were never redirected, because it
 * returns the conntrack entry's original destination, which is then simply the local
 * address. Callers must refuse a destination that is one of the proxy's own listeners,
 * or it would proxy to itself in a loop. It fails with ENOENT when the netns has no
 * conntrack entry for the connection, for example when no NAT rules are loaded there.
 */
export function getOriginalDst(fd: number): OriginalDst {
  return call(() => native().getOriginalDst(fd));
}

/** getOriginalDst() of an accepted net.Socket. */
export function originalDst(socket: net.Socket): OriginalDst {
  return getOriginalDst(socketFd(socket));
}

/**
 * SO_MARK on an existing socket (needs CAP_NET_ADMIN). The mark only affects packets sent
 * after this call. An outbound connection that must escape the in-pod REDIRECT needs
 * connectSocket({ mark }) / connectMarked({ mark }) instead.
 */
export function setMark(target: number | net.Socket, mark: number): void {
  const fd = typeof target === 'number' ? target : socketFd(target);
  call(() => native().setMark(fd, mark));
}

/** TCP keepalive as the kernel holds it for one socket (times in seconds). */
export interface KeepaliveSettings {
  enabled: boolean;
  idle: number;
  interval: number;
  probes: number;
}

/**
 * SO_KEEPALIVE with the idle time before the first probe, the interval between probes and the
 * number of unanswered probes before the connection is dropped; 0 leaves one at the kernel's
 * default. Seconds are whole: the kernel counts in seconds.
 */
export function setKeepalive(target: number | net.Socket, k: { idleSeconds?: number; intervalSeconds?: number; probes?: number }): void {
  const fd = typeof target === 'number' ? target : socketFd(target);
  call(() => native().setKeepalive(fd, k.idleSeconds ?? 0, k.intervalSeconds ?? 0, k.probes ?? 0));
}

export function getKeepalive(target: number | net.Socket): KeepaliveSettings {
  const fd = typeof target === 'number' ? target : socketFd(target);
  return call(() => native().getKeepalive(fd));
}

/**
 * Identity of a network namespace: the inode of its nsfs file. Entries under
 * /var/run/netns are bind mounts, so two paths name the same netns exactly when their
 * inodes match.
 */
export function netnsInode(nsPath: string): number {
  return fs.statSync(nsPath).ino;
}

/** netnsInode() of the calling thread's current netns. */
export function threadNetnsInode(): number {
  return netnsInode('/proc/thread-self/ns/net');
}

// Node keeps the fd on the private libuv handle. This file is the only place that reads
// it.
function socketFd(socket: net.Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    const err = new Error('socket has no file descriptor (destroyed, or not a TCP socket)') as NativeSystemError;
    err.errno = -os.constants.errno.EBADF;
    err.code = 'EBADF';
    err.syscall = 'fd';
    throw err;
  }
  return fd;
}

function typeError(message: string): TypeError {
  return Object.assign(new TypeError(message), { code: 'ERR_INVALID_ARG_VALUE' });
}
