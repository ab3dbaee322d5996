import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import YAML from 'yaml';
import { z } from 'zod';

/** The name every control plane serving certificate carries; clients verify it whatever address they dial. */
export const CONTROLPLANE_SERVER_NAME = 'ambit-controlplane';

const configSchema = z.strictObject({
  apiVersion: z.literal('ambit.io/v1alpha1'),
  kind: z.literal('Config'),
  server: z.string().min(1),
  serverName: z.string().default(CONTROLPLANE_SERVER_NAME),
  certificateAuthority: z.string().includes('BEGIN CERTIFICATE', { message: 'must hold a PEM certificate' }),
  clientCertificate: z.string().includes('BEGIN CERTIFICATE', { message: 'must hold a PEM certificate' }),
  clientKey: z.string().includes('PRIVATE KEY', { message: 'must hold a PEM private key' }),
});

export type ClientConfig = z.infer<typeof configSchema>;

export function defaultConfigPath(): string {
  return process.env.AMBIT_CONFIG || path.join(os.homedir(), '.ambit', 'config');
}

export function loadClientConfig(file = defaultConfigPath()): ClientConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(
      `no credential at ${file} (${code}): set AMBIT_CONFIG to the admin credential the control plane wrote into its data dir (default /var/lib/ambit/admin.yaml), or copy it to ~/.ambit/config`,
    );
  }
  const parsed = configSchema.safeParse(YAML.parse(text));
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new Error(`${file}: ${i.path.join('.') || '(root)'}: ${i.message}`);
  }
  return parsed.data;
}

export function renderClientConfig(c: Omit<ClientConfig, 'apiVersion' | 'kind'>): string {
  return YAML.stringify({ apiVersion: 'ambit.io/v1alpha1', kind: 'Config', ...c }, { lineWidth: 0 });
}

export interface Dial {
  address: string;
  credentials: grpc.ChannelCredentials;
  options: grpc.ChannelOptions;
}

export function dialFor(server: string, caPem: string, serverName: string, client?: { certPem: string; keyPem: string }): Dial {
  return {
    address: server,
    credentials: grpc.credentials.createSsl(Buffer.from(caPem), client ? Buffer.from(client.keyPem) : null, client ? Buffer.from(client.certPem) : null),
    options: {
      'grpc.ssl_target_name_override': serverName,
      'grpc.default_authority': serverName,
      'grpc.max_receive_message_length': 256 * 1024 * 1024,
      'grpc.keepalive_time_ms': 30_000,
    },
  };
}

export function dialFromConfig(c: ClientConfig): Dial {
  return dialFor(c.server, c.certificateAuthority, c.serverName, { certPem: c.clientCertificate, keyPem: c.clientKey });
}
