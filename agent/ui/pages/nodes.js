// Nodes: address, health (the node's own checks) and the services on each node. Live through
// held queries on /v1/catalog/nodes, /v1/catalog/services (a change of instances) and
// /v1/health/state/any; after a change of the first two each node's services are read once.
import {get, watch, enc} from '../api.js';
import {h, fill, table, problem, loading, link} from '../dom.js';
import {badges} from '../health.js';
import {plural} from '../format.js';

const PARALLEL = 4;

export default function nodes({main, signal, setTitle}) {
  setTitle('Nodes');
  const count = h('p', {class: 'muted'});
  const body = h('div', {}, loading());
  fill(main, h('h1', {}, 'Nodes'), count, body);

  let list = null;
  let checks = null;
  let services = new Map(); // node -> [service names]
  let generation = 0;

  const render = () => {
    if (list === null) return;
    count.textContent = plural(list.length, 'node');
    const rows = list.map((n) => {
      const own = (checks || []).filter((c) => c.Node === n.Node && c.ServiceID === '');
      const svcs = services.get(n.Node);
      return h('tr', {dataset: {node: n.Node}},
        h('td', {}, link(n.Node, 'nodes', n.Node)),
        h('td', {}, h('code', {}, n.Address)),
        h('td', {class: 'health'}, checks === null ? '…' : badges(own)),
        h('td', {}, svcs === undefined ? '…'
          : svcs.length === 0 ? h('span', {class: 'muted'}, '—')
            : h('ul', {class: 'inline'}, svcs.map((s) => h('li', {}, link(s, 'services', s))))));
    });
    fill(body, list.length === 0 ? h('p', {class: 'muted'}, 'No nodes.')
      : table('Nodes', ['Node', 'Address', 'Node health', 'Services'], rows, {class: 'nodes'}));
  };

  const loadServices = async () => {
    if (list === null) return;
    const mine = ++generation;
    const queue = list.map((n) => n.Node);
    const next = new Map();
    const worker = async () => {
      while (queue.length > 0 && !signal.aborted && mine === generation) {
        const name = queue.shift();
        try {
          const res = await get(`/v1/catalog/node-services/${enc(name)}`, {signal});
          const names = new Set(((res.body && res.body.Services) || []).map((s) => s.Service));
          next.set(name, [...names].sort());
        } catch {
          // Shown as unknown until the next change.
        }
      }
    };
    await Promise.all(Array.from({length: PARALLEL}, worker));
    if (mine === generation && !signal.aborted) {
      services = next;
      render();
    }
  };

  watch('/v1/catalog/nodes', {
    signal,
    onData: (data) => {
      list = data || [];
      render();
      loadServices();
    },
    onError: (err) => fill(body, problem(`Cannot list nodes: ${err.message}`)),
  });
  watch('/v1/catalog/services', {signal, onData: () => loadServices()});
  watch('/v1/health/state/any', {
    signal,
    onData: (data) => {
      checks = data || [];
      render();
    },
  });
}
