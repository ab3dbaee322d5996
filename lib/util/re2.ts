import { RE2JS } from 're2js';

/**
 * Regular expressions from configuration (route, header, query and gRPC matches) run on RE2
 * semantics, as Istio and the Gateway API define them: linear time whatever the input, so a
 * pattern such as `(a+)+b` cannot stall the waypoint's event loop on a crafted header, and
 * RE2-only syntax (`(?i)`, `(?P<name>...)`) works while backtracking-only syntax (lookaround,
 * backreferences) is refused at the edge. re2js is a pure-JS port of RE2: no native build.
 */
export type FullMatcher = (input: string) => boolean;

/** Why `pattern` is not a valid RE2 expression, or undefined when it is. */
export function re2Error(pattern: string): string | undefined {
  try {
    RE2JS.compile(pattern);
    return undefined;
  } catch (e) {
    return `not a valid regular expression (RE2 syntax): ${(e as Error).message}`;
  }
}

/** A test that the WHOLE input matches (RE2 full match). Throws on an invalid pattern; validation refuses those first. */
export function re2FullMatcher(pattern: string, ignoreCase = false): FullMatcher {
  const re = RE2JS.compile(pattern, ignoreCase ? RE2JS.CASE_INSENSITIVE : 0);
  return (input) => re.matches(input);
}
