// The overview page (#/): server facts, charts of message rates, push delivery rates and the
// depth of all queues, every queue with where its messages are (its subscriptions' copies
// included), and a form to create a queue.
import { get, put, enc } from './api.js';
import { h, clear, field, num, rate, bytes, duration, time, badge, errorBox, notice, pagedTable } from './views.js';
import { main, POLL_MS, every, queueLink, intOrNull, onSubmit } from './common.js';
import { lineChart, MESSAGE_SERIES, DELIVERY_SERIES, DEPTH_SERIES } from './charts.js';

/** The queue-list columns for a queue's counts, shared with nothing else. */
function queueColumns(lastRates) {
  const c = (q) => q.counts;
  return [
    { label: 'Queue', cell: (q) => [queueLink(q.name), c(q).dead_letters_held ? [' ', badge('DLQ')] : null] },
    { label: 'Messages', num: true, cell: (q) => num(c(q).total) },
    { label: 'Ready', num: true, cell: (q) => num(c(q).ready) },
    { label: 'In flight', num: true, cell: (q) => num(c(q).in_flight) },
    { label: 'Delayed / retrying', num: true, cell: (q) => num(c(q).delayed + c(q).retrying), narrow: true },
    { label: 'Dead-lettered', num: true, cell: (q) => (c(q).dead_lettered ? badge(num(c(q).dead_lettered), 'bad') : '0') },
    { label: 'Oldest ready', num: true, cell: (q) => (q.stats.ready ? duration(q.stats.oldest_ready_age_seconds) : '–'), narrow: true },
    { label: 'Publish/s', num: true, cell: (q) => rate(lastRates().queues[q.name]?.published.at(-1)) },
    { label: 'Ack/s', num: true, cell: (q) => rate(lastRates().queues[q.name]?.acked.at(-1)), narrow: true },
  ];
}

function createForm() {
  const name = h('input', { required: true, maxlength: 80, placeholder: 'orders (or orders.fifo)', autocomplete: 'off' });
  const vis = h('input', { type: 'number', min: 0, placeholder: '30' });
  const dlq = h('input', { placeholder: 'none', autocomplete: 'off' });
  const maxr = h('input', { type: 'number', min: 1, placeholder: 'none' });
  const createErr = h('div', {});
  return h('form', {
    onsubmit: onSubmit(createErr, async () => {
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
    }),
  }, h('div', { class: 'row' },
    field('Name', name, { wide: true }), field('Visibility timeout (s)', vis), field('Dead-letter queue', dlq),
    field('Max receives', maxr), h('button', { class: 'primary', type: 'submit' }, 'Create queue')), createErr);
}

function serverFacts(srv) {
  return [
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
      : []),
  ];
}

export async function overview() {
  const facts = h('dl', { class: 'facts' }, h('dt', {}, 'Loading…'));
  const nodes = h('div', {});
  const messages = lineChart('Messages per second, all queues, last 10 minutes', MESSAGE_SERIES);
  const deliveries = lineChart('Push deliveries per second, all subscriptions, last 10 minutes', DELIVERY_SERIES,
    { empty: 'No push deliveries in the last 10 minutes. Subscriptions push a queue\'s messages to a URL (docs/webhooks.md).' });
  const depth = lineChart('Messages waiting or in flight, all queues, last 10 minutes', DEPTH_SERIES, { counts: true });
  const filter = h('input', { type: 'search', placeholder: 'name contains…' });
  const err = h('div', {});
  let lastRates = { queues: {} };
  const table = pagedTable({
    label: 'Queues',
    empty: 'No queues yet. Create one below, or publish to any name.',
    columns: queueColumns(() => lastRates),
  });
  const card = (id, title, ...body) => h('section', { class: 'card', 'aria-labelledby': id }, h('h2', { id }, title), ...body);
  clear(main,
    h('h1', {}, 'Overview'),
    h('div', { class: 'grid' },
      card('srv-h', 'Server', facts, nodes),
      card('rate-h', 'Messages per second (all queues)', messages.el)),
    h('div', { class: 'grid' },
      card('push-h', 'Push deliveries per second', deliveries.el),
      card('depth-h', 'Queue depth (all queues)', depth.el)),
    h('section', { class: 'card', 'aria-labelledby': 'q-h' },
      h('div', { class: 'row', style: 'justify-content: space-between; margin: 0 0 8px' },
        h('h2', { id: 'q-h' }, 'Queues'), field('Filter queues', filter)),
      err, table.el),
    card('c-h', 'Create a queue', createForm()));

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
      clear(facts, ...serverFacts(srv));
      clear(nodes, h('h3', {}, `Nodes (${srv.nodes.length})`),
        h('ul', {}, srv.nodes.map((n) => h('li', {}, h('span', { class: 'mono' }, n.address), ` v${n.version}, started `, time(n.started_at), n.this ? ' (this node)' : ''))));
      lastRates = last;
      queues = list.queues;
      show();
      messages.update(totals, totals.total);
      deliveries.update(totals, totals.total);
      depth.update(totals, totals.total);
    } catch (e) { clear(err, errorBox(e)); }
  });
}
