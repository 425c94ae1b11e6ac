// Small DOM helpers shared by the views: an element builder (text only, never innerHTML, so
// message bodies cannot inject markup), formatters, a paginated table, notices and a
// confirmation dialog.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
/** A labelled form field: label[for] points at the input. */
export function field(label, input, opts = {}) {
  if (!input.id) input.id = `f${++uid}`;
  return h('div', { class: `field${opts.wide ? ' wide' : ''}` }, h('label', { for: input.id }, label), input);
}

export const num = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'));
/** A number with exactly `d` decimals, grouped the same way as `num`. */
export const fixed = (n, d) => Number(n).toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
/** A rate per second: one decimal below 100, whole numbers from 100 (`0.5`, `12.5`, `1,234`). */
export function rate(n) {
  if (n === null || n === undefined) return '–';
  return fixed(n, n >= 100 ? 0 : 1);
}
export function bytes(n) {
  if (n === null || n === undefined) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? Number(n.toFixed(1)) : n} ${u[i]}`;
}
/** Seconds for people, two units at most, zero parts left out: `45s`, `5m`, `1h 30m`, `4d`. */
export function duration(s) {
  if (s === null || s === undefined) return '–';
  s = Math.max(0, Math.round(s));
  const parts = [[86400, 'd'], [3600, 'h'], [60, 'm'], [1, 's']]
    .map(([n, u]) => [Math.floor(s / n) % (u === 'd' ? Infinity : u === 'h' ? 24 : 60), u]);
  const first = parts.findIndex(([v]) => v > 0);
  if (first < 0) return '0s';
  return parts.slice(first, first + 2).filter(([v]) => v > 0).map(([v, u]) => `${v}${u}`).join(' ');
}
/** A time element: relative text, the exact time on hover and for screen readers. */
export function time(iso) {
  if (!iso) return '–';
  const t = Date.parse(iso);
  const d = (t - Date.now()) / 1000;
  const text = Math.abs(d) < 1 ? 'now' : d < 0 ? `${duration(-d)} ago` : `in ${duration(d)}`;
  return h('time', { datetime: iso, title: iso }, text);
}
export const shortId = (id) => (id ? `${id.slice(0, 8)}…${id.slice(-4)}` : '–');

/** Pretty-print a JSON body; other text stays as it is. */
export function pretty(body, base64) {
  if (body === null || body === undefined) {
    return base64 ? `(binary body, ${Math.floor((base64.length * 3) / 4)} bytes, shown as base64)\n${base64}` : '(binary body)';
  }
  try {
    const v = JSON.parse(body);
    if (typeof v === 'object' && v !== null) return JSON.stringify(v, null, 2);
  } catch { /* not JSON */ }
  return body;
}
export function preview(body, n = 80) {
  if (body === null || body === undefined) return '(binary)';
  const one = body.replace(/\s+/g, ' ');
  return one.length > n ? `${one.slice(0, n)}…` : one;
}

export function attrsTable(attrs) {
  const entries = Object.entries(attrs || {});
  if (!entries.length) return h('p', { class: 'muted' }, 'No attributes.');
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Attribute'), h('th', { scope: 'col' }, 'Value'))),
    h('tbody', {}, entries.map(([k, v]) => h('tr', {}, h('td', { class: 'mono' }, k), h('td', { class: 'mono' }, v))))));
}

export function badge(text, kind) {
  return h('span', { class: `badge ${kind || ''}` }, text);
}

export function errorBox(err) {
  return h('div', { class: 'error-box', role: 'alert' }, String(err));
}

export function notice(text, kind = 'info') {
  const box = document.getElementById('notices');
  const n = h('div', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
  box.append(n);
  setTimeout(() => n.remove(), kind === 'error' ? 10000 : 4000);
}

/** Ask before a destructive action. Resolves true when confirmed. */
export function confirmAction(title, text, okLabel) {
  const d = document.getElementById('confirm-dialog');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-ok').textContent = okLabel;
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
    d.returnValue = '';
    d.showModal();
    document.getElementById('confirm-cancel').focus();
  });
}

/**
 * A table with client-side pages. columns: [{label, cell(row) -> node|string, num}];
 * detail(row) -> node renders an expandable row (toggled by a button in the first cell).
 * Returns { el, set(rows) }; set keeps the current page and open rows.
 */
export function pagedTable({ columns, key, detail, pageSize = 25, empty = 'Nothing here.', label }) {
  let rows = [];
  let page = 0;
  const open = new Set();
  const el = h('div', {});
  function render() {
    // Keep keyboard focus across re-renders (polls, paging, toggles).
    const focused = el.contains(document.activeElement) ? document.activeElement.dataset.fk : null;
    draw();
    if (focused) {
      const again = el.querySelector(`[data-fk="${CSS.escape(focused)}"]`);
      if (again && !again.disabled) again.focus();
    }
  }
  function draw() {
    const pages = Math.max(1, Math.ceil(rows.length / pageSize));
    page = Math.min(page, pages - 1);
    if (!rows.length) { clear(el, h('p', { class: 'muted' }, empty)); return; }
    const shown = rows.slice(page * pageSize, (page + 1) * pageSize);
    const body = h('tbody', {});
    for (const r of shown) {
      const k = key ? key(r) : null;
      const cells = columns.map((c, i) => {
        let content = c.cell(r);
        if (i === 0 && detail) {
          const isOpen = open.has(k);
          content = h('button', {
            class: 'small', 'aria-expanded': String(isOpen), title: `${isOpen ? 'Hide' : 'Show'} details`, 'data-fk': `toggle:${k}`,
            onclick: () => { isOpen ? open.delete(k) : open.add(k); render(); },
          }, isOpen ? '▾ ' : '▸ ', content);
        }
        return h('td', { class: `${c.num ? 'num' : ''} ${c.narrow ? 'hide-narrow' : ''}` }, content);
      });
      body.append(h('tr', {}, cells));
      if (detail && open.has(k)) body.append(h('tr', { class: 'detail' }, h('td', { colspan: columns.length }, detail(r))));
    }
    const table = h('table', { 'aria-label': label },
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: `${c.num ? 'num' : ''} ${c.narrow ? 'hide-narrow' : ''}` }, c.label)))),
      body);
    const from = page * pageSize + 1;
    const to = Math.min(rows.length, (page + 1) * pageSize);
    const pager = pages > 1
      ? h('nav', { class: 'pager', 'aria-label': `${label || 'table'} pages` },
        h('button', { class: 'small', 'data-fk': 'prev', disabled: page === 0, onclick: () => { page--; render(); } }, '‹ Previous'),
        h('span', {}, `${from}–${to} of ${num(rows.length)}`),
        h('button', { class: 'small', 'data-fk': 'next', disabled: page >= pages - 1, onclick: () => { page++; render(); } }, 'Next ›'))
      : h('p', { class: 'muted pager' }, `${num(rows.length)} shown`);
    clear(el, h('div', { class: 'table-wrap' }, table), pager);
  }
  return { el, set(r) { rows = r; render(); }, rows: () => rows };
}

/**
 * Tabs with proper roles; onSelect(name) renders the panel. `selected` opens that tab first
 * (pages pass the one named in the address, so a tab can be bookmarked).
 */
export function tabs(names, onSelect, selected) {
  const bar = h('div', { class: 'tabs', role: 'tablist' });
  const select = (n) => {
    for (const b of bar.children) b.setAttribute('aria-selected', String(b.dataset.tab === n));
    onSelect(n);
  };
  for (const n of names) {
    bar.append(h('button', { role: 'tab', 'data-tab': n, 'aria-selected': 'false', onclick: () => select(n) }, n));
  }
  setTimeout(() => select(names.includes(selected) ? selected : names[0]));
  return bar;
}

/** A tab's name in the address: `Dead letters` ⇄ `dead-letters`. */
export const slug = (name) => name.toLowerCase().replace(/\s+/g, '-');
export const unslug = (names, s) => names.find((n) => slug(n) === s);
