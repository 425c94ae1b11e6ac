// A queue's page (#/queues/NAME[/TAB]): where its messages are (its own list, its subscriptions'
// copies, its dead letters; for a dead-letter queue, what it holds for whom), charts of its
// rates and depth, Purge and Delete, and tabs whose panels live in queue-messages.js and
// queue-settings.js. The open tab is part of the address, so it can be bookmarked. A queue
// that does not exist gets a plain "not found" page.
import { get, post, del, enc } from './api.js';
import { h, clear, num, duration, badge, errorBox, confirmAction, tabs, slug, unslug } from './views.js';
import { main, POLL_MS, every, onLeave, act, tile, setSubPath, queueLink, stateButtons } from './common.js';
import { lineChart, MESSAGE_SERIES, DELIVERY_SERIES, DEPTH_SERIES } from './charts.js';
import { peekPanel, sendPanel, receivePanel } from './queue-messages.js';
import { deadPanel, subsPanel, configPanel } from './queue-settings.js';

const TABS = ['Messages', 'Send', 'Receive', 'Dead letters', 'Subscriptions', 'Config'];
const PANELS = { Messages: peekPanel, Send: sendPanel, Receive: receivePanel, 'Dead letters': deadPanel, Subscriptions: subsPanel, Config: configPanel };

function notFound(name, e) {
  clear(main,
    h('div', { class: 'breadcrumb' }, h('a', { href: '#/' }, 'Overview'), ' / queue'),
    h('h1', {}, `Queue ${name} not found`),
    errorBox(e),
    h('p', {}, 'It does not exist (or was deleted). Publishing to a name creates its queue. ', h('a', { href: '#/' }, 'Back to the overview')));
}

/** The tiles: where the queue's messages are now, then what it did since the server started. */
function tiles(q) {
  const c = q.counts;
  const s = q.stats;
  const subs = c.subscriptions;
  const held = c.dead_letters_held;
  return [
    tile('Messages', num(c.total), 'total', subs.count ? `${num(subs.ready + subs.in_flight + subs.retrying)} with ${subs.count} subscription${subs.count > 1 ? 's' : ''}` : null),
    tile('Ready', num(c.ready), 'ready'),
    tile('In flight', num(c.in_flight), 'in_flight'),
    tile('Delayed', num(c.delayed), 'delayed'),
    subs.count ? tile('Retrying', num(c.retrying), 'retrying') : null,
    tile('Dead-lettered', num(c.dead_lettered), 'dead_lettered'),
    held ? tile('Dead letters held', num(held.messages), 'dead_letters_held', ['for ', held.sources.map((n, i) => [i ? ', ' : '', queueLink(n)])]) : null,
    tile('Oldest ready', s.ready ? duration(s.oldest_ready_age_seconds) : '–', 'oldest'),
    tile('Published', num(c.published), 'published', 'since start'),
    tile('Acked', num(s.acked), 'acked', 'since start'),
  ];
}

export async function queuePage(name, tabSlug) {
  let info;
  try {
    info = await get(`/v1/queues/${enc(name)}`);
  } catch (e) {
    if (e.status === 404) { notFound(name, e); return; }
    clear(main, h('h1', {}, name), errorBox(e));
    return;
  }
  const tilesEl = h('div', { class: 'tiles' });
  const messages = lineChart(`Messages per second, queue ${name}`, MESSAGE_SERIES);
  const depth = lineChart(`Messages waiting or in flight, queue ${name}`, DEPTH_SERIES, { counts: true });
  const deliveries = lineChart(`Push deliveries per second, queue ${name}`, DELIVERY_SERIES,
    { empty: 'No push deliveries in the last 10 minutes.' });
  const pushCard = h('section', { class: 'card', 'aria-label': 'push deliveries', hidden: !info.counts.subscriptions.count }, h('h2', {}, 'Push deliveries per second'), deliveries.el);
  const err = h('div', {});
  // Pausing consumption: receives (and push deliveries) hand out nothing; publishes go on.
  const pause = h('span', {});
  const showPause = (q) => clear(pause, q.paused ? badge('consumption paused', 'warn') : '',
    stateButtons(`/v1/queues/${enc(name)}`, { paused: q.paused }, `queue ${name}`, () => refresh()));
  showPause(info);
  const panel = h('div', { role: 'tabpanel' });
  // Work started by the current tab, stopped when another tab opens.
  const panelStops = [];
  onLeave(() => { for (const c of panelStops.splice(0)) c(); });
  const ctx = {
    name,
    info: () => info,
    setInfo: (q) => { info = q; },
    refresh: () => refresh(),
    // Received messages outlive tab switches (their receipts are the only way to ack them).
    held: new Map(),
    onPanelLeave: (fn) => panelStops.push(fn),
  };
  clear(main,
    h('div', { class: 'breadcrumb' }, h('a', { href: '#/' }, 'Overview'), ' / queue'),
    h('h1', {}, name),
    err,
    h('div', { class: 'row', style: 'margin: 0 0 12px' },
      h('button', { onclick: (ev) => purge(ev.currentTarget) }, 'Purge…'),
      h('button', { onclick: (ev) => remove(ev.currentTarget) }, 'Delete queue…'), pause),
    tilesEl,
    h('div', { class: 'grid' },
      h('section', { class: 'card', 'aria-label': 'rates' }, h('h2', {}, 'Messages per second'), messages.el),
      h('section', { class: 'card', 'aria-label': 'depth' }, h('h2', {}, 'Depth'), depth.el)),
    pushCard,
    tabs(TABS, (t) => {
      for (const c of panelStops.splice(0)) c();
      setSubPath(`/queues/${enc(name)}${t === TABS[0] ? '' : `/${slug(t)}`}`);
      clear(panel);
      PANELS[t](panel, ctx);
    }, unslug(TABS, tabSlug)),
    panel);

  async function refresh() {
    try {
      const [q, r] = await Promise.all([get(`/v1/queues/${enc(name)}`), get(`/v1/rates?queue=${enc(name)}`)]);
      info = q;
      clear(err);
      clear(tilesEl, tiles(q));
      showPause(q);
      pushCard.hidden = !q.counts.subscriptions.count;
      const series = r.queues[name];
      if (series) {
        messages.update(r, series);
        depth.update(r, series);
        if (!pushCard.hidden) deliveries.update(r, series);
      }
    } catch (e) {
      if (e.status === 404) { notFound(name, e); return; }
      clear(err, errorBox(e));
    }
  }
  every(POLL_MS, refresh);

  async function purge(btn) {
    const n = info ? info.counts.total : '?';
    if (!(await confirmAction(`Purge ${name}?`, `This deletes every message in ${name} (about ${num(n)}), its subscriptions' undelivered copies included. It cannot be undone.`, 'Purge'))) return;
    await act(btn, () => post(`/v1/queues/${enc(name)}/purge`), (r) => `Purged ${num(r.purged)} messages`);
    refresh();
  }
  async function remove(btn) {
    if (!(await confirmAction(`Delete queue ${name}?`, 'The queue, its messages and its subscriptions are deleted. It cannot be undone.', 'Delete queue'))) return;
    const ok = await act(btn, () => del(`/v1/queues/${enc(name)}`), `Queue ${name} deleted`);
    if (ok !== undefined) location.hash = '#/';
  }
}
