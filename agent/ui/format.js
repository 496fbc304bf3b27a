// Formatting of API values for people.

// A Go duration in nanoseconds (Consul's LockDelay) as "15s", "1m30s", "250ms".
export function nanos(ns) {
  if (typeof ns !== 'number' || !Number.isFinite(ns)) return String(ns ?? '—');
  if (ns === 0) return '0s';
  if (ns < 1e6) return `${ns / 1e3}µs`;
  if (ns < 1e9) return `${ns / 1e6}ms`;
  let s = ns / 1e9;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const sec = Number.isInteger(s) ? `${s}s` : `${s.toFixed(3).replace(/0+$/, '')}s`;
  return m > 0 ? `${m}m${s > 0 ? sec : ''}` : sec;
}

// Serf's member status codes, as `consul members` prints them.
export function memberStatus(code) {
  return ['none', 'alive', 'leaving', 'left', 'failed'][code] ?? `status ${code}`;
}

export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}
