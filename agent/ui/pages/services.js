// Services: every service of the catalog with its tags, instance count and health badges, and
// a search box. Live through two held blocking queries: /v1/catalog/services (names and tags)
// and /v1/health/state/any (every check, for the badges). When the service list changes, each
// service's instances are read once from /v1/catalog/service/<name> (not held).
import {get, watch, enc} from '../api.js';
import {h, fill, table, tags, problem, loading, link} from '../dom.js';
import {badges} from '../health.js';
import {plural} from '../format.js';

const PARALLEL = 4;

export default function services({main, signal, setTitle}) {
  setTitle('Services');
  const search = h('input', {type: 'search', id: 'service-search', placeholder: 'Filter by name or tag', autocomplete: 'off'});
  const count = h('p', {class: 'muted', 'aria-live': 'polite'});
  const body = h('div', {id: 'services-body', 'aria-busy': 'true'}, loading());
  fill(main,
    h('h1', {}, 'Services'),
    h('div', {class: 'toolbar'}, h('label', {for: 'service-search'}, 'Search'), search),
    count,
    body);

  let names = null; // {name: [tags]}
  let checks = null; // [check]
  let instances = new Map(); // name -> [{Node, ServiceID}]
  let generation = 0;

  const render = () => {
    if (names === null) return;
    const q = search.value.trim().toLowerCase();
    const all = Object.keys(names).sort();
    const shown = all.filter((n) => q === '' || n.toLowerCase().includes(q)
      || (names[n] || []).some((t) => String(t).toLowerCase().includes(q)));
    count.textContent = q === '' ? plural(all.length, 'service') : `${shown.length} of ${plural(all.length, 'service')}`;
    const rows = shown.map((name) => {
      const inst = instances.get(name);
      const own = (checks || []).filter((c) => c.ServiceName === name);
      // Node checks (serfHealth, node maintenance) count for every instance on that node.
      const nodeChecks = inst
        ? (checks || []).filter((c) => c.ServiceID === '' && inst.some((i) => i.Node === c.Node))
        : [];
      const n = inst ? inst.length : new Set(own.map((c) => `${c.Node}\u0000${c.ServiceID}`)).size;
      return h('tr', {dataset: {service: name}},
        h('td', {}, link(name, 'services', name)),
        h('td', {}, tags(names[name])),
        h('td', {class: 'num'}, String(n)),
        h('td', {class: 'health'}, checks === null ? '…' : badges([...own, ...nodeChecks])));
    });
    fill(body, shown.length === 0
      ? h('p', {class: 'muted'}, all.length === 0 ? 'No services are registered.' : 'No service matches the search.')
      : table('Services', ['Service', 'Tags', 'Instances', 'Health'], rows, {class: 'services'}));
  };

  // Reads every service's instances, a few at a time; a newer list makes an older read moot.
  const loadInstances = async () => {
    const mine = ++generation;
    body.setAttribute('aria-busy', 'true');
    const queue = Object.keys(names);
    const next = new Map();
    const worker = async () => {
      while (queue.length > 0 && !signal.aborted && mine === generation) {
        const name = queue.shift();
        try {
          const res = await get(`/v1/catalog/service/${enc(name)}`, {signal});
          next.set(name, res.body.map((s) => ({Node: s.Node, ServiceID: s.ServiceID})));
        } catch {
          // Counted from the checks instead; the next change of the list tries again.
        }
      }
    };
    await Promise.all(Array.from({length: PARALLEL}, worker));
    if (mine === generation && !signal.aborted) {
      instances = next;
      render();
      body.setAttribute('aria-busy', 'false');
    }
  };

  search.addEventListener('input', render);
  watch('/v1/catalog/services', {
    signal,
    onData: (data) => {
      names = data || {};
      render();
      loadInstances();
    },
    onError: (err) => fill(body, problem(`Cannot list services: ${err.message}`)),
  });
  watch('/v1/health/state/any', {
    signal,
    onData: (data) => {
      checks = data || [];
      render();
    },
    onError: (err) => fill(count, problem(`Cannot read health: ${err.message}`)),
  });
}
