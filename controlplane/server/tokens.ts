import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Resource } from '../../lib/api/resource';

/** Stored under an internal kind the resource API never serves: only the hash of the secret is kept. */
export const TOKEN_KIND = 'BootstrapToken';

export interface TokenSpec {
  node: string;
  secretSha256: string;
  expiresAt: string;
}

export function newToken(node: string, ttlMs: number): { token: string; resource: Resource<TokenSpec> } {
  const id = randomBytes(6).toString('hex');
  const secret = randomBytes(24).toString('base64url');
  const expiresAt = new Date(Date.now() + ttlMs).toISOString();
  return {
    token: `ambit-${id}.${secret}`,
    resource: {
      apiVersion: 'ambit.io/internal',
      kind: TOKEN_KIND,
      metadata: { name: id },
      spec: { node, secretSha256: createHash('sha256').update(secret).digest('hex'), expiresAt },
    },
  };
}

export function parseToken(token: string): { id: string; secret: string } | null {
  const m = /^ambit-([0-9a-f]{12})\.([A-Za-z0-9_-]{20,64})$/.exec(token);
  return m ? { id: m[1], secret: m[2] } : null;
}

export function secretMatches(spec: TokenSpec, secret: string): boolean {
  const a = Buffer.from(createHash('sha256').update(secret).digest('hex'));
  const b = Buffer.from(spec.secretSha256);
  return a.length === b.length && timingSafeEqual(a, b);
}
