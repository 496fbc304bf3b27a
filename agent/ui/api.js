// The agent's public HTTP API, and blocking queries that follow a result as it changes.
// Nothing here knows about pages: a page starts watches with its AbortSignal, and leaving the
// page aborts them (the held requests are closed, no timer is left behind).

// How long one blocking query is held by the agent (Consul's default wait).
const WAIT = '5m';
const MAX_BACKOFF_MS = 30000;

export class ApiError extends Error {
  constructor(status, text, path) {
    super(`${status} from ${path}: ${text.trim() || 'no reason given'}`);
    this.status = status;
    this.text = text;
    this.path = path;
  }
}

// One request. Returns {status, index, body} with body parsed as JSON when it is JSON.
// Throws ApiError for a status outside `ok` (default: 2xx), or the fetch error.
export async function request(method, path, {body, signal, ok} = {}) {
  const resp = await fetch(path, {
    method,
    body,
    signal,
    cache: 'no-store',
    headers: body === undefined ? {} : {'Content-Type': 'text/plain; charset=utf-8'},
  });
  const text = await resp.text();
  const good = ok ? ok.includes(resp.status) : resp.ok;
  if (!good) throw new ApiError(resp.status, text, path);
  const type = resp.headers.get('Content-Type') || '';
  let parsed = text;
  if (type.includes('json') && text !== '') parsed = JSON.parse(text);
  const raw = resp.headers.get('X-Consul-Index');
  return {status: resp.status, index: raw === null ? null : Number(raw), body: parsed};
}

export const get = (path, opts) => request('GET', path, opts);

// The number of watches failing right now, shown in the header.
const failing = new Set();
let connListener = () => {};
export function onConnectionChange(fn) {
  connListener = fn;
}
function setFailing(key, err, retryMs) {
  if (err) failing.add(key);
  else failing.delete(key);
  connListener(failing.size, err, retryMs);
}

// Follows `path` with blocking queries until `signal` aborts: calls onData(body, index, status)
// with the first answer and after each change of X-Consul-Index (never for an unchanged one).
// `ok` lists extra statuses that are answers (a KV 404 is "nothing there", with an index).
// A network error or a 5xx is retried with exponential backoff (1s, 2s, ... 30s, jittered);
// any other status calls onError(err) and stops, since asking again would get the same answer.
export function watch(path, {signal, onData, onError, ok = []}) {
  const key = Symbol(path);
  const sep = path.includes('?') ? '&' : '?';
  let index = 0;
  let failures = 0;
  (async () => {
    while (!signal.aborted) {
      const url = index > 0 ? `${path}${sep}index=${index}&wait=${WAIT}` : path;
      let res;
      try {
        res = await request('GET', url, {signal, ok: [200, ...ok]});
      } catch (err) {
        if (signal.aborted) break;
        if (err instanceof ApiError && err.status < 500) {
          setFailing(key, null);
          if (onError) onError(err);
          return;
        }
        failures += 1;
        const delay = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (failures - 1));
        const jittered = delay / 2 + Math.random() * (delay / 2);
        setFailing(key, err, jittered);
        await sleep(jittered, signal);
        continue;
      }
      if (failures > 0) {
        failures = 0;
        setFailing(key, null);
      }
      const next = res.index === null || Number.isNaN(res.index) ? 0 : res.index;
      if (next === 0) {
        // Not a blocking endpoint: one answer is all there is.
        onData(res.body, 0, res.status);
        return;
      }
      // A changed index is a new result; one that went backwards (a restarted agent) too: the
      // next query then blocks from the new, lower index.
      if (next !== index) {
        index = next;
        onData(res.body, next, res.status);
      } else {
        // The wait ran out with nothing new. Pause a moment before asking again, so a proxy or
        // server that answers at once cannot turn this loop into a flood (the index catches any
        // change made meanwhile).
        await sleep(1000, signal);
      }
    }
    setFailing(key, null);
  })();
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, {once: true});
  });
}

// Path pieces for the API: each segment percent-encoded, slashes kept for KV keys.
export function enc(name) {
  return encodeURIComponent(name);
}
export function encKey(key) {
  return key.split('/').map(encodeURIComponent).join('/');
}

// Decodes a KV Value (base64 or null) to {text} when it is UTF-8, else {bytes}.
export function decodeValue(b64) {
  if (b64 === null || b64 === undefined) return {text: '', size: 0};
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  try {
    return {text: new TextDecoder('utf-8', {fatal: true}).decode(bytes), size: bytes.length};
  } catch {
    return {binary: b64, size: bytes.length};
  }
}
