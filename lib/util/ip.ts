import net from 'node:net';

/** 4 or 16 raw bytes of an IP address; throws on anything that is not one. */
export function ipToBytes(ip: string): Uint8Array {
  if (net.isIPv4(ip)) return Uint8Array.from(ip.split('.').map(Number));
  if (net.isIPv6(ip)) {
    const out = new Uint8Array(16);
    const [head, tail] = ip.split('::') as [string, string | undefined];
    const expand = (s: string): number[] => {
      if (!s) return [];
      const parts = s.split(':');
      const words: number[] = [];
      for (const p of parts) {
        if (p.includes('.')) {
          const b = p.split('.').map(Number);
          words.push((b[0] << 8) | b[1], (b[2] << 8) | b[3]);
        } else words.push(parseInt(p, 16));
      }
      return words;
    };
    const h = expand(head);
    const t = tail === undefined ? [] : expand(tail);
    const words = tail === undefined ? h : [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
    words.forEach((w, i) => {
      out[i * 2] = w >> 8;
      out[i * 2 + 1] = w & 0xff;
    });
    return out;
  }
  throw new Error(`not an IP address: ${ip}`);
}

export function bytesToIp(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join('.');
  if (b.length === 16) {
    const words: string[] = [];
    for (let i = 0; i < 16; i += 2) words.push(((b[i] << 8) | b[i + 1]).toString(16));
    return new net.SocketAddress({ address: words.join(':'), family: 'ipv6' }).address;
  }
  throw new Error(`bad address length ${b.length}`);
}

/** Parses "10.0.0.0/8" or a bare address (a /32 or /128). */
export function parseCidr(s: string): { address: Uint8Array; length: number } {
  const [ip, len] = s.split('/');
  const address = ipToBytes(ip);
  const max = address.length * 8;
  const length = len === undefined ? max : Number(len);
  if (!Number.isInteger(length) || length < 0 || length > max) throw new Error(`bad prefix length in ${s}`);
  return { address, length };
}

export function cidrContains(c: { address: Uint8Array; length: number }, ip: Uint8Array): boolean {
  if (c.address.length !== ip.length) return false;
  let bits = c.length;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((c.address[i] & mask) !== (ip[i] & mask)) return false;
  }
  return true;
}
