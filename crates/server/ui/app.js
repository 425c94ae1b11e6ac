// The sluice dashboard: a hash-routed page over the JSON API (/v1/...). Each view renders into
// <main>, polls what it shows every 2 s while it is open, and stops when the user leaves.
import { get, post, put, del, enc, onAuthNeeded, onConnection, setToken, token } from './api.js';
import {
  h, clear, field, num, rate, bytes, duration, time, shortId, pretty, preview, attrsTable,
  badge, errorBox, notice, confirmAction, pagedTable, tabs,
} from './views.js';

const main = document.getElementById('view');
const POLL_MS = 2000;
let cleanups = [];

/** Run fn now and every ms while the current view is open; errors show in `errEl`. */
function every(ms, fn) {
  let stopped = false;
  let timer = null;
  const loop = async () => {
    if (stopped) return;
    try { await fn(); } catch (e) { console.warn(e); }
    if (!stopped) timer = setTimeout(loop, ms);
  };
  loop();
  cleanups.push(() => { stopped = true; clearTimeout(timer); });
}
const onLeave = (fn) => cleanups.push(fn);

/** Run an action from a button: disable it meanwhile, show the error or the success text. */
async function act(button, fn, success) {
  if (button) button.disabled = true;
  try {
    const r = await fn();
    if (success) notice(typeof success === 'function' ? success(r) : success);
    return r;
  } catch (e) {
    notice(String(e), 'error');
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

// ---------- charts (uPlot) ----------

const COLORS = { published: '#1f6feb', received: '#9a6700', acked: '#1a7f37' };

function rateChart(label) {
  const box = h('div', { class: 'chart', role: 'img', 'aria-label': label });
  let plot = null;
  const size = () => ({ width: Math.max(260, box.clientWidth || 600), height: 220 });
  const onResize = () => plot && plot.setSize(size());
  window.addEventListener('resize', onResize);
  onLeave(() => { window.removeEventListener('resize', onResize); if (plot) plot.destroy(); });
  function update(view, series) {
    const names = ['published', 'received', 'acked'];
    const data = [view.t, ...names.map((n) => series[n])];
    const last = names.map((n) => `${n} ${rate(series[n].at(-1))}/s`).join(', ');
    box.setAttribute('aria-label', `${label}. Latest: ${last}`);
    if (!plot) {
      if (typeof uPlot === 'undefined') { clear(box, errorBox('chart library not loaded')); return; }
      if (!names.some((n) => series[n].some((v) => v !== null))) {
        clear(box, h('p', { class: 'muted' }, 'Rates appear here a few seconds after the queue is first seen (one point every 2 s, the last 10 minutes).'));
        return;
      }
      clear(box);
      plot = new uPlot({
        ...size(),
        series: [{}, ...names.map((n) => ({
          label: n, stroke: COLORS[n], width: 2, spanGaps: false,
          value: (u, v) => (v === null || v === undefined ? '–' : `${rate(v)}/s`),
        }))],
        axes: [{}, { size: 60, values: (u, vals) => vals.map((v) => rate(v)) }],
        scales: { x: { time: true } },
      }, data, box);
    } else {
      plot.setData(data);
    }
  }
  return { el: box, update };
}

// ---------- shared pieces ----------

function tile(label, value, key) {
  return h('div', { class: 'tile' }, h('div', { class: 'v', 'data-stat': key }, value), h('div', { class: 'k' }, label));
}

function messageFacts(m) {
  return h('dl', { class: 'facts' },
    h('dt', {}, 'Id'), h('dd', { class: 'mono' }, m.id),
    h('dt', {}, 'State'), h('dd', {}, m.state),
    h('dt', {}, 'Receive count'), h('dd', {}, num(m.receive_count)),
    h('dt', {}, 'Enqueued'), h('dd', {}, time(m.enqueued_at)),
    m.first_received_at && [h('dt', {}, 'First received'), h('dd', {}, time(m.first_received_at))],
    h('dt', {}, 'Visible'), h('dd', {}, time(m.visible_at)),
    m.message_group_id && [h('dt', {}, 'Group'), h('dd', { class: 'mono' }, m.message_group_id)],
    m.deduplication_id && [h('dt', {}, 'Dedup id'), h('dd', { class: 'mono' }, m.deduplication_id)],
    m.dead_letter_source && [h('dt', {}, 'Dead letter of'), h('dd', {}, queueLink(m.dead_letter_source))]);
}

function messageDetail(m, extra) {
  return h('div', {}, messageFacts(m), h('h3', {}, 'Body'), h('pre', { 'aria-label': 'message body' }, pretty(m.body, m.body_base64)),
    h('h3', {}, 'Attributes'), attrsTable(m.attributes), extra || null);
}

const queueLink = (name) => h('a', { href: `#/queues/${enc(name)}` }, name);
const stateBadge = (s) => badge(s, s === 'ready' ? 'ok' : s === 'in_flight' ? 'warn' : '');
/** Where a dead letter came from: the store's own dead letters, or push ones (attributes). */
const deadSource = (m) => m.dead_letter_source || (m.attributes || {})['sluice-source-queue'] || null;
const defaultDlq = (q) => (q.endsWith('.fifo') ? `${q.slice(0, -5)}-dlq.fifo` : `${q}-dlq`);

function parseAttrs(text) {
  const out = {};
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (!t) continue;
    const i = t.indexOf('=');
    if (i <= 0) throw new Error(`attributes: "${t}" is not key=value`);
    out[t.slice(0, i).trim()] = t.slice(i + 1).trim();
  }
  return out;
}

function intOrNull(input, name) {
  const v = input.value.trim();
  if (v === '') return null;
  if (!/^\d+$/.test(v)) throw new Error(`${name}: "${v}" is not a whole number`);
  return Number(v);
}

// ---------- overview ----------

async function overview() {
  const facts = h('dl', { class: 'facts' }, h('dt', {}, 'Loading…'));
  const nodes = h('div', {});
  const chart = rateChart('Messages per second, all queues, last 10 minutes');
  const filter = h('input', { type: 'search', placeholder: 'name contains…' });
  const err = h('div', {});
  let lastRates = { queues: {} };
  const table = pagedTable({
    label: 'Queues',
    empty: 'No queues yet. Create one below, or publish to any name.',
    columns: [
      { label: 'Queue', cell: (q) => queueLink(q.name) },
      { label: 'Ready', num: true, cell: (q) => num(q.stats.ready) },
      { label: 'In flight', num: true, cell: (q) => num(q.stats.in_flight) },
      { label: 'Delayed', num: true, cell: (q) => num(q.stats.delayed) },
      { label: 'Dead-lettered', num: true, cell: (q) => (q.stats.dead_lettered ? badge(num(q.stats.dead_lettered), 'bad') : '0') },
      { label: 'Oldest ready', num: true, cell: (q) => (q.stats.ready ? duration(q.stats.oldest_ready_age_seconds) : '–') },
      { label: 'Publish/s', num: true, cell: (q) => rate(lastRates.queues[q.name]?.published.at(-1)) },
      { label: 'Ack/s', num: true, cell: (q) => rate(lastRates.queues[q.name]?.acked.at(-1)) },
    ],
  });
  const name = h('input', { required: true, maxlength: 80, placeholder: 'orders (or orders.fifo)', autocomplete: 'off' });
  const vis = h('input', { type: 'number', min: 0, placeholder: '30' });
  const dlq = h('input', { placeholder: 'none', autocomplete: 'off' });
  const maxr = h('input', { type: 'number', min: 1, placeholder: 'none' });
  const createErr = h('div', {});
  const create = h('form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      clear(createErr);
      try {
        const body = {};
        const v = intOrNull(vis, 'visibility timeout');
        if (v !== null) body.visibility_timeout_seconds = v;
        if (dlq.value.trim()) body.dead_letter_queue = dlq.value.trim();
        const m = intOrNull(maxr, 'max receives');
        if (m !== null) body.max_receives = m;
        const q = name.value.trim();
        const exists = await get(`/v1/queues/${enc(q)}`).then(() => true, (e) => (e.status === 404 ? false : Promise.reject(e)));
        if (exists) {
          clear(createErr, errorBox(`Queue ${q} already exists; change its settings on its page (Config tab).`), h('a', { href: `#/queues/${enc(q)}` }, `Open ${q}`));
          return;
        }
        await put(`/v1/queues/${enc(q)}`, body);
        notice(`Queue ${q} created`);
        location.hash = `#/queues/${enc(q)}`;
      } catch (e) { clear(createErr, errorBox(e)); }
    },
  }, h('div', { class: 'row' },
    field('Name', name, { wide: true }), field('Visibility timeout (s)', vis), field('Dead-letter queue', dlq),
    field('Max receives', maxr), h('button', { class: 'primary', type: 'submit' }, 'Create queue')), createErr);

  clear(main,
    h('h1', {}, 'Overview'),
    h('div', { class: 'grid' },
      h('section', { class: 'card', 'aria-labelledby': 'srv-h' }, h('h2', { id: 'srv-h' }, 'Server'), facts, nodes),
      h('section', { class: 'card', 'aria-labelledby': 'rate-h' }, h('h2', { id: 'rate-h' }, 'Messages per second (all queues)'), chart.el)),
    h('section', { class: 'card', 'aria-labelledby': 'q-h' },
      h('div', { class: 'row', style: 'justify-content: space-between; margin: 0 0 8px' },
        h('h2', { id: 'q-h' }, 'Queues'), field('Filter queues', filter)),
      err, table.el),
    h('section', { class: 'card', 'aria-labelledby': 'c-h' }, h('h2', { id: 'c-h' }, 'Create a queue'), create));

  let queues = [];
  const show = () => {
    const f = filter.value.trim().toLowerCase();
    table.set(queues.filter((q) => !f || q.name.toLowerCase().includes(f)));
  };
  filter.addEventListener('input', show);
  every(POLL_MS, async () => {
    try {
      const [srv, list, totals, last] = await Promise.all([
        get('/v1/server'), get('/v1/queues'), get('/v1/rates?per_queue=false'), get('/v1/rates?points=1'),
      ]);
      clear(err);
      clear(facts,
        h('dt', {}, 'Version'), h('dd', {}, srv.version),
        h('dt', {}, 'Uptime'), h('dd', {}, duration(srv.uptime_seconds)),
        h('dt', {}, 'Storage'), h('dd', {}, `${srv.storage_backend}, ${bytes(srv.storage_bytes)}`),
        h('dt', {}, 'Messages stored'), h('dd', {}, num(srv.messages)),
        h('dt', {}, 'Health'), h('dd', {}, srv.healthy ? badge('healthy', 'ok') : badge('storage unavailable', 'bad')),
        h('dt', {}, 'Limits'), h('dd', {}, `message ${bytes(srv.max_message_bytes)}, request ${bytes(srv.max_request_bytes)}`),
        h('dt', {}, 'Streaming consumers'), h('dd', {}, `${num(srv.streams_open)} open of ${num(srv.max_streams)}`),
        ...((srv.storage_problems || []).length
          ? [h('dt', {}, 'Storage problems'),
             h('dd', {}, h('ul', { class: 'problems' }, srv.storage_problems.map((p) => h('li', {}, badge('problem', 'bad'), ' ', p))))]
          : []));
      clear(nodes, h('h3', {}, `Nodes (${srv.nodes.length})`),
        h('ul', {}, srv.nodes.map((n) => h('li', {}, h('span', { class: 'mono' }, n.address), ` v${n.version}, started `, time(n.started_at), n.this ? ' (this node)' : ''))));
      lastRates = last;
      queues = list.queues;
      show();
      chart.update(totals, totals.total);
    } catch (e) { clear(err, errorBox(e)); }
  });
}

// ---------- queue page ----------

async function queuePage(name) {
  const tilesEl = h('div', { class: 'tiles' });
  const chart = rateChart(`Messages per second, queue ${name}`);
  const err = h('div', {});
  const panel = h('div', { role: 'tabpanel' });
  let info = null;
  // Received messages outlive tab switches (their receipts are the only way to ack them).
  const held = new Map();
  // Work started by the current tab, stopped when another tab opens.
  const panelStops = [];
  const onPanelLeave = (fn) => panelStops.push(fn);
  onLeave(() => { for (const c of panelStops.splice(0)) c(); });
  clear(main,
    h('div', { class: 'breadcrumb' }, h('a', { href: '#/' }, 'Overview'), ' / queue'),
    h('h1', {}, name),
    err,
    h('div', { class: 'row', style: 'margin: 0 0 12px' },
      h('button', { onclick: (ev) => purge(ev.currentTarget) }, 'Purge…'),
      h('button', { onclick: (ev) => remove(ev.currentTarget) }, 'Delete queue…')),
    tilesEl,
    h('section', { class: 'card', 'aria-label': 'rates' }, chart.el),
    tabs(['Messages', 'Send', 'Receive', 'Dead letters', 'Subscriptions', 'Config'], (t) => {
      const views = { Messages: peekPanel, Send: sendPanel, Receive: receivePanel, 'Dead letters': deadPanel, Subscriptions: subsPanel, Config: configPanel };
      for (const c of panelStops.splice(0)) c();
      clear(panel);
      views[t](panel);
    }),
    panel);

  async function refresh() {
    try {
      const [q, r] = await Promise.all([get(`/v1/queues/${enc(name)}`), get(`/v1/rates?queue=${enc(name)}`)]);
      info = q;
      clear(err);
      const s = q.stats;
      clear(tilesEl,
        tile('Ready', num(s.ready), 'ready'), tile('In flight', num(s.in_flight), 'in_flight'),
        tile('Delayed', num(s.delayed), 'delayed'), tile('Dead-lettered', num(s.dead_lettered), 'dead_lettered'),
        tile('Oldest ready', s.ready ? duration(s.oldest_ready_age_seconds) : '–', 'oldest'),
        tile('Published', num(s.published), 'published'), tile('Acked', num(s.acked), 'acked'));
      if (r.queues[name]) chart.update(r, r.queues[name]);
    } catch (e) {
      clear(err, errorBox(e), e.status === 404 ? h('p', {}, h('a', { href: '#/' }, 'Back to the overview')) : null);
    }
  }
  every(POLL_MS, refresh);

  async function purge(btn) {
    const n = info ? info.stats.ready + info.stats.delayed + info.stats.in_flight : '?';
    if (!(await confirmAction(`Purge ${name}?`, `This deletes every message in ${name} (about ${n}). It cannot be undone.`, 'Purge'))) return;
    await act(btn, () => post(`/v1/queues/${enc(name)}/purge`), (r) => `Purged ${num(r.purged)} messages`);
    refresh();
  }
  async function remove(btn) {
    if (!(await confirmAction(`Delete queue ${name}?`, 'The queue, its messages and its subscriptions are deleted. It cannot be undone.', 'Delete queue'))) return;
    const ok = await act(btn, () => del(`/v1/queues/${enc(name)}`), `Queue ${name} deleted`);
    if (ok !== undefined) location.hash = '#/';
  }

  function peekPanel(p) {
    const limit = h('select', {}, [50, 200, 1000].map((n) => h('option', { value: n }, String(n))));
    const perr = h('div', {});
    const table = pagedTable({
      label: 'Messages', key: (m) => m.id, pageSize: 20, empty: 'The queue is empty.',
      detail: (m) => messageDetail(m),
      columns: [
        { label: 'Id', cell: (m) => h('span', { class: 'mono' }, shortId(m.id)) },
        { label: 'State', cell: (m) => stateBadge(m.state) },
        { label: 'Receives', num: true, cell: (m) => num(m.receive_count) },
        { label: 'Enqueued', cell: (m) => time(m.enqueued_at), narrow: true },
        { label: 'Body', cell: (m) => h('span', { class: 'mono' }, m.body_base64 ? '(binary)' : preview(m.body)) },
      ],
    });
    const load = async () => {
      try { table.set((await get(`/v1/queues/${enc(name)}/messages?limit=${limit.value}`)).messages); clear(perr); } catch (e) { clear(perr, errorBox(e)); }
    };
    limit.addEventListener('change', load);
    clear(p, h('p', { class: 'muted' }, 'Peek looks at messages without receiving them: ready first, then delayed, then in flight.'),
      h('div', { class: 'row' }, field('Show up to', limit), h('button', { onclick: load }, 'Refresh')), perr, table.el);
    load();
  }

  function sendPanel(p) {
    const body = h('textarea', { rows: 6, placeholder: '{"hello": "world"}' });
    const delay = h('input', { type: 'number', min: 0, placeholder: '0' });
    const attrs = h('textarea', { rows: 3, placeholder: 'key=value, one per line' });
    const group = h('input', { placeholder: name.endsWith('.fifo') ? 'required for FIFO' : 'optional' });
    const dedup = h('input', { placeholder: 'optional' });
    const serr = h('div', {});
    const out = h('div', { role: 'status' });
    const form = h('form', {
      onsubmit: async (ev) => {
        ev.preventDefault();
        clear(serr);
        const btn = form.querySelector('button[type=submit]');
        btn.disabled = true;
        try {
          const m = { body: body.value, attributes: parseAttrs(attrs.value) };
          const d = intOrNull(delay, 'delay');
          if (d !== null) m.delay_seconds = d;
          if (group.value.trim()) m.message_group_id = group.value.trim();
          if (dedup.value.trim()) m.deduplication_id = dedup.value.trim();
          const r = await post(`/v1/queues/${enc(name)}/messages`, m);
          clear(out, h('p', {}, 'Sent message ', h('span', { class: 'mono' }, r.id)));
          notice('Message sent');
          refresh();
        } catch (e) { clear(serr, errorBox(e)); } finally { btn.disabled = false; }
      },
    }, field('Body', body, { wide: true }), h('div', { class: 'row' }, field('Delay (s)', delay), field('Group id', group), field('Deduplication id', dedup)),
    field('Attributes', attrs, { wide: true }),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Send message'),
      h('button', { type: 'button', onclick: () => { try { body.value = JSON.stringify(JSON.parse(body.value), null, 2); } catch (e) { notice(`Body is not JSON: ${e.message}`, 'error'); } } }, 'Format JSON')),
    serr, out);
    clear(p, form);
  }

  function receivePanel(p) {
    const max = h('input', { type: 'number', min: 1, max: 100, value: 1 });
    const vis = h('input', { type: 'number', min: 0, placeholder: String(info?.config.visibility_timeout_seconds ?? 30) });
    const wait = h('input', { type: 'number', min: 0, max: 20, value: 0 });
    const rerr = h('div', {});
    const list = h('div', {});
    const leases = new Map();
    function lease(m, el) {
      const left = (Date.parse(m.visible_at) - Date.now()) / 1000;
      const text = left > 0 ? `lease ends in ${duration(left)}` : 'lease expired: ack will fail';
      if (el.textContent !== text) el.textContent = text;
      el.className = `badge ${left > 0 ? 'warn' : 'bad'}`;
    }
    // Cards are built when the set changes; the timer only updates the lease badges, so what
    // is typed and where focus is survive.
    function render() {
      leases.clear();
      if (!held.size) { clear(list, h('p', { class: 'muted' }, 'Nothing received yet. Received messages stay here (also when you switch tabs) until you ack or nack them.')); return; }
      clear(list, h('div', { class: 'row' }, h('button', { onclick: (ev) => ackAll(ev.currentTarget) }, `Ack all ${held.size}`)),
        [...held.values()].map(card));
    }
    function card(m) {
      const nackDelay = h('input', { type: 'number', min: 0, value: 0, style: 'width: 110px' });
      const badgeEl = h('span', {});
      lease(m, badgeEl);
      leases.set(m.id, [m, badgeEl]);
      return h('article', { class: 'msg', 'aria-label': `received message ${m.id}` },
        h('header', {}, h('span', { class: 'mono' }, m.id), badge(`receive #${m.receive_count}`), badgeEl),
        h('pre', {}, pretty(m.body, m.body_base64)),
        Object.keys(m.attributes).length ? attrsTable(m.attributes) : null,
        h('div', { class: 'row' },
          h('button', { class: 'primary', onclick: (ev) => settle(ev.currentTarget, m, 'ack') }, 'Ack'),
          field('Nack delay (s)', nackDelay),
          h('button', { onclick: (ev) => settle(ev.currentTarget, m, 'nack', Number(nackDelay.value || 0)) }, 'Nack'),
          h('button', { onclick: (ev) => extend(ev.currentTarget, m) }, 'Extend lease +30 s')));
    }
    async function settle(btn, m, what, delay) {
      const body = what === 'ack' ? { receipt: m.receipt } : { receipt: m.receipt, delay_seconds: delay };
      const r = await act(btn, () => post(`/v1/queues/${enc(name)}/${what}`, body));
      if (!r) return;
      if (r.failed && r.failed.length) { notice(`${what} failed: ${r.failed[0].error.message}`, 'error'); return; }
      held.delete(m.id);
      notice(what === 'ack' ? 'Acked' : 'Nacked: the message is back in the queue (or in its dead-letter queue, past max receives)');
      render();
      refresh();
    }
    async function extend(btn, m) {
      const r = await act(btn, () => post(`/v1/queues/${enc(name)}/visibility`, { receipt: m.receipt, visibility_timeout_seconds: Math.max(30, Math.ceil((Date.parse(m.visible_at) - Date.now()) / 1000) + 30) }), 'Lease extended');
      if (r) { m.visible_at = r.visible_at; const l = leases.get(m.id); if (l) lease(m, l[1]); }
    }
    async function ackAll(btn) {
      const receipts = [...held.values()].map((m) => m.receipt);
      const r = await act(btn, () => post(`/v1/queues/${enc(name)}/ack`, { receipts }));
      if (!r) return;
      const bad = new Set(r.failed.map((f) => f.receipt));
      for (const [id, m] of held) if (!bad.has(m.receipt)) held.delete(id);
      const why = [...new Set(r.failed.map((f) => `${f.error.code}: ${f.error.message}`))].join('; ');
      notice(`Acked ${r.acked}${r.failed.length ? `, ${r.failed.length} failed (${why})` : ''}`, r.failed.length ? 'error' : 'info');
      render();
      refresh();
    }
    const form = h('form', {
      onsubmit: async (ev) => {
        ev.preventDefault();
        clear(rerr);
        const btn = form.querySelector('button[type=submit]');
        btn.disabled = true;
        try {
          const b = { max_messages: Number(max.value || 1), wait_seconds: Number(wait.value || 0) };
          const v = intOrNull(vis, 'visibility timeout');
          if (v !== null) b.visibility_timeout_seconds = v;
          const r = await post(`/v1/queues/${enc(name)}/receive`, b);
          if (!r.messages.length) notice('No message was ready');
          for (const m of r.messages) held.set(m.id, m);
          render();
          refresh();
        } catch (e) { clear(rerr, errorBox(e)); } finally { btn.disabled = false; }
      },
    }, h('div', { class: 'row' }, field('Max messages (1-100)', max), field('Visibility timeout (s)', vis), field('Wait (s, long poll)', wait),
      h('button', { type: 'submit', class: 'primary' }, 'Receive')), rerr);
    const tick = setInterval(() => { for (const [m, el] of leases.values()) lease(m, el); }, 1000);
    onPanelLeave(() => clearInterval(tick));
    clear(p, form, list);
    render();
  }

  async function deadPanel(p) {
    const derr = h('div', {});
    const mine = h('div', {});
    const here = h('div', {});
    clear(p, derr, mine, here);
    const row = (from) => pagedTable({
      label: 'Dead letters', key: (m) => m.id, pageSize: 20, empty: 'No dead letters.',
      detail: (m) => messageDetail(m),
      columns: [
        { label: 'Id', cell: (m) => h('span', { class: 'mono' }, shortId(m.id)) },
        { label: 'From', cell: (m) => [deadSource(m), (m.attributes || {})['sluice-subscription'] ? ` → ${m.attributes['sluice-subscription']}` : ''] },
        { label: 'Receives', num: true, cell: (m) => num(m.receive_count || Number((m.attributes || {})['sluice-attempts'] || 0)) },
        { label: 'Error', cell: (m) => (m.attributes || {})['sluice-error'] || '' },
        { label: 'Body', cell: (m) => h('span', { class: 'mono' }, preview(m.body, 50)) },
        { label: '', cell: (m) => h('button', { class: 'small', 'aria-label': `Redrive ${m.id}`, onclick: (ev) => redriveOne(ev.currentTarget, from, m) }, 'Redrive') },
      ],
    });
    async function redriveOne(btn, from, m) {
      const r = await act(btn, () => post(`/v1/queues/${enc(from)}/redrive`, { ids: [m.id] }), (x) => `Redrove ${x.redriven} message`);
      if (r) { refresh(); deadPanel(p); }
    }
    try {
      const cfg = info ? info.config : (await get(`/v1/queues/${enc(name)}`)).config;
      const all = await get('/v1/queues');
      const names = new Set(all.queues.map((q) => q.name));
      const dlq = cfg.dead_letter_queue || (names.has(defaultDlq(name)) ? defaultDlq(name) : null);
      if (dlq && names.has(dlq)) {
        const scanned = (await get(`/v1/queues/${enc(dlq)}/messages?limit=1000`)).messages;
        const got = scanned.filter((m) => deadSource(m) === name);
        const more = scanned.length === 1000;
        const t = row(dlq);
        t.set(got);
        clear(mine, h('section', { class: 'card' },
          h('h2', {}, 'Dead letters of this queue, in ', queueLink(dlq)),
          h('p', { class: 'muted' }, 'Messages that failed too often here (or on its subscriptions). Redrive sends them back with a fresh receive count.'),
          more ? h('p', { role: 'note' }, badge('partial', 'warn'), ` Only the first 1,000 messages of ${dlq} were scanned; Redrive all still moves every one of them.`) : null,
          h('div', { class: 'row' }, h('button', {
            disabled: !got.length,
            onclick: async (ev) => { const r = await act(ev.currentTarget, () => post(`/v1/queues/${enc(name)}/redrive`), (x) => `Redrove ${x.redriven} messages`); if (r) { refresh(); deadPanel(p); } },
          }, `Redrive all (${got.length}${more ? '+' : ''})`)), t.el));
      } else {
        clear(mine, h('p', { class: 'muted' }, 'This queue has no dead-letter queue. Set one (and max receives) under Config.'));
      }
      const own = (await get(`/v1/queues/${enc(name)}/messages?limit=1000`)).messages.filter((m) => deadSource(m));
      if (own.length) {
        const t = row(name);
        t.set(own);
        clear(here, h('section', { class: 'card' }, h('h2', {}, 'Dead letters held in this queue'),
          h('div', { class: 'row' }, h('button', {
            onclick: async (ev) => { const r = await act(ev.currentTarget, () => post(`/v1/queues/${enc(name)}/redrive`), (x) => `Redrove ${x.redriven} messages to their sources`); if (r) { refresh(); deadPanel(p); } },
          }, 'Redrive all to their sources')), t.el));
      }
    } catch (e) { clear(derr, errorBox(e)); }
  }

  async function subsPanel(p) {
    try {
      const r = await get(`/v1/queues/${enc(name)}/subscriptions`);
      clear(p, r.subscriptions.length
        ? subscriptionTable(r.subscriptions).el
        : h('p', { class: 'muted' }, 'No subscriptions: consumers pull from this queue. Add one with PUT /v1/queues/', name, '/subscriptions/NAME (see docs/webhooks.md).'));
    } catch (e) { clear(p, errorBox(e)); }
  }

  async function configPanel(p) {
    const q = info || await get(`/v1/queues/${enc(name)}`).catch((e) => { clear(p, errorBox(e)); return null; });
    if (!q) return;
    const c = q.config;
    const inputs = {
      visibility_timeout_seconds: h('input', { type: 'number', min: 0, value: c.visibility_timeout_seconds }),
      delay_seconds: h('input', { type: 'number', min: 0, value: c.delay_seconds }),
      retention_seconds: h('input', { type: 'number', min: 0, value: c.retention_seconds }),
      max_message_bytes: h('input', { type: 'number', min: 1, value: c.max_message_bytes }),
      receive_wait_seconds: h('input', { type: 'number', min: 0, value: c.receive_wait_seconds }),
      max_receives: h('input', { type: 'number', min: 1, value: c.max_receives ?? '', placeholder: 'none' }),
      dead_letter_queue: h('input', { value: c.dead_letter_queue ?? '', placeholder: 'none' }),
    };
    const tags = h('textarea', { rows: 3 }, Object.entries(c.tags).map(([k, v]) => `${k}=${v}`).join('\n'));
    const labels = {
      visibility_timeout_seconds: 'Visibility timeout (s)', delay_seconds: 'Delay (s)', retention_seconds: 'Retention (s)',
      max_message_bytes: 'Max message bytes', receive_wait_seconds: 'Receive wait (s)', max_receives: 'Max receives', dead_letter_queue: 'Dead-letter queue',
    };
    const cerr = h('div', {});
    const form = h('form', {
      onsubmit: async (ev) => {
        ev.preventDefault();
        clear(cerr);
        try {
          const b = {};
          for (const k of ['visibility_timeout_seconds', 'delay_seconds', 'retention_seconds', 'max_message_bytes', 'receive_wait_seconds']) {
            const v = intOrNull(inputs[k], labels[k]);
            if (v !== null) b[k] = v;
          }
          b.max_receives = intOrNull(inputs.max_receives, labels.max_receives);
          b.dead_letter_queue = inputs.dead_letter_queue.value.trim() || null;
          b.tags = parseAttrs(tags.value);
          info = await put(`/v1/queues/${enc(name)}`, b);
          notice('Configuration saved');
          refresh();
        } catch (e) { clear(cerr, errorBox(e)); }
      },
    }, h('div', { class: 'row' }, Object.entries(inputs).map(([k, i]) => field(labels[k], i))),
    field('Tags (key=value per line)', tags, { wide: true }),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Save configuration')), cerr,
    h('p', { class: 'muted' }, `Created `, time(q.created_at), `, updated `, time(q.updated_at), '.'));
    clear(p, form);
  }
}

// ---------- subscriptions ----------

function successRate(s) {
  const done = s.stats.delivered + s.stats.failed;
  return done ? `${((100 * s.stats.delivered) / done).toFixed(1)}%` : '–';
}

function rateLimit(s) {
  if (s.stats.current_rate_limit) return `${rate(s.stats.current_rate_limit)}/s (adaptive, after 429s)`;
  if (s.rate_limit_per_second) return `${rate(s.rate_limit_per_second)}/s (configured)`;
  return 'none';
}

function subscriptionTable(subs) {
  const t = pagedTable({
    label: 'Subscriptions',
    empty: 'No subscriptions yet. A subscription pushes a queue\'s messages to a URL: PUT /v1/queues/QUEUE/subscriptions/NAME (docs/webhooks.md).',
    columns: [
      { label: 'Subscription', cell: (s) => h('a', { href: `#/subscriptions/${enc(s.queue)}/${enc(s.name)}` }, `${s.queue} → ${s.name}`) },
      { label: 'Endpoint', cell: (s) => h('span', { class: 'mono' }, `${s.method} ${s.url}`), narrow: true },
      { label: 'Delivered', num: true, cell: (s) => num(s.stats.delivered) },
      { label: 'Failed', num: true, cell: (s) => (s.stats.failed ? badge(num(s.stats.failed), 'bad') : '0') },
      { label: 'Retried', num: true, cell: (s) => num(s.stats.retried) },
      { label: 'Success', num: true, cell: successRate },
      { label: 'Rate limit', num: true, cell: rateLimit },
      { label: 'Backlog', num: true, cell: (s) => num(s.stats.ready + s.stats.delayed + s.stats.in_flight) },
    ],
  });
  t.set(subs);
  return t;
}

async function subscriptionsPage() {
  const err = h('div', {});
  const table = subscriptionTable([]);
  clear(main, h('h1', {}, 'Subscriptions'), err, h('section', { class: 'card' }, table.el));
  every(POLL_MS * 2, async () => {
    try {
      const qs = (await get('/v1/queues')).queues;
      // A queue deleted meanwhile answers 404: skip it rather than blank the page.
      const lists = await Promise.allSettled(qs.map((q) => get(`/v1/queues/${enc(q.name)}/subscriptions`).then((r) => r.subscriptions)));
      const failed = lists.filter((l) => l.status === 'rejected' && l.reason.status !== 404);
      clear(err, failed.length ? errorBox(failed[0].reason) : null);
      table.set(lists.flatMap((l) => (l.status === 'fulfilled' ? l.value : [])));
    } catch (e) { clear(err, errorBox(e)); }
  });
}

function attemptsList(attempts) {
  return h('ol', { class: 'attempts' }, attempts.map((a) => h('li', {},
    h('div', { class: 'row', style: 'margin: 6px 0 2px' },
      h('strong', {}, `Attempt ${a.attempt}`), badge(a.outcome, a.outcome === 'delivered' ? 'ok' : a.outcome === 'failed' ? 'bad' : 'warn'),
      a.status ? h('span', {}, `HTTP ${a.status}`) : null, a.error ? h('span', { class: 'muted' }, a.error) : null,
      h('span', { class: 'muted' }, `${a.duration_ms} ms, `, time(a.at)), a.batch_size > 1 ? badge(`batch of ${a.batch_size}`) : null,
      a.next_attempt_at ? h('span', { class: 'muted' }, 'next ', time(a.next_attempt_at)) : null),
    h('div', { class: 'grid' },
      h('div', {}, h('h3', {}, 'Request'), h('pre', { 'aria-label': 'request excerpt' }, a.request || '(not recorded)')),
      h('div', {}, h('h3', {}, 'Response'), h('pre', { 'aria-label': 'response excerpt' }, a.response || '(empty)'))))));
}

async function subscriptionPage(queue, name) {
  const facts = h('div', {});
  const err = h('div', {});
  const failing = h('input', { type: 'checkbox' });
  const attemptsTable = pagedTable({
    label: 'Recent deliveries', key: (m) => m.message_id, pageSize: 20,
    empty: 'No attempts recorded yet (the log is kept in memory for 24 h).',
    detail: (m) => attemptsList(m.attempts),
    columns: [
      { label: 'Message', cell: (m) => h('span', { class: 'mono' }, shortId(m.message_id)) },
      { label: 'Attempts', num: true, cell: (m) => num(m.attempts.length) },
      { label: 'Last outcome', cell: (m) => { const a = m.attempts.at(-1); return badge(a.outcome, a.outcome === 'delivered' ? 'ok' : a.outcome === 'failed' ? 'bad' : 'warn'); } },
      { label: 'Status', cell: (m) => { const a = m.attempts.at(-1); return a.status ? String(a.status) : (a.error || '–'); } },
      { label: 'When', cell: (m) => time(m.attempts.at(-1).at), narrow: true },
    ],
  });
  const dead = h('div', {});
  clear(main,
    h('div', { class: 'breadcrumb' }, h('a', { href: '#/subscriptions' }, 'Subscriptions'), ' / ', queueLink(queue)),
    h('h1', {}, `${queue} → ${name}`), err, facts,
    h('section', { class: 'card', 'aria-labelledby': 'att-h' }, h('h2', { id: 'att-h' }, 'Recent deliveries and their attempts'),
      h('div', { class: 'row', style: 'margin: 0 0 8px' }, h('label', {}, failing, ' only messages whose last attempt failed')), attemptsTable.el),
    h('section', { class: 'card', 'aria-labelledby': 'dl-h' }, h('h2', { id: 'dl-h' }, 'Dead-lettered deliveries'), dead));
  failing.addEventListener('change', () => loadAttempts().catch((e) => notice(String(e), 'error')));
  async function loadAttempts() {
    const r = await get(`/v1/queues/${enc(queue)}/subscriptions/${enc(name)}/attempts?limit=200${failing.checked ? '&failing=true' : ''}`);
    attemptsTable.set(r.messages);
  }
  let dlqName = null;
  async function loadDead() {
    const all = new Set((await get('/v1/queues')).queues.map((q) => q.name));
    const cfg = (await get(`/v1/queues/${enc(queue)}`)).config;
    dlqName = cfg.dead_letter_queue || defaultDlq(queue);
    if (!all.has(dlqName)) { clear(dead, h('p', { class: 'muted' }, 'None: nothing has been dead-lettered.')); return; }
    const msgs = (await get(`/v1/queues/${enc(dlqName)}/messages?limit=1000`)).messages
      .filter((m) => m.attributes['sluice-source-queue'] === queue && m.attributes['sluice-subscription'] === name);
    const t = pagedTable({
      label: 'Dead-lettered deliveries', key: (m) => m.id, pageSize: 20, empty: 'None.',
      detail: (m) => messageDetail(m),
      columns: [
        { label: 'Dead letter', cell: (m) => h('span', { class: 'mono' }, shortId(m.id)) },
        { label: 'Attempts', num: true, cell: (m) => m.attributes['sluice-attempts'] || '–' },
        { label: 'Last error', cell: (m) => m.attributes['sluice-error'] || '–' },
        { label: 'When', cell: (m) => time(m.enqueued_at), narrow: true },
        { label: '', cell: (m) => h('button', { class: 'small', 'aria-label': `Resend ${m.id}`, onclick: (ev) => resend(ev.currentTarget, [m.id]) }, 'Resend') },
      ],
    });
    t.set(msgs);
    clear(dead, h('p', { class: 'muted' }, 'Held in ', queueLink(dlqName), '. Resend puts a delivery back on this subscription with fresh attempts.'),
      h('div', { class: 'row' }, h('button', { disabled: !msgs.length, onclick: (ev) => resend(ev.currentTarget, msgs.slice(0, 1000).map((m) => m.id)) }, `Resend all (${msgs.length})`)),
      t.el);
  }
  async function resend(btn, ids) {
    const r = await act(btn, () => post(`/v1/queues/${enc(dlqName)}/redrive`, { ids }), (x) => `Resent ${x.redriven}`);
    if (r) loadDead();
  }
  every(POLL_MS, async () => {
    try {
      const s = await get(`/v1/queues/${enc(queue)}/subscriptions/${enc(name)}`);
      clear(err);
      clear(facts, h('div', { class: 'tiles' },
        tile('Delivered', num(s.stats.delivered), 'delivered'), tile('Failed', num(s.stats.failed), 'failed'),
        tile('Retried', num(s.stats.retried), 'retried'), tile('Throttled (429)', num(s.stats.throttled), 'throttled'),
        tile('Success rate', successRate(s), 'success'),
        tile('Backlog', num(s.stats.ready + s.stats.delayed + s.stats.in_flight), 'backlog'),
        tile('Rate limit', rateLimit(s), 'rate')),
      h('section', { class: 'card' }, h('h2', {}, 'Endpoint'), h('dl', { class: 'facts' },
        h('dt', {}, 'Request'), h('dd', { class: 'mono' }, `${s.method} ${s.url}`),
        h('dt', {}, 'Timeout'), h('dd', {}, `${s.timeout_seconds} s`),
        h('dt', {}, 'Attempts'), h('dd', {}, `up to ${s.max_attempts}, backoff ${s.backoff.initial_seconds} s × ${s.backoff.multiplier} up to ${s.backoff.max_seconds} s${s.backoff.jitter ? ', jitter' : ''}`),
        h('dt', {}, 'Concurrency'), h('dd', {}, String(s.concurrency)),
        h('dt', {}, 'Batch'), h('dd', {}, s.batch.max_messages > 1 ? `${s.batch.max_messages} messages or ${s.batch.max_wait_ms} ms` : 'one message per request'),
        h('dt', {}, 'Signing secret'), h('dd', { class: 'mono' }, s.signing_secret || 'none'),
        h('dt', {}, 'Headers'), h('dd', { class: 'mono' }, Object.keys(s.headers).join(', ') || 'none'))));
      await loadAttempts();
    } catch (e) { clear(err, errorBox(e)); }
  });
  loadDead().catch((e) => clear(dead, errorBox(e)));
}

// ---------- timers and schedules ----------

async function timersPage() {
  const counts = h('div', { class: 'tiles' });
  const panel = h('div', {});
  const sched = h('div', {});
  const err = h('div', {});
  let status = 'pending';
  const table = pagedTable({
    label: 'Timers', key: (t) => t.id, pageSize: 25, empty: 'No timers here.',
    detail: (t) => (t.attempts.length ? attemptsList(t.attempts) : h('p', { class: 'muted' }, 'No attempts yet.')),
    columns: [
      { label: 'Timer', cell: (t) => h('span', { class: 'mono' }, shortId(t.id)) },
      { label: 'Status', cell: (t) => badge(t.status, t.status === 'failed' ? 'bad' : t.status === 'succeeded' ? 'ok' : t.status === 'retrying' ? 'warn' : '') },
      { label: 'Due', cell: (t) => [time(t.due_at), t.status === 'scheduled' && t.time_left <= 60 ? [' ', badge('due soon', 'warn')] : null] },
      { label: 'Attempts', num: true, cell: (t) => num(t.attempts.length) },
      { label: 'Last result', cell: (t) => { const a = t.attempts.at(-1); return a ? (a.status ? `HTTP ${a.status}` : a.error || a.outcome) : '–'; } },
      { label: '', cell: (t) => (['scheduled', 'retrying'].includes(t.status) ? h('button', { class: 'small', 'aria-label': `Cancel timer ${t.id}`, onclick: (ev) => cancel(ev.currentTarget, t) }, 'Cancel') : '') },
    ],
  });
  async function cancel(btn, t) {
    if (!(await confirmAction('Cancel this timer?', `Timer ${t.id} will not fire.`, 'Cancel timer'))) return;
    const r = await act(btn, () => del(`/v1/timers/${enc(t.id)}`), 'Timer cancelled');
    if (r) load();
  }
  const st = pagedTable({
    label: 'Schedules', empty: 'No cron schedules.',
    columns: [
      { label: 'Schedule', cell: (x) => x.name },
      { label: 'Cron', cell: (x) => h('span', { class: 'mono' }, `${x.cron} (${x.timezone})`) },
      { label: 'Target', cell: (x) => h('span', { class: 'mono' }, x.url ? `${x.method} ${x.url}` : `publish to ${x.queue}`), narrow: true },
      { label: 'Next', cell: (x) => time(x.next_fire_at) },
      { label: 'Last', cell: (x) => time(x.last_fired_at), narrow: true },
      { label: 'Fired', num: true, cell: (x) => num(x.fired) },
      { label: 'Missed', num: true, cell: (x) => num(x.missed) },
      { label: '', cell: (x) => h('button', { class: 'small', 'aria-label': `Delete schedule ${x.name}`, onclick: (ev) => dropSchedule(ev.currentTarget, x.name) }, 'Delete') },
    ],
  });
  clear(sched, st.el);
  async function load() {
    const asked = status;
    try {
      const r = await get(`/v1/timers?status=${asked}&limit=1000`);
      if (asked !== status) return; // the user switched tabs meanwhile
      clear(err);
      clear(counts, tile('Pending', num(r.pending), 'pending'), tile('Finished', num(r.finished), 'finished'),
        tile('Due within a minute', status === 'pending' ? num(r.timers.filter((t) => t.time_left <= 60).length) : '–', 'due_soon'));
      table.set(r.timers);
      st.set((await get('/v1/schedules')).schedules);
    } catch (e) { clear(err, errorBox(e)); }
  }
  async function dropSchedule(btn, n) {
    if (!(await confirmAction(`Delete schedule ${n}?`, 'It will not fire again.', 'Delete schedule'))) return;
    if (await act(btn, () => del(`/v1/schedules/${enc(n)}`), 'Schedule deleted') !== undefined) load();
  }
  const url = h('input', { type: 'url', required: true, placeholder: 'https://example.com/hook' });
  const delay = h('input', { type: 'number', min: 0, value: 600 });
  const method = h('select', {}, ['POST', 'PUT', 'PATCH', 'GET', 'DELETE'].map((m) => h('option', {}, m)));
  const tbody = h('textarea', { rows: 3, placeholder: 'optional body' });
  const cerr = h('div', {});
  const create = h('form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      clear(cerr);
      try {
        const b = { url: url.value, method: method.value, delay_seconds: Number(delay.value || 0) };
        if (tbody.value) b.body = tbody.value;
        const t = await post('/v1/timers', b);
        notice(`Timer ${t.id} scheduled`);
        load();
      } catch (e) { clear(cerr, errorBox(e)); }
    },
  }, h('div', { class: 'row' }, field('URL to call', url, { wide: true }), field('Method', method), field('In (seconds)', delay)),
  field('Body', tbody, { wide: true }), h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Schedule timer')), cerr);
  clear(main, h('h1', {}, 'Timers and schedules'), err, counts,
    h('section', { class: 'card' },
      tabs(['pending', 'failed', 'succeeded', 'cancelled'], (s) => { status = s; table.set([]); load(); }),
      panel, table.el),
    h('section', { class: 'card' }, h('h2', {}, 'Cron schedules'), sched),
    h('section', { class: 'card' }, h('h2', {}, 'Call a URL later'), create));
  every(POLL_MS * 2, load);
}

// ---------- ingestion ----------

async function ingestPage() {
  const err = h('div', {});
  const watches = h('div', {});
  const table = pagedTable({
    label: 'Files', key: (f) => f.id, pageSize: 25, empty: 'No files ingested yet. Drop one into a watched folder, or POST it to /v1/ingest.',
    detail: (f) => h('dl', { class: 'facts' },
      h('dt', {}, 'Id'), h('dd', { class: 'mono' }, f.id),
      h('dt', {}, 'Path'), h('dd', { class: 'mono' }, f.path),
      h('dt', {}, 'Format'), h('dd', {}, `${f.format}, dedup by ${f.dedup}${f.header ? ', with header' : ''}`),
      h('dt', {}, 'Read'), h('dd', {}, `${bytes(f.offset)} of ${bytes(f.size)}, line ${num(f.line)}`),
      h('dt', {}, 'Dead-lettered rows'), h('dd', {}, num(f.rows_dead_lettered)),
      f.report && [h('dt', {}, 'Error report'), h('dd', { class: 'mono' }, f.report)],
      f.duplicates_report && [h('dt', {}, 'Duplicates report'), h('dd', { class: 'mono' }, f.duplicates_report)],
      f.error && [h('dt', {}, 'Error'), h('dd', {}, f.error)],
      h('dt', {}, 'Started'), h('dd', {}, time(f.started_at)),
      f.finished_at && [h('dt', {}, 'Finished'), h('dd', {}, time(f.finished_at))]),
    columns: [
      { label: 'File', cell: (f) => f.name },
      { label: 'Queue', cell: (f) => queueLink(f.queue), narrow: true },
      { label: 'State', cell: (f) => badge(f.state, ['failed', 'vanished', 'error'].includes(f.state) ? 'bad' : ['processed', 'duplicate'].includes(f.state) ? 'ok' : 'warn') },
      { label: 'Progress', cell: (f) => { const p = f.size ? Math.min(100, (100 * f.offset) / f.size) : 100; return h('div', { class: 'progress', role: 'progressbar', 'aria-valuenow': Math.round(p), 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-label': `${f.name} read` }, h('div', { style: `width: ${p}%` })); } },
      { label: 'Rows read', num: true, cell: (f) => num(f.rows_read) },
      { label: 'Published', num: true, cell: (f) => num(f.rows_published) },
      { label: 'Delivered', num: true, cell: (f) => num(f.rows_delivered) },
      { label: 'Bad rows', num: true, cell: (f) => (f.rows_failed ? badge(num(f.rows_failed), 'bad') : '0') },
      { label: 'Duplicates', num: true, cell: (f) => num(f.duplicates), narrow: true },
    ],
  });
  clear(main, h('h1', {}, 'File ingestion'), err, h('section', { class: 'card' }, h('h2', {}, 'Folders'), watches),
    h('section', { class: 'card' }, h('h2', {}, 'Files'), table.el));
  every(POLL_MS, async () => {
    try {
      const r = await get('/v1/ingest');
      clear(err);
      clear(watches, r.watches.length
        ? h('ul', {}, r.watches.map((w) => h('li', {}, h('span', { class: 'mono' }, w.dir), ' → ', queueLink(w.queue), ` (${w.format}, dedup ${w.dedup}${w.watched ? '' : '; upload spool, not watched'})`)))
        : h('p', { class: 'muted' }, 'No watched folders (start the server with --watch DIR=QUEUE).'),
      r.waiting && r.waiting.length ? h('p', {}, `Waiting to settle: ${r.waiting.map((w) => w.name || w.path).join(', ')}`) : null);
      table.set(r.files);
    } catch (e) { clear(err, errorBox(e)); }
  });
}

// ---------- router, auth, connection ----------

const routes = [
  [/^\/?$/, 'overview', overview],
  [/^\/queues\/([^/]+)$/, 'overview', queuePage],
  [/^\/subscriptions$/, 'subscriptions', subscriptionsPage],
  [/^\/subscriptions\/([^/]+)\/([^/]+)$/, 'subscriptions', subscriptionPage],
  [/^\/timers$/, 'timers', timersPage],
  [/^\/ingest$/, 'ingest', ingestPage],
];

let firstRender = true;
function render() {
  for (const c of cleanups.splice(0)) c();
  const path = location.hash.replace(/^#/, '') || '/';
  for (const [re, nav, view] of routes) {
    const m = path.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll('[data-nav]')) {
      if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    document.title = `${m[1] ? decodeURIComponent(m[1]) + ' · ' : ''}sluice`;
    view(...m.slice(1).map(decodeURIComponent));
    if (!firstRender) main.focus();
    firstRender = false;
    return;
  }
  clear(main, h('h1', {}, 'Not found'), h('p', {}, 'No such page. ', h('a', { href: '#/' }, 'Go to the overview.')));
}

const tokenDialog = document.getElementById('token-dialog');
const tokenOpen = document.getElementById('token-open');
let tokenDismissed = false;
const showTokenButton = () => { tokenOpen.hidden = !(token() || tokenDismissed); };
tokenOpen.addEventListener('click', () => { tokenDismissed = false; tokenDialog.showModal(); document.getElementById('token-input').focus(); });
document.getElementById('token-cancel').addEventListener('click', () => { tokenDismissed = true; tokenDialog.close(); showTokenButton(); });
tokenDialog.addEventListener('cancel', () => { tokenDismissed = true; setTimeout(showTokenButton); });
document.getElementById('token-forget').addEventListener('click', () => {
  setToken(null);
  document.getElementById('token-input').value = '';
  tokenDialog.close();
  showTokenButton();
  notice('API key forgotten');
  render();
});
showTokenButton();
onAuthNeeded((msg) => {
  // Once dismissed, the page does not nag on every poll; the header button reopens it.
  if (tokenDialog.open || tokenDismissed) { showTokenButton(); return; }
  document.getElementById('token-reason').textContent = token()
    ? `The server refused this key: ${msg}`
    : `This server requires an API key: ${msg}`;
  tokenDialog.showModal();
  document.getElementById('token-input').focus();
});
document.getElementById('token-form').addEventListener('submit', () => {
  setToken(document.getElementById('token-input').value.trim());
  tokenDismissed = false;
  showTokenButton();
  render();
});

const conn = document.getElementById('conn');
onConnection((ok) => {
  const text = ok ? '● live' : '○ server unreachable, retrying';
  if (conn.textContent !== text) conn.textContent = text;
});

window.addEventListener('hashchange', render);
render();
