import { z } from 'zod';
import { re2Error } from '../util/re2';

// Kubernetes naming rules: users bring manifests written for Kubernetes, so the same
// names must be valid here and nothing Kubernetes would refuse may be accepted.
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_NAME = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

export const dnsLabel = z
  .string()
  .max(63, 'must be no more than 63 characters')
  .regex(DNS1123_LABEL, 'must be a lowercase RFC 1123 label (a-z, 0-9 and "-", starting and ending alphanumeric)');

export const dnsSubdomain = z
  .string()
  .max(253, 'must be no more than 253 characters')
  .regex(DNS1123_SUBDOMAIN, 'must be a lowercase RFC 1123 subdomain (a-z, 0-9, "-" and ".", starting and ending alphanumeric)');

function validQualifiedName(key: string): string | null {
  const slash = key.indexOf('/');
  let name = key;
  if (slash >= 0) {
    const prefix = key.slice(0, slash);
    name = key.slice(slash + 1);
    if (prefix.length === 0 || prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix)) {
      return `label key "${key}": prefix must be a DNS subdomain`;
    }
  }
  if (name.length === 0 || name.length > 63 || !LABEL_NAME.test(name)) {
    return `label key "${key}": name part must be 1-63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric`;
  }
  return null;
}

export const labelMap = z.record(z.string(), z.string()).superRefine((m, ctx) => {
  for (const [k, v] of Object.entries(m)) {
    const err = validQualifiedName(k);
    if (err) ctx.addIssue({ code: 'custom', message: err, path: [k] });
    if (v.length > 63 || !LABEL_VALUE.test(v)) {
      ctx.addIssue({
        code: 'custom',
        message: `label value "${v}" must be at most 63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric`,
        path: [k],
      });
    }
  }
});

export const annotationMap = z.record(z.string(), z.string()).superRefine((m, ctx) => {
  let size = 0;
  for (const [k, v] of Object.entries(m)) {
    const err = validQualifiedName(k);
    if (err) ctx.addIssue({ code: 'custom', message: err.replace('label key', 'annotation key'), path: [k] });
    size += k.length + v.length;
  }
  if (size > 256 * 1024) ctx.addIssue({ code: 'custom', message: 'annotations may total at most 256 KiB' });
});

/** Metadata as users write it. Server-owned fields are accepted (so `get -o yaml | apply` works) but only resourceVersion has meaning on input: optimistic concurrency. */
export const objectMeta = z.strictObject({
  name: dnsSubdomain,
  namespace: dnsLabel.optional(),
  labels: labelMap.optional(),
  annotations: annotationMap.optional(),
  resourceVersion: z.string().regex(/^[0-9]+$/, 'must be a decimal number issued by the server').optional(),
  uid: z.string().optional(),
  generation: z.number().int().nonnegative().optional(),
  creationTimestamp: z.string().optional(),
});

export type ObjectMeta = z.infer<typeof objectMeta>;

/**
 * An HTTP field value the proxy will send (RFC 9110 5.5): visible characters, spaces and tabs;
 * CR, LF, NUL or other controls would be refused by the HTTP stack on every request (or, worse,
 * split a header), so they are refused here.
 */
// eslint-disable-next-line no-control-regex
// HTTP/1.1 writes field values as single bytes: a character beyond U+00FF would be cut to its low
// byte on the wire (U+010A becomes LF), so it is refused here like the control characters.
const FIELD_VALUE_BAD = /[\u0000-\u0008\u000a-\u001f\u007f\u0100-\uffff]/;
export const httpFieldValue = z
  .string({ error: 'must be a string' })
  .max(4096, 'must be at most 4096 characters')
  .refine((v) => !FIELD_VALUE_BAD.test(v), 'must not contain control characters (CR, LF, NUL, ...) or characters beyond U+00FF');

export const ipv4 = z.ipv4({ error: 'must be an IPv4 address' });
export const ipAddress = z.union([z.ipv4(), z.ipv6()], { error: 'must be an IPv4 or IPv6 address' });
export const port = z.number({ error: 'must be a number' }).int('must be an integer').min(1, 'must be between 1 and 65535').max(65535, 'must be between 1 and 65535');

/** Go-style duration as Istio and the Gateway API write it: "1.5s", "100ms", "1h30m". */
export const DURATION_RE = /^(\d+(\.\d+)?(h|m|s|ms|us|µs|ns))+$/;
export const duration = z.string().regex(DURATION_RE, 'must be a duration such as "500ms", "10s" or "1h30m"');

/**
 * The duration in ms, or NaN when `s` is not one. For refinements: zod runs every check of a
 * schema even after the format check failed, and a throw there would abort the whole
 * validation instead of naming the field.
 */
export function durationMsOrNaN(s: string): number {
  try {
    return parseDurationMs(s);
  } catch {
    return NaN;
  }
}

export function parseDurationMs(s: string): number {
  const re = /(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)/g;
  const unit: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001, 'µs': 0.001, ns: 0.000001 };
  let total = 0;
  let consumed = 0;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    total += Number(m[1]) * (unit[m[2]] ?? NaN);
    consumed += m[0].length;
  }
  if (consumed !== s.length || s.length === 0 || !Number.isFinite(total)) throw new Error(`invalid duration "${s}"`);
  return total;
}

/**
 * Error text for a field that is missing or of the wrong type. zod's defaults ("Invalid input:
 * expected string, received undefined") are written for programmers; operators read these.
 */
export function expected(what: string): { error: (iss: z.core.$ZodRawIssue) => string | undefined } {
  return {
    error: (iss) => (iss.input === undefined ? 'required' : iss.code === 'invalid_type' ? `must be ${what}` : undefined),
  };
}

/**
 * An enum whose error lists the accepted values. `refused` names values that upstream APIs define
 * but this mesh does not implement, so the operator learns why rather than seeing a typo-style error.
 */
export function oneOf<const T extends readonly [string, ...string[]]>(values: T, refused: Record<string, string> = {}) {
  return z.enum(values, {
    error: (iss) => {
      if (iss.input === undefined) return 'required';
      if (typeof iss.input === 'string' && Object.hasOwn(refused, iss.input)) return refused[iss.input];
      return `must be one of ${values.join(', ')}`;
    },
  });
}

/** A field that upstream APIs define and this mesh deliberately does not implement: any value is an error saying why. */
export function refused(message: string) {
  return z.never({ error: message }).optional();
}

/** Why a pattern is not a valid RE2 regular expression (the syntax Istio and the Gateway API use), or undefined when it is. */
export function regexError(pattern: string): string | undefined {
  return re2Error(pattern);
}
