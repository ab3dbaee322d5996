import { inNetns, runAsync } from './sh';

/**
 * An HTTP GET made from inside a netns (e.g. a ztunnel's admin on 127.0.0.1:15000 of its
 * host netns), by a node one-liner run with `ip netns exec`. Without a netns, the request
 * is made from this process's own netns.
 */
export interface HttpAnswer {
  status: number;
  body: string;
}

const SCRIPT = `
const [url, ms] = process.argv.slice(1);
fetch(url, { signal: AbortSignal.timeout(Number(ms)) }).then(
  async (r) => { process.stdout.write(JSON.stringify({ status: r.status, body: await r.text() })); },
  (e) => { process.stdout.write(JSON.stringify({ error: String((e && e.cause && e.cause.message) || (e && e.message) || e) })); },
);`;

export async function httpGet(netns: string | undefined, url: string, timeoutMs = 5000): Promise<HttpAnswer> {
  const argv = [process.execPath, '-e', SCRIPT, url, String(timeoutMs)];
  const r = await runAsync(netns ? inNetns(netns, argv) : argv, { timeoutMs: timeoutMs + 10_000 });
  let parsed: { status?: number; body?: string; error?: string };
  try {
    parsed = JSON.parse(r.stdout) as typeof parsed;
  } catch {
    throw new Error(`GET ${url}${netns ? ` in netns ${netns}` : ''}: no answer${r.stderr ? `: ${r.stderr.trim()}` : ''}`);
  }
  if (parsed.error !== undefined) throw new Error(`GET ${url}${netns ? ` in netns ${netns}` : ''}: ${parsed.error}`);
  return { status: parsed.status ?? 0, body: parsed.body ?? '' };
}
