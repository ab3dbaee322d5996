// lib/native against real network namespaces. Needs root and iproute2, plus iptables for
// the REDIRECT tests (scripts/setup.sh installs both). Every test creates its own netns
// with a random name and deletes it in `finally`. Rules and addresses are only added
// inside those namespaces, never in the host's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { ZTUNNEL_MARK, ZTUNNEL_MARK_MASK } from '../../lib/api/node-protocol';
import {
  bindUdp,
  connectSocket,
  connectMarked,
  getOriginalDst,
  listenTcp,
  netnsInode,
  originalDst,
  setMark,
  threadNetnsInode,
  type NativeSystemError,
  type OriginalDst,
} from '../../lib/native';

function hasCommand(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 5_000 });
    return true;
  } catch {
    return false;
  }
}

const isRoot = process.getuid?.() === 0;
const hasIp = hasCommand('ip', ['-V']);
const skip = !isRoot
  ? 'needs root (network namespaces, setns)'
  : !hasIp
    ? 'needs `ip` from iproute2 (scripts/setup.sh installs it)'
    : false;
const hasIptables = isRoot && hasCommand('iptables', ['-t', 'nat', '-S']);
const skipNat = skip || (!hasIptables ? 'needs iptables with the nat table (scripts/setup.sh installs it)' : false);
const hasIp6tables = isRoot && hasCommand('ip6tables', ['-t', 'nat', '-S']);

const STEP_MS = 5_000;
const TEST_MS = 30_000;

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', timeout: STEP_MS, stdio: ['ignore', 'pipe', 'pipe'] });
}

interface Netns {
  name: string;
  path: string;
  /** Runs `ip netns exec NAME cmd...`. */
  exec(cmd: string, args: string[]): string;
}

// node:test cancels a test whose promise is still pending when the event loop runs dry.
// Its `finally` then never runs, so namespaces that are still alive are also deleted at
// exit.
const liveNetns = new Set<string>();
process.on('exit', () => {
  for (const name of liveNetns) {
    try {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore', timeout: STEP_MS });
    } catch {
      // Nothing more can be done while exiting.
    }
  }
});

async function withNetns(fn: (ns: Netns) => Promise<void>): Promise<void> {
  const name = `ambit-nt-${randomBytes(4).toString('hex')}`;
  run('ip', ['netns', 'add', name]);
  liveNetns.add(name);
  try {
    run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    await fn({ name, path: `/var/run/netns/${name}`, exec: (cmd, args) => run('ip', ['netns', 'exec', name, cmd, ...args]) });
  } finally {
    try {
      run('ip', ['netns', 'del', name]);
      liveNetns.delete(name);
    } catch (err) {
      // Leave the original assertion failure visible. A netns that cannot be deleted is
      // reported but does not mask it.
      console.error(`could not delete netns ${name}:`, err);
    }
  }
}

/** Runs a node script inside the netns. Rejects on a non-zero exit or after STEP_MS. */
function nodeInNetns(ns: Netns, script: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, '-e', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), STEP_MS);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`client in ${ns.name} exited with ${code ?? signal}: ${err.trim()}`));
    });
  });
}

function within<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), STEP_MS);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function adoptListener(server: net.Server, fd: number): Promise<number> {
  return within(
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ fd }, () => resolve((server.address() as net.AddressInfo).port));
    }),
    `listen({ fd: ${fd} })`,
  );
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Writes one line on connect and resolves with everything read until the peer ends. */
function exchange(socket: net.Socket, line: string): Promise<string> {
  return within(
    new Promise((resolve, reject) => {
      let got = '';
      socket.setEncoding('utf8');
      socket.on('connect', () => socket.write(line + '\n'));
      socket.on('data', (d: string) => (got += d));
      socket.on('end', () => resolve(got));
      socket.on('error', reject);
    }),
    `exchange on ${line}`,
  );
}

function expectSysError(fn: () => unknown, code: string, errno: number, syscall: string, message: RegExp): NativeSystemError {
  try {
    fn();
  } catch (err) {
    const e = err as NativeSystemError;
    assert.equal(e.code, code, String(err));
    assert.equal(e.errno, -errno);
    assert.equal(e.syscall, syscall);
    assert.match(e.message, message);
    return e;
  }
  assert.fail(`expected ${code}`);
}

const E = os.constants.errno;

const TCP_CLIENT = `
const net = require('net');
const [host, port] = process.argv.slice(1);
const s = net.connect(Number(port), host, () => s.write('ping from the pod\\n'));
let got = '';
s.setEncoding('utf8');
s.on('data', (d) => (got += d));
s.on('end', () => process.stdout.write(got));
`;

test('a listener made in a pod netns from the host netns serves clients inside that netns; the thread comes back', { skip, timeout: TEST_MS }, async () => {
  await withNetns(async (ns) => {
    const home = threadNetnsInode();
    assert.equal(home, netnsInode('/proc/self/ns/net'));
    assert.notEqual(netnsInode(ns.path), home);
    for (const host of ['127.0.0.1', '::1']) {
      const fd = listenTcp({ netns: ns.path, host, port: 0 });
      assert.equal(threadNetnsInode(), home, 'the JS thread is back in its own netns');
      // fdinfo flags are octal: O_NONBLOCK 04000, O_CLOEXEC 02000000.
      const flags = parseInt(/flags:\s*([0-7]+)/.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1], 8);
      assert.ok(flags & fs.constants.O_NONBLOCK, 'O_NONBLOCK');
      assert.ok(flags & 0o2000000, 'O_CLOEXEC');

      const received: string[] = [];
      const server = net.createServer((s) => {
        s.setEncoding('utf8');
        s.on('data', (d: string) => {
          received.push(d);
          s.end(`pong: ${d}`);
        });
      });
      try {
        const port = await adoptListener(server, fd);
        const reply = await nodeInNetns(ns, TCP_CLIENT, [host, String(port)]);
        assert.equal(reply, 'pong: ping from the pod\n');
        assert.deepEqual(received, ['ping from the pod\n']);
        // The same port in the host's netns: nothing there.
        await assert.rejects(
          within(new Promise<void>((resolve, reject) => net.connect(port, host, () => resolve()).on('error', reject)), 'host connect'),
          { code: 'ECONNREFUSED' },
        );
      } finally {
        await closeServer(server);
      }
    }
    assert.equal(threadNetnsInode(), home);
  });
});

test('SO_ORIGINAL_DST gives the pre-REDIRECT destination; a socket marked before connect is not captured', { skip: skipNat, timeout: TEST_MS }, async () => {
  await withNetns(async (ns) => {
    const home = threadNetnsInode();
    // A "remote" service address local to the pod netns, so that an uncaptured
    // connection reaches a real server.
    run('ip', ['-n', ns.name, 'addr', 'add', '10.99.0.1/32', 'dev', 'lo']);
    if (hasIp6tables) run('ip', ['-n', ns.name, '-6', 'addr', 'add', 'fd00:99::1/128', 'dev', 'lo', 'nodad']);

    const seen: Record<string, OriginalDst[]> = { capture4: [], capture6: [], direct: [] };
    const mkServer = (tag: string) =>
      net.createServer((s) => {
        const dst = originalDst(s);
        seen[tag].push(dst);
        s.once('data', () => s.end(`${tag} ${dst.address} ${dst.port} ${dst.family}\n`));
      });
    // capture4 listens on an AF_INET socket. capture6 listens on dual-stack [::], so
    // IPv4 clients get v4-mapped AF_INET6 sockets.
    const capture4 = mkServer('capture4');
    const capture6 = mkServer('capture6');
    const direct = mkServer('direct');
    const servers = [capture4, capture6, direct];
    try {
      const p4 = await adoptListener(capture4, listenTcp({ netns: ns.path, host: '0.0.0.0', port: 0 }));
      const p6 = await adoptListener(capture6, listenTcp({ netns: ns.path, host: '::', port: 0 }));
      await adoptListener(direct, listenTcp({ netns: ns.path, host: '::', port: 80 }));
      const notMarked = ['-m', 'mark', '!', '--mark', `0x${ZTUNNEL_MARK.toString(16)}/0x${ZTUNNEL_MARK_MASK.toString(16)}`];
      ns.exec('iptables', ['-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '--dport', '80', ...notMarked, '-j', 'REDIRECT', '--to-ports', String(p4)]);
      ns.exec('iptables', ['-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '--dport', '81', '-j', 'REDIRECT', '--to-ports', String(p6)]);
      if (hasIp6tables) {
        ns.exec('ip6tables', ['-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '--dport', '80', ...notMarked, '-j', 'REDIRECT', '--to-ports', String(p6)]);
      }

      // An application inside the pod (a separate process) is captured.
      assert.equal(await nodeInNetns(ns, TCP_CLIENT, ['10.99.0.1', '80']), 'capture4 10.99.0.1 80 4\n');
      assert.deepEqual(seen.capture4, [{ address: '10.99.0.1', port: 80, family: 4 }]);

      // A socket made by this process inside the pod netns, without a mark: captured too.
      assert.equal(await exchange(connectMarked({ netns: ns.path, host: '10.99.0.1', port: 80 }), 'a'), 'capture4 10.99.0.1 80 4\n');
      // The same with the ztunnel's mark: reaches the real destination.
      const marked = connectMarked({ netns: ns.path, host: '10.99.0.1', port: 80, mark: ZTUNNEL_MARK });
      assert.equal(await exchange(marked, 'b'), 'direct 10.99.0.1 80 4\n');
      // The documented caveat: on an uncaptured connection, SO_ORIGINAL_DST "succeeds" and
      // returns the connection's own destination.
      assert.deepEqual(seen.direct, [{ address: '10.99.0.1', port: 80, family: 4 }]);
      // An IPv4 connection accepted by the dual-stack listener still reports family 4.
      assert.equal(await exchange(connectMarked({ netns: ns.path, host: '10.99.0.1', port: 81 }), 'c'), 'capture6 10.99.0.1 81 4\n');

      if (hasIp6tables) {
        assert.equal(await exchange(connectMarked({ netns: ns.path, host: 'fd00:99::1', port: 80 }), 'd'), 'capture6 fd00:99::1 80 6\n');
        const marked6 = connectMarked({ netns: ns.path, host: 'fd00:99::1', port: 80, mark: ZTUNNEL_MARK });
        assert.equal(await exchange(marked6, 'e'), 'direct fd00:99::1 80 6\n');
      }

      // The raw form (connectSocket + new net.Socket({ fd }) + connect in the same tick)
      // with a bound source address.
      const fd = connectSocket({ netns: ns.path, family: 4, mark: ZTUNNEL_MARK, bindAddress: '10.99.0.1' });
      const raw = new net.Socket({ fd }).connect(80, '10.99.0.1');
      assert.equal(await exchange(raw, 'f'), 'direct 10.99.0.1 80 4\n');
      assert.equal(threadNetnsInode(), home);
    } finally {
      await Promise.all(servers.map(closeServer));
    }
  });
});

test('errors carry errno, code, syscall and name the netns; the thread never stays behind', { skip, timeout: TEST_MS }, async () => {
  await withNetns(async (ns) => {
    const home = threadNetnsInode();
    const missing = `/var/run/netns/ambit-nt-missing-${randomBytes(4).toString('hex')}`;
    expectSysError(() => listenTcp({ netns: missing, host: '127.0.0.1', port: 0 }), 'ENOENT', E.ENOENT, 'open', new RegExp(`^open\\(${missing}\\): No such file or directory$`));
    expectSysError(() => connectSocket({ netns: missing, family: 4 }), 'ENOENT', E.ENOENT, 'open', /^open\(/);
    // An nsfs file that is not a network namespace.
    expectSysError(() => bindUdp({ netns: '/proc/self/ns/uts', host: '127.0.0.1', port: 0 }), 'EINVAL', E.EINVAL, 'setns', /^setns\(\/proc\/self\/ns\/uts\): Invalid argument$/);
    assert.equal(threadNetnsInode(), home);

    const server = net.createServer();
    const reusers: net.Server[] = [];
    try {
      const port = await adoptListener(server, listenTcp({ netns: ns.path, host: '127.0.0.1', port: 0 }));
      const e = expectSysError(() => listenTcp({ netns: ns.path, host: '127.0.0.1', port }), 'EADDRINUSE', E.EADDRINUSE, 'bind', new RegExp(`^bind\\(127\\.0\\.0\\.1:${port}\\) in ${ns.path}: Address already in use$`));
      assert.equal(e.netns, ns.path);
      // The port is free in the host's netns: the conflict was inside the pod netns.
      const hostFd = listenTcp({ host: '127.0.0.1', port });
      reusers.push(net.createServer());
      await adoptListener(reusers[0], hostFd);
    } finally {
      await Promise.all([server, ...reusers].map(closeServer));
    }

    // SO_REUSEPORT on both sockets lets two listeners share a port, as during a handover.
    const a = net.createServer();
    const b = net.createServer();
    try {
      const port = await adoptListener(a, listenTcp({ netns: ns.path, host: '::1', port: 0, reusePort: true }));
      await adoptListener(b, listenTcp({ netns: ns.path, host: '::1', port, reusePort: true }));
    } finally {
      await Promise.all([a, b].map(closeServer));
    }

    const udp = dgram.createSocket('udp4');
    try {
      const ufd = bindUdp({ netns: ns.path, host: '127.0.0.1', port: 0 });
      await within(new Promise<void>((resolve) => udp.bind({ fd: ufd }, resolve)), 'udp bind');
      expectSysError(() => bindUdp({ netns: ns.path, host: '127.0.0.1', port: udp.address().port }), 'EADDRINUSE', E.EADDRINUSE, 'bind', / in \/var\/run\/netns\//);
    } finally {
      udp.close();
    }

    // A refused connection surfaces through Node, as for net.connect().
    await assert.rejects(exchange(connectMarked({ netns: ns.path, host: '127.0.0.1', port: 1 }), 'x'), { code: 'ECONNREFUSED', syscall: 'connect' });

    // SO_ORIGINAL_DST without any NAT in the netns: the kernel has no conntrack entry.
    const plain = net.createServer();
    try {
      const dsts: unknown[] = [];
      plain.on('connection', (s) => {
        try {
          dsts.push(originalDst(s));
        } catch (err) {
          dsts.push(err);
        }
        s.resume();
        s.end();
      });
      const port = await adoptListener(plain, listenTcp({ netns: ns.path, host: '127.0.0.1', port: 0 }));
      await exchange(connectMarked({ netns: ns.path, host: '127.0.0.1', port }), 'y').catch(() => '');
      assert.equal(dsts.length, 1);
      const err = dsts[0] as NativeSystemError;
      assert.ok(err instanceof Error, `expected an error, got ${JSON.stringify(err)}`);
      assert.equal(err.code, 'ENOENT');
      assert.match(err.message, /^getsockopt\(SO_ORIGINAL_DST\): /);
    } finally {
      await closeServer(plain);
    }

    // Closed sockets and bad arguments.
    const closed = new net.Socket();
    assert.throws(() => originalDst(closed), { code: 'EBADF' });
    assert.throws(() => setMark(closed, 1), { code: 'EBADF' });
    assert.throws(() => getOriginalDst(-1), TypeError);
    assert.throws(() => listenTcp({ netns: ns.path, host: 'localhost', port: 0 }), /numeric IPv4 or IPv6/);
    assert.throws(() => listenTcp({ host: '127.0.0.1', port: 65536 }), /port must be an integer/);
    assert.throws(() => connectSocket({ family: 5 as 4 }), /family must be 4 or 6/);
    assert.throws(() => connectSocket({ family: 4, bindAddress: '::1' }), /bindAddress must be a numeric IPv4/);
    assert.throws(() => connectMarked({ host: 'example.com', port: 80 }), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.equal(threadNetnsInode(), home);
  });
});

test('a UDP socket bound in a pod netns receives and answers datagrams from inside it', { skip, timeout: TEST_MS }, async () => {
  await withNetns(async (ns) => {
    for (const [type, host] of [['udp4', '127.0.0.1'], ['udp6', '::1']] as const) {
      const sock = dgram.createSocket(type);
      try {
        const fd = bindUdp({ netns: ns.path, host, port: 0 });
        await within(new Promise<void>((resolve) => sock.bind({ fd }, resolve)), `${type} bind({ fd })`);
        sock.on('message', (msg, rinfo) => sock.send(`pong: ${msg}`, rinfo.port, rinfo.address));
        const client = `
const dgram = require('dgram');
const [type, host, port] = process.argv.slice(1);
const c = dgram.createSocket(type);
c.on('message', (m) => { process.stdout.write(String(m)); c.close(); });
c.send('ping', Number(port), host);
`;
        assert.equal(await nodeInNetns(ns, client, [type, host, String(sock.address().port)]), 'pong: ping');
      } finally {
        sock.close();
      }
    }
  });
});

test('setMark on an adopted socket, and the socket options survive adoption', { skip, timeout: TEST_MS }, async () => {
  await withNetns(async (ns) => {
    const server = net.createServer((s) => s.end());
    try {
      const port = await adoptListener(server, listenTcp({ netns: ns.path, host: '127.0.0.1', port: 0 }));
      const s = connectMarked({ netns: ns.path, host: '127.0.0.1', port, mark: 1 });
      await within(new Promise((resolve, reject) => s.once('connect', resolve).once('error', reject)), 'connect');
      setMark(s, ZTUNNEL_MARK);
      // `ss -e` shows the socket's fwmark: the mark set here, not the one at creation.
      const line = ns.exec('ss', ['-Htnei', 'dst', `127.0.0.1:${port}`]);
      assert.match(line, new RegExp(`fwmark:0x${ZTUNNEL_MARK.toString(16)}\\b`));
      s.destroy();
    } finally {
      await closeServer(server);
    }
  });
});
