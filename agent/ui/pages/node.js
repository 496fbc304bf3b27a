// One node: its address, meta, services and checks. Live through two held queries:
// /v1/catalog/node/<name> and /v1/health/node/<name>.
import {watch, enc} from '../api.js';
import {h, fill, table, tags, dl, problem, loading, link} from '../dom.js';
import {badge, badges} from '../health.js';

export default function node({main, signal, args, setTitle}) {
  const name = args.name;
  setTitle(name);
  const facts = h('div', {}, loading());
  const svcs = h('div', {});
  const checkBox = h('div', {});
  fill(main,
    h('p', {class: 'crumbs'}, link('Nodes', 'nodes'), ' / '),
    h('h1', {}, name),
    facts,
    h('h2', {}, 'Services'), svcs,
    h('h2', {}, 'Checks'), checkBox);

  watch(`/v1/catalog/node/${enc(name)}`, {
    signal,
    ok: [404],
    onData: (data, _index, status) => {
      if (status === 404 || !data || !data.Node) {
        fill(facts, h('p', {class: 'muted'}, 'This node is not in the catalog.'));
        fill(svcs);
        return;
      }
      const n = data.Node;
      fill(facts, h('dl', {class: 'facts'},
        h('dt', {}, 'Address'), h('dd', {}, h('code', {}, n.Address)),
        h('dt', {}, 'Datacenter'), h('dd', {}, n.Datacenter || '—'),
        h('dt', {}, 'ID'), h('dd', {}, h('code', {}, n.ID || '—')),
        h('dt', {}, 'Tagged addresses'), h('dd', {}, dl(n.TaggedAddresses)),
        h('dt', {}, 'Meta'), h('dd', {}, dl(n.Meta))));
      const list = Object.values(data.Services || {}).sort((a, b) => a.ID.localeCompare(b.ID));
      fill(svcs, list.length === 0 ? h('p', {class: 'muted'}, 'No services.')
        : table('Services', ['Service', 'ID', 'Port', 'Tags'], list.map((s) => [
          link(s.Service, 'services', s.Service), h('code', {}, s.ID), String(s.Port ?? 0), tags(s.Tags),
        ])));
    },
    onError: (err) => fill(facts, problem(`Cannot read node ${name}: ${err.message}`)),
  });
  watch(`/v1/health/node/${enc(name)}`, {
    signal,
    onData: (checks) => {
      checks = checks || [];
      fill(checkBox, checks.length === 0 ? h('p', {class: 'muted'}, 'No checks.')
        : [h('p', {}, badges(checks)),
          table('Checks', ['Check', 'Service', 'Status', 'Output'], checks.map((c) => [
            h('span', {}, c.Name || c.CheckID, h('br'), h('small', {class: 'muted'}, c.CheckID)),
            c.ServiceName ? link(c.ServiceName, 'services', c.ServiceName) : h('span', {class: 'muted'}, 'node'),
            badge(c.Status),
            h('pre', {class: 'output'}, c.Output || ''),
          ]), {class: 'checks'})]);
    },
    onError: (err) => fill(checkBox, problem(`Cannot read checks: ${err.message}`)),
  });
}
