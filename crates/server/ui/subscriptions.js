// The push subscription pages: every subscription (#/subscriptions) and one
// (#/subscriptions/QUEUE/NAME) with its counters, a chart of its delivery rates, its endpoint
// settings in units, its state (paused, disabled, circuit open), recent deliveries with each
// attempt's request and response (from the durable delivery history), its dead-lettered
// deliveries with Resend, and replay (replay.js).
import { get, post, enc } from './api.js';
import { h, clear, num, rate, time, shortId, badge, errorBox, notice, pagedTable } from './views.js';
import { main, POLL_MS, every, act, tile, messageDetail, queueLink, defaultDlq, inUnits, stateButtons } from './common.js';
import { lineChart, DELIVERY_SERIES } from './charts.js';
import { replayCard, resetCountersButton } from './replay.js';

function successRate(s) {
  const done = s.stats.delivered + s.stats.failed;
  return done ? `${((100 * s.stats.delivered) / done).toFixed(1)}%` : '–';
}

function rateLimit(s) {
  if (s.stats.current_rate_limit) return `${rate(s.stats.current_rate_limit)}/s (adaptive, after 429s)`;
  if (s.rate_limit_per_second) return `${rate(s.rate_limit_per_second)}/s (configured)`;
  return 'none';
}

// What holds a subscription back, if anything: disabled, paused, or its circuit open.
function stateBadge(s) {
  if (s.state === 'disabled') return badge('disabled', 'bad');
  if (s.state === 'paused') return badge('paused', 'warn');
  const c = s.stats.circuit;
  if (c && c.state !== 'closed') return badge(`circuit ${c.state.replace('_', '-')}`, 'bad');
  return 'active';
}

export function subscriptionTable(subs) {
  const t = pagedTable({
    label: 'Subscriptions',
    empty: 'No subscriptions yet. A subscription pushes a queue\'s messages to a URL: PUT /v1/queues/QUEUE/subscriptions/NAME (docs/webhooks.md).',
    columns: [
      { label: 'Subscription', cell: (s) => h('a', { href: `#/subscriptions/${enc(s.queue)}/${enc(s.name)}` }, `${s.queue} → ${s.name}`) },
      { label: 'Endpoint', cell: (s) => h('span', { class: 'mono' }, `${s.method} ${s.url}`), narrow: true },
      { label: 'State', cell: stateBadge },
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

export async function subscriptionsPage() {
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

export function attemptsList(attempts) {
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

export async function subscriptionPage(queue, name) {
  const facts = h('div', {});
  const err = h('div', {});
  const failing = h('input', { type: 'checkbox' });
  const attemptsTable = pagedTable({
    label: 'Recent deliveries', key: (m) => m.message_id, pageSize: 20,
    empty: 'No attempts recorded yet. The history keeps each message\'s first and latest attempts, across restarts, for the queue\'s retention.',
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
  const chart = lineChart(`Push deliveries per second, ${queue} → ${name}`, DELIVERY_SERIES,
    { empty: 'No deliveries in the last 10 minutes.' });
  clear(main,
    h('div', { class: 'breadcrumb' }, h('a', { href: '#/subscriptions' }, 'Subscriptions'), ' / ', queueLink(queue)),
    h('h1', {}, `${queue} → ${name}`), err, facts,
    h('section', { class: 'card', 'aria-label': 'delivery rates' }, h('h2', {}, 'Deliveries per second'), chart.el),
    h('section', { class: 'card', 'aria-labelledby': 'att-h' }, h('h2', { id: 'att-h' }, 'Recent deliveries and their attempts'),
      h('div', { class: 'row', style: 'margin: 0 0 8px' }, h('label', {}, failing, ' only messages whose last attempt failed')), attemptsTable.el),
    h('section', { class: 'card', 'aria-labelledby': 'dl-h' }, h('h2', { id: 'dl-h' }, 'Dead-lettered deliveries'), dead),
    replayCard(queue, name, () => loadDead().catch((e) => clear(dead, errorBox(e)))));
  let refresh = () => {};
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
  const counters = h('p', { class: 'muted row' }, 'Counted since the subscription was created or its counters were reset; they survive restarts. ',
    resetCountersButton(queue, name, () => refresh()));
  every(POLL_MS, refresh = async () => {
    try {
      const [s, r] = await Promise.all([get(`/v1/queues/${enc(queue)}/subscriptions/${enc(name)}`), get(`/v1/rates?queue=${enc(queue)}`)]);
      clear(err);
      const series = r.subscriptions[`${queue}/${name}`];
      if (series) chart.update(r, series);
      clear(facts, h('div', { class: 'tiles' },
        tile('Delivered', num(s.stats.delivered), 'delivered'), tile('Failed', num(s.stats.failed), 'failed'),
        tile('Retried', num(s.stats.retried), 'retried'), tile('Throttled (429)', num(s.stats.throttled), 'throttled'),
        tile('Success rate', successRate(s), 'success'),
        tile('Backlog', num(s.stats.ready + s.stats.delayed + s.stats.in_flight), 'backlog'),
        tile('Rate limit', rateLimit(s), 'rate')), counters,
      h('section', { class: 'card' }, h('h2', {}, 'Endpoint'), h('dl', { class: 'facts' },
        h('dt', {}, 'State'), h('dd', {}, stateBadge(s), s.disabled_reason ? ` ${s.disabled_reason}` : '',
          s.stats.circuit.next_probe_at ? h('span', {}, ' (next probe ', time(s.stats.circuit.next_probe_at), ')') : '',
          stateButtons(`/v1/queues/${enc(queue)}/subscriptions/${enc(name)}`,
            { paused: s.state === 'paused' || !!s.paused_at, disabled: s.state === 'disabled' }, `subscription ${name}`, () => refresh())),
        h('dt', {}, 'Request'), h('dd', { class: 'mono' }, `${s.method} ${s.url}`),
        h('dt', {}, 'Timeout'), h('dd', { 'data-config': 'timeout_seconds' }, inUnits('timeout_seconds', s.timeout_seconds)),
        h('dt', {}, 'Attempts'), h('dd', {}, `up to ${s.max_attempts}, backoff ${inUnits('initial_seconds', s.backoff.initial_seconds)} × ${s.backoff.multiplier} up to ${inUnits('max_seconds', s.backoff.max_seconds)}${s.backoff.jitter ? ', jitter' : ''}`),
        h('dt', {}, 'Concurrency'), h('dd', {}, String(s.concurrency)),
        h('dt', {}, 'Batch'), h('dd', {}, s.batch.max_messages > 1 ? `${s.batch.max_messages} messages or ${inUnits('max_wait_ms', s.batch.max_wait_ms)}` : 'one message per request'),
        h('dt', {}, 'Signing secret'), h('dd', { class: 'mono' }, s.signing_secret || 'none',
          s.signing_public_key ? ` (public key ${s.signing_public_key})` : '',
          s.rotation ? h('span', { 'data-config': 'rotation' }, ` · previous ${s.rotation.previous_secret} signs too until `, time(s.rotation.expires_at)) : ''),
        h('dt', {}, 'Headers'), h('dd', { class: 'mono' }, Object.keys(s.headers).join(', ') || 'none'),
        h('dt', {}, 'Takes'), h('dd', { class: 'mono', 'data-config': 'filter' },
          [s.event_types.length ? `event types ${s.event_types.join(', ')}` : '', s.filter ? `filter ${JSON.stringify(s.filter)}` : '']
            .filter(Boolean).join(' and ') || 'every message'),
        h('dt', {}, 'Circuit breaker'), h('dd', {}, `opens after ${s.circuit_breaker.failures} failures in a row; probes after ${inUnits('initial_seconds', s.circuit_breaker.probe_initial_seconds)}, up to every ${inUnits('max_seconds', s.circuit_breaker.probe_max_seconds)}`),
        h('dt', {}, 'Disabled after'), h('dd', {}, `${inUnits('disable_after_seconds', s.disable_after_seconds)} failing without a success`),
        h('dt', {}, 'Failure callback'), h('dd', { class: 'mono' }, s.failure_callback || 'none'))));
      await loadAttempts();
    } catch (e) { clear(err, errorBox(e)); }
  });
  loadDead().catch((e) => clear(dead, errorBox(e)));
}
