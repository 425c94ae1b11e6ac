// The message tabs of a queue's page: Messages (peek), Send, and Receive (leases held on the
// page as cards until acked or nacked). `ctx` is the page's: the queue's name, its latest view,
// refresh(), the received messages and the tab's cleanups.
import { get, post, enc } from './api.js';
import { h, clear, field, num, duration, time, shortId, pretty, preview, attrsTable, badge, errorBox, notice, pagedTable } from './views.js';
import { act, messageDetail, stateBadge, parseAttrs, intOrNull, onSubmit } from './common.js';

/** What an empty peek says: a push queue's messages are with its subscriptions. */
function emptyText(q) {
  const subs = q ? q.counts.subscriptions : null;
  if (subs && subs.count && q.counts.total) {
    return `The queue's own list is empty: its ${num(q.counts.total)} messages are with its ${subs.count} subscription${subs.count > 1 ? 's' : ''} (ready ${num(subs.ready)}, in flight ${num(subs.in_flight)}, retrying ${num(subs.retrying)}); see the Subscriptions tab.`;
  }
  return 'The queue is empty.';
}

export function peekPanel(p, ctx) {
  const { name } = ctx;
  const limit = h('select', {}, [50, 200, 1000].map((n) => h('option', { value: n }, String(n))));
  const perr = h('div', {});
  const table = pagedTable({
    label: 'Messages', key: (m) => m.id, pageSize: 20, empty: emptyText(ctx.info()),
    detail: (m) => messageDetail(m),
    columns: [
      { label: 'Id', cell: (m) => h('span', { class: 'mono' }, shortId(m.id)) },
      { label: 'State', cell: (m) => stateBadge(m.state) },
      { label: 'Priority', num: true, cell: (m) => h('span', { 'data-priority': m.priority }, String(m.priority ?? '–')) },
      { label: 'Group', cell: (m) => (m.message_group_id ? h('span', { class: 'mono' }, preview(m.message_group_id, 24)) : '–'), narrow: true },
      { label: 'Receives', num: true, cell: (m) => num(m.receive_count) },
      { label: 'Enqueued', cell: (m) => time(m.enqueued_at), narrow: true },
      { label: 'Expires', cell: (m) => (m.expires_at ? time(m.expires_at) : '–'), narrow: true },
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

export function sendPanel(p, ctx) {
  const { name, refresh } = ctx;
  const body = h('textarea', { rows: 6, placeholder: '{"hello": "world"}' });
  const delay = h('input', { type: 'number', min: 0, placeholder: '0' });
  const attrs = h('textarea', { rows: 3, placeholder: 'key=value, one per line' });
  const group = h('input', { placeholder: name.endsWith('.fifo') ? 'required for FIFO' : 'optional' });
  const dedup = h('input', { placeholder: 'optional' });
  const fifo = name.endsWith('.fifo');
  const priority = h('input', { type: 'number', min: 0, max: 9, placeholder: fifo ? 'standard queues only' : '4', disabled: fifo });
  const ttl = h('input', { type: 'number', min: 1, placeholder: "queue's default" });
  const serr = h('div', {});
  const out = h('div', { role: 'status' });
  const form = h('form', {
    onsubmit: onSubmit(serr, async () => {
      const m = { body: body.value, attributes: parseAttrs(attrs.value) };
      const d = intOrNull(delay, 'delay');
      if (d !== null) m.delay_seconds = d;
      if (group.value.trim()) m.message_group_id = group.value.trim();
      if (dedup.value.trim()) m.deduplication_id = dedup.value.trim();
      const p = intOrNull(priority, 'priority');
      if (p !== null) m.priority = p;
      const t = intOrNull(ttl, 'time to live');
      if (t !== null) m.ttl_seconds = t;
      const r = await post(`/v1/queues/${enc(name)}/messages`, m);
      clear(out, h('p', {}, r.duplicate ? 'Duplicate of message ' : 'Sent message ', h('span', { class: 'mono' }, r.id)));
      notice(r.duplicate ? 'Not stored again: a duplicate within the deduplication window' : 'Message sent');
      refresh();
    }),
  }, field('Body', body, { wide: true }), h('div', { class: 'row' }, field('Delay (s)', delay), field('Group id', group), field('Deduplication id', dedup),
    field('Priority (0-9)', priority), field('Time to live (s)', ttl)),
  field('Attributes', attrs, { wide: true }),
  h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Send message'),
    h('button', { type: 'button', onclick: () => { try { body.value = JSON.stringify(JSON.parse(body.value), null, 2); } catch (e) { notice(`Body is not JSON: ${e.message}`, 'error'); } } }, 'Format JSON')),
  serr, out);
  clear(p, form);
}

export function receivePanel(p, ctx) {
  const { name, held, refresh, onPanelLeave } = ctx;
  const info = ctx.info();
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
    onsubmit: onSubmit(rerr, async () => {
      const b = { max_messages: Number(max.value || 1), wait_seconds: Number(wait.value || 0) };
      const v = intOrNull(vis, 'visibility timeout');
      if (v !== null) b.visibility_timeout_seconds = v;
      const r = await post(`/v1/queues/${enc(name)}/receive`, b);
      if (!r.messages.length) notice('No message was ready');
      for (const m of r.messages) held.set(m.id, m);
      render();
      refresh();
    }),
  }, h('div', { class: 'row' }, field('Max messages (1-100)', max), field('Visibility timeout (s)', vis), field('Wait (s, long poll)', wait),
    h('button', { type: 'submit', class: 'primary' }, 'Receive')), rerr);
  const tick = setInterval(() => { for (const [m, el] of leases.values()) lease(m, el); }, 1000);
  onPanelLeave(() => clearInterval(tick));
  clear(p, form, list);
  render();
}
