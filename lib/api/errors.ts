/** One reason a resource was refused: where (dotted field path) and why. */
export interface FieldError {
  path: string;
  message: string;
}

/** Stable codes, shared by the server, the CLI and the data plane clients. */
export type ApiErrorCode =
  | 'Invalid'
  | 'NotFound'
  | 'Conflict'
  | 'AlreadyExists'
  | 'Forbidden'
  | 'Unauthenticated'
  | 'Unavailable'
  | 'Internal';

export class ApiError extends Error {
  readonly code: ApiErrorCode;
  readonly fields: FieldError[];
  constructor(code: ApiErrorCode, message: string, fields: FieldError[] = []) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.fields = fields;
  }
}

/** `spec.rules[0].matches` from ['spec','rules',0,'matches']. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

export function formatFieldErrors(subject: string, fields: FieldError[]): string {
  return fields.map((f) => `${subject}: ${f.path === '' ? '' : `${f.path}: `}${f.message}`).join('\n');
}
