import net from 'node:net';
import ipaddr from 'ipaddr.js';

/** 4 or 16 raw bytes of an IP address (the data path's form); throws on anything that is not one. */
export function ipToBytes(ip: string): Uint8Array {
  // net.isIP is strict; ipaddr.js alone would take classful shorthand such as "10.1".
  if (net.isIP(ip) === 0) throw new Error(`not an IP address: ${ip}`);
  return Uint8Array.from(ipaddr.parse(ip).toByteArray());
}

export function bytesToIp(b: Uint8Array): string {
  if (b.length !== 4 && b.length !== 16) throw new Error(`bad address length ${b.length}`);
  return ipaddr.fromByteArray(Array.from(b)).toString();
}

/** Parses "10.0.0.0/8" or a bare address (a /32 or /128). */
export function parseCidr(s: string): { address: Uint8Array; length: number } {
  if (!s.includes('/')) {
    const address = ipToBytes(s);
    return { address, length: address.length * 8 };
  }
  let parsed: [ipaddr.IPv4 | ipaddr.IPv6, number];
  if (net.isIP(s.slice(0, s.indexOf('/'))) === 0) throw new Error(`not a CIDR: ${s}`);
  try {
    parsed = ipaddr.parseCIDR(s);
  } catch {
    throw new Error(`not a CIDR: ${s}`);
  }
  return { address: Uint8Array.from(parsed[0].toByteArray()), length: parsed[1] };
}

export function cidrContains(c: { address: Uint8Array; length: number }, ip: Uint8Array): boolean {
  if (c.address.length !== ip.length) return false;
  const net = ipaddr.fromByteArray(Array.from(c.address));
  const addr = ipaddr.fromByteArray(Array.from(ip));
  return addr.kind() === net.kind() && (addr as ipaddr.IPv4).match(net as ipaddr.IPv4, c.length);
}
