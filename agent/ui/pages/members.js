// Members: the agents this one knows through gossip (/v1/agent/members). That endpoint does not
// block, so the list is read again when the catalog's node list changes (a held query on
// /v1/catalog/nodes: members join and leave through it), when the tab becomes visible, and with
// the Refresh button; nothing polls.
import {get, watch} from '../api.js';
import {h, fill, table, dl, problem, loading} from '../dom.js';
import {memberStatus, plural} from '../format.js';

export default function members({main, signal, setTitle}) {
  setTitle('Members');
  const count = h('p', {class: 'muted'});
  const body = h('div', {}, loading());
  const refresh = h('button', {type: 'button', onclick: () => load()}, 'Refresh');
  fill(main, h('h1', {}, 'Members'), h('div', {class: 'toolbar'}, refresh), count, body);

  let busy = false;
  const load = async () => {
    if (busy || signal.aborted) return;
    busy = true;
    try {
      const res = await get('/v1/agent/members', {signal});
      const list = (res.body || []).slice().sort((a, b) => a.Name.localeCompare(b.Name));
      count.textContent = plural(list.length, 'member');
      fill(body, table('Members', ['Name', 'Address', 'Status', 'Role', 'Datacenter', 'Tags'], list.map((m) => {
        const status = memberStatus(m.Status);
        const t = m.Tags || {};
        return [
          m.Name,
          h('code', {}, `${m.Addr}:${m.Port}`),
          h('span', {class: `badge ${status === 'alive' ? 'passing' : status === 'failed' ? 'critical' : 'warning'}`}, status),
          t.role === 'consul' ? 'server' : (t.role || '—'),
          t.dc || '—',
          h('details', {}, h('summary', {}, plural(Object.keys(t).length, 'tag')), dl(t)),
        ];
      }), {class: 'members'}));
    } catch (err) {
      if (!signal.aborted) fill(body, problem(`Cannot list members: ${err.message}`));
    } finally {
      busy = false;
    }
  };

  const onVisible = () => {
    if (document.visibilityState === 'visible') load();
  };
  document.addEventListener('visibilitychange', onVisible);
  signal.addEventListener('abort', () => document.removeEventListener('visibilitychange', onVisible), {once: true});
  watch('/v1/catalog/nodes', {signal, onData: () => load()});
}
