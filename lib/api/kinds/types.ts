import type { z } from 'zod';
import type { Resource } from '../resource';

export interface KindDef {
  kind: string;
  /** apiVersions accepted on input; the first is the one served. */
  apiVersions: string[];
  namespaced: boolean;
  plural: string;
  shortNames: string[];
  /** Schema of `spec`; must be strict so that unsupported fields are errors. */
  spec: z.ZodType;
  /** Whether `spec` may be omitted (Namespace). */
  specOptional?: boolean;
  /** Checks across fields that a schema cannot say; push errors with their path from the resource root. */
  check?: (r: Resource, add: (path: string, message: string) => void) => void;
  /** Extra columns for `get -o wide`. */
  wide?: (r: Resource) => Record<string, string>;
}
