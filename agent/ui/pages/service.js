// One service: each instance with its node, address:port, tags, meta, and each check with its
// status and output. Live through one held query: /v1/health/service/<name>.
import {watch, enc} from '../api.js';
import {h, fill, table, tags, dl, problem, loading, link} from '../dom.js';
import {badge, badges, worst} from '../health.js';
import {plural} from '../format.js';

export default function service({main, signal, args, setTitle}) {
  const name = args.name;
  setTitle(name);
  const summary = h('p', {class: 'summary'});
  const body = h('div', {}, loading());
  fill(main,
    h('p', {class: 'crumbs'}, link('Services', 'services'), ' / '),
    h('h1', {}, name),
    summary,
    body);

  watch(`/v1/health/service/${enc(name)}`, {
    signal,
    onData: (entries) => {
      entries = entries || [];
      if (entries.length === 0) {
        fill(summary);
        fill(body, h('p', {class: 'muted'}, 'This service has no instances (it may have been deregistered).'));
        return;
      }
      const allChecks = entries.flatMap((e) => e.Checks || []);
      fill(summary, plural(entries.length, 'instance'), ' · ', badges(allChecks));
      fill(body, entries.map((e) => instance(e)));
    },
    onError: (err) => fill(body, problem(`Cannot read service ${name}: ${err.message}`)),
  });
}

function instance(e) {
  const svc = e.Service || {};
  const nodeName = (e.Node && e.Node.Node) || '';
  const address = svc.Address || (e.Node && e.Node.Address) || '';
  const checks = e.Checks || [];
  return h('section', {class: 'card', 'aria-label': `instance ${svc.ID}`, dataset: {instance: svc.ID || ''}},
    h('h2', {}, svc.ID, ' ', badge(worst(checks))),
    h('dl', {class: 'facts'},
      h('dt', {}, 'Node'), h('dd', {}, link(nodeName, 'nodes', nodeName)),
      h('dt', {}, 'Address'), h('dd', {}, h('code', {}, `${address}:${svc.Port ?? 0}`)),
      h('dt', {}, 'Tags'), h('dd', {}, tags(svc.Tags)),
      h('dt', {}, 'Meta'), h('dd', {}, dl(svc.Meta))),
    h('h3', {}, 'Checks'),
    checks.length === 0
      ? h('p', {class: 'muted'}, 'No checks.')
      : table(`Checks of ${svc.ID}`, ['Check', 'Status', 'Output'], checks.map((c) => [
        h('span', {}, c.Name || c.CheckID, h('br'), h('small', {class: 'muted'}, c.CheckID, c.ServiceID ? '' : ' (node)')),
        badge(c.Status),
        h('pre', {class: 'output'}, c.Output || ''),
      ]), {class: 'checks'}));
}
