// The settings tabs of a queue's page: Dead letters (its own, in its dead-letter queue, and
// those a dead-letter queue holds for others, with redrive), Subscriptions, and Config (every
// setting, each shown in units people read as well: limits, dead letters, deduplication window,
// time to live and the per-group in-flight limit). `ctx` is the page's (see queue.js).
import { get, post, put, enc } from './api.js';
import { h, clear, field, num, time, shortId, preview, badge, errorBox, notice, pagedTable } from './views.js';
import { act, messageDetail, queueLink, deadSource, defaultDlq, parseAttrs, intOrNull, inUnits, onSubmit } from './common.js';
import { subscriptionTable } from './subscriptions.js';

function deadTable(redriveOne) {
  return pagedTable({
    label: 'Dead letters', key: (m) => m.id, pageSize: 20, empty: 'No dead letters.',
    detail: (m) => messageDetail(m),
    columns: [
      { label: 'Id', cell: (m) => h('span', { class: 'mono' }, shortId(m.id)) },
      { label: 'From', cell: (m) => [deadSource(m), (m.attributes || {})['sluice-subscription'] ? ` → ${m.attributes['sluice-subscription']}` : ''] },
      { label: 'Receives', num: true, cell: (m) => num(m.receive_count || Number((m.attributes || {})['sluice-attempts'] || 0)) },
      { label: 'Error', cell: (m) => (m.attributes || {})['sluice-error'] || '' },
      { label: 'Body', cell: (m) => h('span', { class: 'mono' }, preview(m.body, 50)) },
      { label: '', cell: (m) => h('button', { class: 'small', 'aria-label': `Redrive ${m.id}`, onclick: (ev) => redriveOne(ev.currentTarget, m) }, 'Redrive') },
    ],
  });
}

export async function deadPanel(p, ctx) {
  const { name, refresh } = ctx;
  const derr = h('div', {});
  const mine = h('div', {});
  const here = h('div', {});
  clear(p, derr, mine, here);
  const again = () => { refresh(); deadPanel(p, ctx); };
  const redriveAll = (label, done) => h('button', {
    onclick: async (ev) => { if (await act(ev.currentTarget, () => post(`/v1/queues/${enc(name)}/redrive`), (x) => `Redrove ${x.redriven} messages${done}`)) again(); },
  }, label);
  try {
    const q = ctx.info() || await get(`/v1/queues/${enc(name)}`);
    const names = new Set((await get('/v1/queues')).queues.map((x) => x.name));
    const dlq = q.config.dead_letter_queue || (names.has(defaultDlq(name)) ? defaultDlq(name) : null);
    if (dlq && names.has(dlq)) {
      const scanned = (await get(`/v1/queues/${enc(dlq)}/messages?limit=1000`)).messages;
      const got = scanned.filter((m) => deadSource(m) === name);
      const more = scanned.length === 1000;
      const t = deadTable(async (btn, m) => { if (await act(btn, () => post(`/v1/queues/${enc(dlq)}/redrive`, { ids: [m.id] }), (x) => `Redrove ${x.redriven} message`)) again(); });
      t.set(got);
      clear(mine, h('section', { class: 'card' },
        h('h2', {}, 'Dead letters of this queue, in ', queueLink(dlq)),
        h('p', { class: 'muted' }, `${num(q.counts.dead_lettered)} of this queue's messages are there now: those that failed too often here, and deliveries its subscriptions gave up. Redrive sends them back with a fresh receive count.`),
        more ? h('p', { role: 'note' }, badge('partial', 'warn'), ` Only the first 1,000 messages of ${dlq} were scanned; Redrive all still moves every one of them.`) : null,
        h('div', { class: 'row' }, got.length ? redriveAll(`Redrive all (${got.length}${more ? '+' : ''})`, '') : h('button', { disabled: true }, 'Redrive all (0)')), t.el));
    } else {
      clear(mine, h('p', { class: 'muted' }, 'This queue has no dead-letter queue. Set one (and max receives) under Config; a queue with subscriptions gets ', h('span', { class: 'mono' }, defaultDlq(name)), ' when a delivery is given up.'));
    }
    const held = q.counts.dead_letters_held;
    const own = (await get(`/v1/queues/${enc(name)}/messages?limit=1000`)).messages.filter((m) => deadSource(m));
    if (held || own.length) {
      const t = deadTable(async (btn, m) => { if (await act(btn, () => post(`/v1/queues/${enc(name)}/redrive`, { ids: [m.id] }), (x) => `Redrove ${x.redriven} message`)) again(); });
      t.set(own);
      clear(here, h('section', { class: 'card' }, h('h2', {}, 'Dead letters held in this queue'),
        held ? h('p', { class: 'muted' }, `This is the dead-letter queue of `, held.sources.map((n, i) => [i ? ', ' : '', queueLink(n)]), `; it holds ${num(held.messages)} messages.`) : null,
        h('div', { class: 'row' }, redriveAll('Redrive all to their sources', ' to their sources')), t.el));
    }
  } catch (e) { clear(derr, errorBox(e)); }
}

export async function subsPanel(p, ctx) {
  try {
    const r = await get(`/v1/queues/${enc(ctx.name)}/subscriptions`);
    clear(p, r.subscriptions.length
      ? subscriptionTable(r.subscriptions).el
      : h('p', { class: 'muted' }, 'No subscriptions: consumers pull from this queue. Add one with `sluice sub create ', ctx.name, ' NAME --url URL` or PUT /v1/queues/', ctx.name, '/subscriptions/NAME (see docs/webhooks.md).'));
  } catch (e) { clear(p, errorBox(e)); }
}

const LABELS = {
  visibility_timeout_seconds: 'Visibility timeout (s)', delay_seconds: 'Delay (s)', retention_seconds: 'Retention (s)',
  max_message_bytes: 'Max message bytes', receive_wait_seconds: 'Receive wait (s)', max_receives: 'Max receives', dead_letter_queue: 'Dead-letter queue',
  dedup_window_seconds: 'Deduplication window (s)', default_ttl_seconds: 'Default time to live (s)', on_expire: 'On expiry',
  max_in_flight_per_group: 'Max in flight per group', group_rate_per_second: 'Messages a second per group',
};
const NUMBERS = ['visibility_timeout_seconds', 'delay_seconds', 'retention_seconds', 'max_message_bytes', 'receive_wait_seconds', 'dedup_window_seconds'];
/** Settings that may be none (an empty input sends null). */
const NULLABLE = ['max_receives', 'default_ttl_seconds', 'max_in_flight_per_group', 'group_rate_per_second'];
const MIN = { max_message_bytes: 1, dedup_window_seconds: 1 };

/** The configuration as people read it: `Retention 4d (345,600 s)`. */
function summary(c) {
  return h('dl', { class: 'facts', 'aria-label': 'configuration' },
    Object.keys(LABELS).map((k) => [h('dt', {}, LABELS[k].replace(/ \(s\)$/, '')), h('dd', { 'data-config': k }, inUnits(k, c[k]))]));
}

export async function configPanel(p, ctx) {
  const { name } = ctx;
  const q = ctx.info() || await get(`/v1/queues/${enc(name)}`).catch((e) => { clear(p, errorBox(e)); return null; });
  if (!q) return;
  const c = q.config;
  const inputs = {};
  const hints = {};
  for (const k of NUMBERS) {
    hints[k] = h('span', { class: 'hint', 'aria-live': 'polite' }, inUnits(k, c[k]));
    inputs[k] = h('input', { type: 'number', min: MIN[k] ?? 0, value: c[k] });
    inputs[k].addEventListener('input', () => { hints[k].textContent = /^\d+$/.test(inputs[k].value) ? inUnits(k, Number(inputs[k].value)) : ''; });
  }
  const fifo = name.endsWith('.fifo');
  for (const k of NULLABLE) {
    const off = (k === 'max_in_flight_per_group' || k === 'group_rate_per_second') && fifo;
    inputs[k] = h('input', { type: 'number', min: 1, value: c[k] ?? '', placeholder: off ? 'standard queues only' : 'none', disabled: off });
  }
  inputs.dead_letter_queue = h('input', { value: c.dead_letter_queue ?? '', placeholder: 'none' });
  inputs.on_expire = h('select', {}, [['drop', 'drop'], ['dead_letter', 'dead-letter']].map(([v, t]) => h('option', { value: v, selected: c.on_expire === v }, t)));
  const tags = h('textarea', { rows: 3 }, Object.entries(c.tags).map(([k, v]) => `${k}=${v}`).join('\n'));
  const shown = h('div', {}, summary(c));
  const cerr = h('div', {});
  const form = h('form', {
    onsubmit: onSubmit(cerr, async () => {
      const b = {};
      for (const k of NUMBERS) {
        const v = intOrNull(inputs[k], LABELS[k]);
        if (v !== null) b[k] = v;
      }
      for (const k of NULLABLE) b[k] = intOrNull(inputs[k], LABELS[k]);
      b.dead_letter_queue = inputs.dead_letter_queue.value.trim() || null;
      b.on_expire = inputs.on_expire.value;
      b.tags = parseAttrs(tags.value);
      const saved = await put(`/v1/queues/${enc(name)}`, b);
      ctx.setInfo(saved);
      clear(shown, summary(saved.config));
      notice('Configuration saved');
      ctx.refresh();
    }),
  }, h('div', { class: 'row' }, Object.entries(inputs).map(([k, i]) => h('div', {}, field(LABELS[k], i), hints[k] || null))),
  field('Tags (key=value per line)', tags, { wide: true }),
  h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Save configuration')), cerr,
  h('p', { class: 'muted' }, 'Created ', time(q.created_at), ', updated ', time(q.updated_at), '.'));
  clear(p, h('section', { class: 'card' }, h('h2', {}, 'In force'), shown), form);
}
