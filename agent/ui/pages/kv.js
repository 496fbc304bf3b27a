// The KV store: a prefix is a folder (keys listed with `?keys&separator=/`), a key has a view
// that is also its editor. Saving sends `?cas=<the ModifyIndex loaded>`, so a change made by
// someone else meanwhile is refused by the agent and said so here, never overwritten. Live
// through one held query: the folder's listing, or the key.
import {request, watch, encKey, decodeValue} from '../api.js';
import {h, fill, problem, loading} from '../dom.js';

export function kvRoute(key) {
  return '#/kv/' + encKey(key);
}

export default function kv(ctx) {
  const path = ctx.args.path;
  if (path === '' || path.endsWith('/')) folder(ctx, path);
  else key(ctx, path);
}

// Root / a / a/b / links for the folders above `path`.
function crumbs(path) {
  const parts = path.split('/').filter((p, i, all) => i < all.length - 1);
  const out = [h('a', {href: kvRoute('')}, 'Key/Value')];
  let acc = '';
  for (const p of parts) {
    acc += `${p}/`;
    out.push(' / ', h('a', {href: kvRoute(acc)}, p));
  }
  return h('p', {class: 'crumbs'}, out, ' / ');
}

// A status line under a form: `ok` is polite news, otherwise an alert.
function say(el, text, ok) {
  el.className = ok ? 'message ok' : 'message problem';
  el.setAttribute('role', ok ? 'status' : 'alert');
  el.textContent = text;
}

// A flags field holds a uint64: digits only, at most 2^64-1.
function parseFlags(s) {
  const t = s.trim();
  if (t === '') return '0';
  if (!/^\d+$/.test(t) || BigInt(t) > 18446744073709551615n) return null;
  return BigInt(t).toString();
}

// A button that asks again in the page (no window.confirm) before `action` runs.
function confirmButton(label, question, action) {
  const box = h('span', {class: 'confirm'});
  const ask = () => {
    const yes = h('button', {type: 'button', class: 'danger', onclick: action}, `Yes, ${label.toLowerCase()}`);
    fill(box, h('span', {}, question, ' '), yes, ' ',
      h('button', {type: 'button', onclick: reset}, 'Cancel'));
    yes.focus();
  };
  const reset = () => fill(box, h('button', {type: 'button', class: 'danger', onclick: ask}, label));
  reset();
  return box;
}

function folder({main, signal, setTitle}, prefix) {
  setTitle(prefix === '' ? 'Key/Value' : prefix);
  const list = h('div', {}, loading());
  const msg = h('p', {class: 'message', 'aria-live': 'polite', id: 'kv-message'});

  const name = h('input', {id: 'kv-new-key', type: 'text', required: true, autocomplete: 'off', spellcheck: 'false'});
  const value = h('textarea', {id: 'kv-new-value', rows: 4, spellcheck: 'false'});
  const flags = h('input', {id: 'kv-new-flags', type: 'text', inputmode: 'numeric', value: '0', autocomplete: 'off'});
  const create = async (ev) => {
    ev.preventDefault();
    const rel = name.value;
    if (rel === '' || rel.startsWith('/')) {
      say(msg, 'Give the new key a name (it must not start with "/").', false);
      name.focus();
      return;
    }
    const f = parseFlags(flags.value);
    if (f === null) {
      say(msg, 'Flags must be a whole number from 0 to 18446744073709551615.', false);
      flags.focus();
      return;
    }
    const full = prefix + rel;
    // A name ending in "/" is a folder: an empty key that holds the prefix.
    const body = full.endsWith('/') ? '' : value.value;
    try {
      const res = await request('PUT', `/v1/kv/${encKey(full)}?cas=0&flags=${f}`, {body});
      if (res.body === true) {
        say(msg, `Created ${full}.`, true);
        location.hash = kvRoute(full);
      } else {
        say(msg, `Not created: ${full} already exists.`, false);
      }
    } catch (err) {
      say(msg, `Not created: ${err.message}`, false);
    }
  };

  fill(main,
    crumbs(prefix),
    h('h1', {}, prefix === '' ? 'Key/Value' : prefix),
    list,
    prefix === '' ? null : h('p', {},
      confirmButton('Delete folder', `Delete ${prefix} and every key under it?`, async () => {
        try {
          await request('DELETE', `/v1/kv/${encKey(prefix)}?recurse`);
          const up = prefix.slice(0, -1);
          location.hash = kvRoute(up.includes('/') ? up.slice(0, up.lastIndexOf('/') + 1) : '');
        } catch (err) {
          say(msg, `Not deleted: ${err.message}`, false);
        }
      })),
    h('form', {class: 'kv-form', onsubmit: create, 'aria-labelledby': 'kv-create-title'},
      h('h2', {id: 'kv-create-title'}, 'Create'),
      h('label', {for: 'kv-new-key'}, 'Key or folder (end with / for a folder)'),
      h('div', {class: 'prefixed'}, prefix === '' ? null : h('code', {}, prefix), name),
      h('label', {for: 'kv-new-value'}, 'Value'), value,
      h('label', {for: 'kv-new-flags'}, 'Flags'), flags,
      h('div', {}, h('button', {type: 'submit'}, 'Create'))),
    msg);

  watch(`/v1/kv/${encKey(prefix)}?keys&separator=/`, {
    signal,
    ok: [404],
    onData: (keys, _index, status) => {
      const items = status === 404 ? [] : (keys || []).filter((k) => k !== prefix);
      if (items.length === 0) {
        fill(list, h('p', {class: 'muted'}, prefix === '' ? 'The KV store is empty.' : 'No keys under this folder.'));
        return;
      }
      fill(list, h('ul', {class: 'kv-list', 'aria-label': 'keys'}, items.map((k) => {
        const label = k.slice(prefix.length);
        const isFolder = k.endsWith('/');
        return h('li', {class: isFolder ? 'folder' : 'key'},
          h('a', {href: kvRoute(k), 'aria-label': isFolder ? `folder ${label}` : `key ${label}`}, label));
      })));
    },
    onError: (err) => fill(list, problem(`Cannot list ${prefix || 'the KV store'}: ${err.message}`)),
  });
}

function key({main, signal, setTitle}, path) {
  setTitle(path);
  const info = h('dl', {class: 'facts'});
  const msg = h('p', {class: 'message', 'aria-live': 'polite', id: 'kv-message'});
  const notice = h('p', {class: 'notice', role: 'status', hidden: true});
  const value = h('textarea', {id: 'kv-value', rows: 10, spellcheck: 'false'});
  const flags = h('input', {id: 'kv-flags', type: 'text', inputmode: 'numeric', autocomplete: 'off'});
  const save = h('button', {type: 'submit'}, 'Save');
  const form = h('form', {class: 'kv-form', 'aria-label': `edit ${path}`},
    h('label', {for: 'kv-value'}, 'Value'), value,
    h('label', {for: 'kv-flags'}, 'Flags'), flags);
  const actions = h('div', {class: 'actions'});
  form.append(actions);
  const body = h('div', {}, loading());

  let loaded = null; // the entry the form was filled from
  let latest = null; // the newest entry seen (null: the key does not exist)
  let dirty = false;
  let saving = false; // while a save is in flight, its own change may arrive first

  const load = (entry) => {
    loaded = entry;
    dirty = false;
    notice.hidden = true;
    const v = decodeValue(entry.Value);
    if (v.binary !== undefined) {
      value.value = v.binary;
      value.readOnly = true;
      save.disabled = true;
      say(msg, `This value is ${v.size} bytes of binary data, shown as base64; it cannot be edited here.`, true);
    } else {
      value.value = v.text;
      value.readOnly = false;
      save.disabled = false;
    }
    flags.value = String(entry.Flags ?? 0);
    fill(info,
      h('dt', {}, 'Flags'), h('dd', {}, String(entry.Flags ?? 0)),
      h('dt', {}, 'Size'), h('dd', {}, `${v.size} bytes`),
      h('dt', {}, 'ModifyIndex'), h('dd', {id: 'kv-modify-index'}, String(entry.ModifyIndex)),
      h('dt', {}, 'CreateIndex'), h('dd', {}, String(entry.CreateIndex)),
      h('dt', {}, 'LockIndex'), h('dd', {}, String(entry.LockIndex ?? 0)),
      h('dt', {}, 'Session'), h('dd', {}, entry.Session || '—'));
  };

  const onEdit = () => {
    dirty = true;
  };
  value.addEventListener('input', onEdit);
  flags.addEventListener('input', onEdit);

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!loaded) return;
    const f = parseFlags(flags.value);
    if (f === null) {
      say(msg, 'Flags must be a whole number from 0 to 18446744073709551615.', false);
      flags.focus();
      return;
    }
    const cas = loaded.ModifyIndex;
    save.disabled = true;
    saving = true;
    try {
      const res = await request('PUT', `/v1/kv/${encKey(path)}?cas=${cas}&flags=${f}`, {body: value.value});
      saving = false;
      if (res.body === true) {
        dirty = false;
        if (latest && latest.ModifyIndex !== loaded.ModifyIndex) load(latest);
        say(msg, 'Saved.', true);
      } else {
        say(msg, `Not saved: someone else changed ${path} after you loaded it (you loaded ModifyIndex ${cas}). `
          + 'Your text is still in the form; use "Load the current value" to see theirs.', false);
        showReload();
      }
    } catch (err) {
      say(msg, `Not saved: ${err.message}`, false);
    } finally {
      saving = false;
      save.disabled = false;
    }
  });

  const reload = h('button', {type: 'button', id: 'kv-reload', onclick: () => {
    if (latest) {
      load(latest);
      say(msg, `Loaded the current value (ModifyIndex ${latest.ModifyIndex}).`, true);
    } else {
      say(msg, `${path} has been deleted.`, false);
    }
  }}, 'Load the current value');
  const showReload = () => {
    if (!actions.contains(reload)) actions.insertBefore(reload, actions.children[1] || null);
  };

  fill(actions, save, ' ',
    confirmButton('Delete', `Delete ${path}?`, async () => {
      try {
        const cas = loaded ? `?cas=${loaded.ModifyIndex}` : '';
        const res = await request('DELETE', `/v1/kv/${encKey(path)}${cas}`);
        if (res.body === false) {
          say(msg, `Not deleted: someone else changed ${path} after you loaded it.`, false);
          showReload();
          return;
        }
        const parent = path.includes('/') ? path.slice(0, path.lastIndexOf('/') + 1) : '';
        location.hash = kvRoute(parent);
      } catch (err) {
        say(msg, `Not deleted: ${err.message}`, false);
      }
    }));

  fill(main, crumbs(path), h('h1', {}, path), body, msg);

  watch(`/v1/kv/${encKey(path)}`, {
    signal,
    ok: [404],
    onData: (entries, _index, status) => {
      const entry = status === 404 || !Array.isArray(entries) ? null : entries[0] || null;
      latest = entry;
      if (saving) return; // the save's answer decides what to show
      if (entry === null) {
        if (loaded === null) {
          fill(body, h('p', {class: 'muted'}, `There is no key ${path}.`));
        } else {
          notice.hidden = false;
          notice.textContent = `${path} was deleted by someone else.`;
        }
        return;
      }
      if (loaded === null || !body.contains(form)) {
        fill(body, notice, info, form);
        load(entry);
      } else if (entry.ModifyIndex !== loaded.ModifyIndex) {
        if (dirty) {
          // Keep the user's text; saving will be refused by cas, and says so.
          notice.hidden = false;
          notice.textContent = `Someone else changed ${path} while you were editing (ModifyIndex ${loaded.ModifyIndex} → ${entry.ModifyIndex}).`;
          showReload();
        } else {
          load(entry);
        }
      }
    },
    onError: (err) => fill(body, problem(`Cannot read ${path}: ${err.message}`)),
  });
}
