// The UI's entry point: the header (datacenter, connection state), and a hash router that
// gives each page the <main> element and an AbortSignal. Leaving a page aborts the signal, which
// closes its blocking queries, so an open page costs the agent only the queries it holds.
import {get, onConnectionChange} from './api.js';
import {h, fill, problem} from './dom.js';
import services from './pages/services.js';
import service from './pages/service.js';
import nodes from './pages/nodes.js';
import node from './pages/node.js';
import kv from './pages/kv.js';
import members from './pages/members.js';
import sessions from './pages/sessions.js';

const main = document.getElementById('main');
let current = null;

// '#/services/web' -> ['services', 'web']; null when a segment is not valid percent-encoding.
function segments(hash) {
  const raw = hash.replace(/^#\/?/, '');
  try {
    return raw.split('/').map((s) => decodeURIComponent(s));
  } catch {
    return null;
  }
}

function pick(parts) {
  if (parts === null) return null;
  const [section, ...rest] = parts;
  switch (section) {
    case '':
    case 'services':
      return rest.length === 0 || (rest.length === 1 && rest[0] === '')
        ? {section: 'services', page: services, args: {}}
        : {section: 'services', page: service, args: {name: rest.join('/')}};
    case 'nodes':
      return rest.length === 0 || (rest.length === 1 && rest[0] === '')
        ? {section: 'nodes', page: nodes, args: {}}
        : {section: 'nodes', page: node, args: {name: rest.join('/')}};
    case 'kv':
      // KV keys keep their slashes: '#/kv/a/b%2Fc' is the key 'a/b/c' (a/ then b/c encoded).
      return {section: 'kv', page: kv, args: {path: rest.join('/')}};
    case 'members':
      return {section: 'members', page: members, args: {}};
    case 'sessions':
      return {section: 'sessions', page: sessions, args: {}};
    default:
      return null;
  }
}

function navigate() {
  const hash = location.hash;
  // In-page anchors (the skip link) are not routes.
  if (current && hash !== '' && !hash.startsWith('#/')) return;
  if (current) current.abort();
  current = new AbortController();
  const target = pick(segments(hash.startsWith('#/') ? hash : '#/services'));
  for (const a of document.querySelectorAll('nav a[data-section]')) {
    if (target && a.dataset.section === target.section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  fill(main);
  if (!target) {
    document.title = 'Not found · Muster';
    fill(main, h('h1', {}, 'Not found'), problem('There is no such page in the Muster UI.'));
    return;
  }
  const setTitle = (t) => {
    document.title = `${t} · Muster`;
  };
  try {
    target.page({main, signal: current.signal, args: target.args, setTitle});
  } catch (err) {
    fill(main, h('h1', {}, 'Error'), problem(String(err)));
  }
  // Keyboard and screen-reader users land on the new page, not on the link they used.
  if (document.activeElement && document.activeElement.closest('nav')) main.focus({preventScroll: true});
}

function showConnection(count, err, retryMs) {
  const el = document.getElementById('conn');
  if (count === 0) {
    el.hidden = true;
    el.textContent = '';
    return;
  }
  el.hidden = false;
  const wait = retryMs ? ` Retrying in ${Math.ceil(retryMs / 1000)}s.` : '';
  el.textContent = `Cannot read from the agent (${err && err.message ? err.message : 'error'}).${wait}`;
}

async function datacenter() {
  const el = document.getElementById('dc');
  try {
    const self = await get('/v1/agent/self');
    const cfg = self.body.Config || {};
    el.textContent = cfg.Datacenter || '?';
    el.title = `agent ${cfg.NodeName || ''}`;
  } catch (err) {
    el.textContent = 'unknown';
    el.title = String(err);
  }
}

onConnectionChange(showConnection);
window.addEventListener('hashchange', navigate);
navigate();
datacenter();
