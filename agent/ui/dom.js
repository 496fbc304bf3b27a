// DOM helpers. Everything from the API reaches the page as text nodes or attribute values set
// through the DOM (never innerHTML), so a service named `<img src=x onerror=alert(1)>` is text.

// h('a', {href: '#/x', class: 'y', onclick: fn}, 'text', child, [more]) builds an element.
// Attributes named on* are event listeners; `dataset`, `value`, `checked`, `disabled`,
// `hidden` are set as properties; everything else is setAttribute (with a string value).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (['value', 'checked', 'disabled', 'hidden', 'readOnly'].includes(name)) {
      el[name] = value;
    } else if (name.startsWith('on') || name === 'style' || name === 'srcdoc') {
      throw new Error(`h(): refusing attribute ${name}`);
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

// Replaces the children of `el` with `children`.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// A table with a header row; `rows` are arrays of cells (strings or nodes) or <tr> elements.
export function table(caption, headers, rows, attrs = {}) {
  const wrap = h('div', {class: 'table-wrap'},
    h('table', attrs,
      caption ? h('caption', {class: 'sr-only'}, caption) : null,
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', {scope: 'col'}, x)))),
      h('tbody', {}, rows.map((r) => (r instanceof Node ? r : h('tr', {}, r.map((c) => h('td', {}, c))))))));
  // On a phone a row is a card and each cell says which column it is (see style.css).
  for (const tr of wrap.querySelectorAll('tbody tr')) {
    [...tr.children].forEach((td, i) => td.setAttribute('data-label', headers[i] ?? ''));
  }
  return wrap;
}

// A list of tags as small chips.
export function tags(list) {
  if (!list || list.length === 0) return h('span', {class: 'muted'}, '—');
  return h('ul', {class: 'tags', 'aria-label': 'tags'}, list.map((t) => h('li', {class: 'tag'}, t)));
}

// A definition list from an object (meta maps and the like).
export function dl(obj) {
  const entries = Object.entries(obj || {});
  if (entries.length === 0) return h('span', {class: 'muted'}, '—');
  return h('dl', {class: 'meta'}, entries.map(([k, v]) => [h('dt', {}, k), h('dd', {}, typeof v === 'string' ? v : JSON.stringify(v))]));
}

// A message for a page that could not be shown (role=alert so screen readers say it).
export function problem(text) {
  return h('p', {class: 'problem', role: 'alert'}, text);
}

export function loading() {
  return h('p', {class: 'muted'}, 'Loading…');
}

// A link inside the UI. `parts` are path segments, each encoded (names may hold '/' or '#').
export function link(text, ...parts) {
  return h('a', {href: route(...parts)}, text);
}

export function route(...parts) {
  return '#/' + parts.map((p) => encodeURIComponent(p)).join('/');
}
