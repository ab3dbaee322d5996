import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ApiError, ApiErrorCode } from './errors';

const PROTO = path.join(__dirname, 'proto', 'ambit.proto');

export function loadApi(): grpc.GrpcObject {
  const def = protoLoader.loadSync(PROTO, { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true });
  return grpc.loadPackageDefinition(def);
}

export type ServiceCtor = grpc.ServiceClientConstructor;

export function services(): { Resources: ServiceCtor; Identity: ServiceCtor; Discovery: ServiceCtor } {
  const api = loadApi() as unknown as { ambit: { v1: { Resources: ServiceCtor; Identity: ServiceCtor; Discovery: ServiceCtor } } };
  return api.ambit.v1;
}

const TO_GRPC: Record<ApiErrorCode, grpc.status> = {
  Invalid: grpc.status.INVALID_ARGUMENT,
  NotFound: grpc.status.NOT_FOUND,
  Conflict: grpc.status.ABORTED,
  AlreadyExists: grpc.status.ALREADY_EXISTS,
  Forbidden: grpc.status.PERMISSION_DENIED,
  Unauthenticated: grpc.status.UNAUTHENTICATED,
  Unavailable: grpc.status.UNAVAILABLE,
  Internal: grpc.status.INTERNAL,
};

/** Field errors travel in trailing metadata as JSON so clients can name file, document and field. */
export const ERROR_FIELDS_KEY = 'ambit-error-fields';

export function toServiceError(err: unknown): Partial<grpc.ServiceError> {
  if (err instanceof ApiError) {
    const md = new grpc.Metadata();
    if (err.fields.length > 0) md.set(ERROR_FIELDS_KEY, JSON.stringify(err.fields));
    return { code: TO_GRPC[err.code], details: err.message, metadata: md };
  }
  return { code: grpc.status.INTERNAL, details: `internal error: ${(err as Error)?.message ?? String(err)}` };
}

export function fromServiceError(err: grpc.ServiceError): ApiError {
  const entry = Object.entries(TO_GRPC).find(([, v]) => v === err.code);
  const code = (entry?.[0] as ApiErrorCode | undefined) ?? (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED ? 'Unavailable' : 'Internal');
  const raw = err.metadata?.get(ERROR_FIELDS_KEY)?.[0];
  let fields = [];
  try {
    fields = raw ? JSON.parse(String(raw)) : [];
  } catch {
    fields = [];
  }
  return new ApiError(code, err.details || err.message, fields);
}
