import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

/** The parts of an OTLP/JSON span the tests look at (ids are hex in OTLP/JSON). */
export interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: Record<string, string | number | boolean>;
  status?: { code?: number; message?: string };
  /** The resource's attributes (service.name...). */
  resource: Record<string, string | number | boolean>;
}

interface OtlpAnyValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
}
interface OtlpKeyValue {
  key: string;
  value: OtlpAnyValue;
}
interface OtlpRequest {
  resourceSpans?: Array<{
    resource?: { attributes?: OtlpKeyValue[] };
    scopeSpans?: Array<{
      spans?: Array<{
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        kind: number;
        attributes?: OtlpKeyValue[];
        status?: { code?: number; message?: string };
      }>;
    }>;
  }>;
}

function flatten(kvs: OtlpKeyValue[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const { key, value } of kvs ?? []) {
    if (value.stringValue !== undefined) out[key] = value.stringValue;
    else if (value.intValue !== undefined) out[key] = Number(value.intValue);
    else if (value.doubleValue !== undefined) out[key] = value.doubleValue;
    else if (value.boolValue !== undefined) out[key] = value.boolValue;
  }
  return out;
}

export interface OtlpReceiver {
  /** e.g. "http://127.0.0.1:PORT/v1/traces" */
  url: string;
  readonly spans: OtlpSpan[];
  /** Requests that were not a well-formed OTLP/JSON POST to /v1/traces. */
  readonly rejected: string[];
  close(): Promise<void>;
}

/**
 * A minimal OTLP/HTTP JSON trace receiver on 127.0.0.1:0. Spans are stored before the
 * response is sent, so once an exporter's flush has resolved they are already here.
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: OtlpSpan[] = [];
  const rejected: string[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const reject = (why: string) => {
        rejected.push(why);
        res.writeHead(400).end();
      };
      if (req.method !== 'POST' || req.url !== '/v1/traces') return reject(`${req.method} ${req.url}`);
      if (!String(req.headers['content-type']).startsWith('application/json')) return reject(`content-type ${req.headers['content-type']}`);
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
      let parsed: OtlpRequest;
      try {
        parsed = JSON.parse(body.toString('utf8')) as OtlpRequest;
      } catch (e) {
        return reject(`bad json: ${(e as Error).message}`);
      }
      for (const rs of parsed.resourceSpans ?? []) {
        const resource = flatten(rs.resource?.attributes);
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            spans.push({
              traceId: s.traceId,
              spanId: s.spanId,
              parentSpanId: s.parentSpanId || undefined,
              name: s.name,
              kind: s.kind,
              attributes: flatten(s.attributes),
              status: s.status,
              resource,
            });
          }
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1/traces`,
    spans,
    rejected,
    close: () =>
      new Promise<void>((resolve) => {
        // The exporter keeps its connection alive; don't wait for it to time out.
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
