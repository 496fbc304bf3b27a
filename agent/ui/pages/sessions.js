// Sessions (/v1/session/list, Consul's shape), live through one held query. An agent without
// the sessions API answers 404 or 405: the page says the feature is not available.
import {watch} from '../api.js';
import {h, fill, table, problem, loading, link} from '../dom.js';
import {nanos, plural} from '../format.js';

export default function sessions({main, signal, setTitle}) {
  setTitle('Sessions');
  const count = h('p', {class: 'muted'});
  const body = h('div', {}, loading());
  fill(main, h('h1', {}, 'Sessions'), count, body);

  watch('/v1/session/list', {
    signal,
    onData: (list) => {
      list = list || [];
      count.textContent = plural(list.length, 'session');
      fill(body, list.length === 0 ? h('p', {class: 'muted'}, 'No sessions.')
        : table('Sessions', ['ID', 'Name', 'Node', 'Behavior', 'TTL', 'Lock delay', 'Checks'], list.map((s) => [
          h('code', {}, s.ID),
          s.Name || h('span', {class: 'muted'}, '—'),
          s.Node ? link(s.Node, 'nodes', s.Node) : '—',
          s.Behavior || 'release',
          s.TTL || h('span', {class: 'muted'}, 'none'),
          nanos(s.LockDelay),
          [...(s.NodeChecks || s.Checks || []), ...((s.ServiceChecks || []).map((c) => c.ID))].join(', ') || '—',
        ]), {class: 'sessions'}));
    },
    onError: (err) => {
      if (err.status === 404 || err.status === 405) {
        count.textContent = '';
        fill(body, h('p', {class: 'notice', id: 'sessions-unavailable'},
          'Sessions are not available on this agent: /v1/session/list answered ', String(err.status), '.'));
      } else {
        fill(body, problem(`Cannot list sessions: ${err.message}`));
      }
    },
  });
}
