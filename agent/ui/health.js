// Health at a glance: counts of check statuses and the badges that show them.
import {h} from './dom.js';

export const STATUSES = ['passing', 'warning', 'critical'];

// Counts checks by status; anything but passing/warning (maintenance, unknown) is critical,
// as Consul's health endpoints treat it.
export function countStatuses(checks) {
  const n = {passing: 0, warning: 0, critical: 0};
  for (const c of checks) {
    if (c.Status === 'passing') n.passing += 1;
    else if (c.Status === 'warning') n.warning += 1;
    else n.critical += 1;
  }
  return n;
}

// The worst status among `checks` ('passing' when there are none).
export function worst(checks) {
  const n = countStatuses(checks);
  if (n.critical > 0) return 'critical';
  if (n.warning > 0) return 'warning';
  return 'passing';
}

const SYMBOL = {passing: '✓', warning: '!', critical: '✕'};

// One badge: a symbol (hidden from screen readers) and the words, e.g. "✓ 3 passing".
export function badge(status, count) {
  const known = STATUSES.includes(status) ? status : 'critical';
  const words = count === undefined ? status : `${count} ${status}`;
  return h('span', {class: `badge ${known}`, dataset: {status: known}},
    h('span', {'aria-hidden': 'true'}, SYMBOL[known] + ' '), words);
}

// The badges for a set of checks: one per status that has any, or "no checks".
export function badges(checks) {
  const n = countStatuses(checks);
  const shown = STATUSES.filter((s) => n[s] > 0);
  if (shown.length === 0) return h('span', {class: 'muted'}, 'no checks');
  return h('span', {class: 'badges'}, shown.map((s) => badge(s, n[s])));
}
