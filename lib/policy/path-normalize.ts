/**
 * Request-path normalization applied before L7 policy matching.
 *
 * Policies are written against canonical paths ("/admin"), but a client controls the raw
 * request-target and the backend will canonicalize it on its own. If we matched the raw
 * form, "//admin" or "/%61dmin" would miss a DENY on "/admin" yet still reach the admin
 * handler. So we canonicalize the way Istio's safe default does (Envoy `normalize_path`,
 * `merge_slashes`, `path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT`, approximated
 * here as "unescape") and refuse what cannot be canonicalized unambiguously.
 *
 * Choices, spelled out because each is a policy decision:
 * - Case is kept: Istio paths are case-sensitive, so "/ADMIN" is a different path.
 * - A trailing slash is kept: as in Istio, an exact rule "/admin" does not match "/admin/";
 *   authors cover both with ["/admin", "/admin/*"]. Anything that resolves onto the directory
 *   ("/admin/.", "/admin//", "/admin%2F") therefore ends in "/" and hits the prefix rule.
 * - Only unreserved characters and %2F / %5C are decoded. Decoding anything else (notably
 *   %25) would let "%252F" become "%2F" here and "/" in a backend that decodes again; the
 *   remaining escapes are kept with upper-case hex so "%3a" and "%3A" compare equal.
 * - Decoding is a single pass and happens before dot-segment resolution, so "%2e%2e" is a
 *   ".." segment, exactly as the backend will see it.
 * - Control characters (raw or escaped), spaces and non-ASCII are refused rather than
 *   escaped: none is legal in an HTTP request-target, and a lenient backend might read them
 *   differently from us. The caller answers 400.
 * - Path parameters (";jsessionid=...") are left alone, as Istio does; backends that strip
 *   them (some Java servers) need rules written for that.
 */

export type NormalizedPath = { ok: true; path: string } | { ok: false; reason: string };

const HEX = /^[0-9A-Fa-f]{2}$/;
const DOT_SEGMENT = /\/\.\.?(?:\/|$)/;

function isUnreserved(code: number): boolean {
  return (
    (code >= 0x41 && code <= 0x5a) || // A-Z
    (code >= 0x61 && code <= 0x7a) || // a-z
    (code >= 0x30 && code <= 0x39) || // 0-9
    code === 0x2d || code === 0x2e || code === 0x5f || code === 0x7e // - . _ ~
  );
}

function decode(p: string): NormalizedPath {
  let out = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c !== '%') {
      out += c;
      continue;
    }
    const hex = p.slice(i + 1, i + 3);
    if (!HEX.test(hex)) return { ok: false, reason: `invalid percent-encoding at offset ${i}` };
    const code = parseInt(hex, 16);
    if (code < 0x20 || code === 0x7f) return { ok: false, reason: `escaped control character %${hex.toUpperCase()} in path` };
    if (isUnreserved(code)) out += String.fromCharCode(code);
    else if (code === 0x2f || code === 0x5c) out += '/';
    else out += `%${hex.toUpperCase()}`;
    i += 2;
  }
  return { ok: true, path: out };
}

/** Normalizes a raw request-target path for policy matching; `ok: false` means answer 400. */
export function normalizePath(raw: string): NormalizedPath {
  // The fragment is never sent by conforming clients; when one is, it is not part of the
  // path the backend routes on, and neither is the query.
  const cut = raw.search(/[?#]/);
  const p = cut === -1 ? raw : raw.slice(0, cut);
  // Most paths are canonical already: no escapes, backslashes, empty or dot segments.
  let canonical = p.charCodeAt(0) === 0x2f;
  for (let i = 0; i < p.length; i++) {
    const code = p.charCodeAt(i);
    if (code < 0x21 || code > 0x7e) {
      const what = code < 0x20 || code === 0x7f ? 'control character' : code === 0x20 ? 'space' : 'non-ASCII character';
      return { ok: false, reason: `${what} at offset ${i} in path` };
    }
    if (code === 0x25 || code === 0x5c || (code === 0x2f && i > 0 && p.charCodeAt(i - 1) === 0x2f)) canonical = false;
  }
  if (canonical && !DOT_SEGMENT.test(p)) return { ok: true, path: p };
  const decoded = decode(p);
  if (!decoded.ok) return decoded;
  const slashed = decoded.path.replace(/\\/g, '/');
  if (!slashed.startsWith('/')) return { ok: false, reason: 'path must start with "/"' };

  const segments = slashed.split('/').slice(1);
  const stack: string[] = [];
  for (const seg of segments) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') stack.pop();
    else stack.push(seg);
  }
  // RFC 3986 remove_dot_segments: a path ending in "/", "/." or "/.." names a directory.
  const last = segments[segments.length - 1];
  const trailing = last === '' || last === '.' || last === '..';
  if (stack.length === 0) return { ok: true, path: '/' };
  return { ok: true, path: `/${stack.join('/')}${trailing ? '/' : ''}` };
}
