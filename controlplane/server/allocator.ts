import { ipToBytes, bytesToIp, parseCidr, cidrContains } from '../../lib/util/ip';

/** Hands out service VIPs from the service CIDR; never two services the same address. */
export class ClusterIpAllocator {
  private readonly base: bigint;
  private readonly size: bigint;
  private readonly family: 4 | 6;
  private readonly cidr: { address: Uint8Array; length: number };

  constructor(readonly cidrText: string) {
    this.cidr = parseCidr(cidrText);
    this.family = this.cidr.address.length === 4 ? 4 : 6;
    const bits = this.cidr.address.length * 8;
    this.base = toBig(this.cidr.address);
    this.size = 1n << BigInt(bits - this.cidr.length);
    if (this.size < 16n) throw new Error(`service CIDR ${cidrText} is too small (at least /28)`);
  }

  contains(ip: string): boolean {
    try {
      return cidrContains(this.cidr, ipToBytes(ip));
    } catch {
      return false;
    }
  }

  /** The lowest free address, skipping the network address and the first ten (reserved, as Kubernetes reserves .1). */
  allocate(used: Set<string>): string | undefined {
    const len = this.cidr.address.length;
    for (let i = 10n; i < this.size - 1n; i++) {
      const ip = bytesToIp(fromBig(this.base + i, len));
      if (!used.has(ip)) return ip;
    }
    return undefined;
  }

  get ipFamily(): 4 | 6 {
    return this.family;
  }
}

function toBig(b: Uint8Array): bigint {
  let n = 0n;
  for (const x of b) n = (n << 8n) | BigInt(x);
  return n;
}

function fromBig(n: bigint, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = len - 1; i >= 0; i--) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}
