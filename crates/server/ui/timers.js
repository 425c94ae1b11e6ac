// Timers and cron schedules (#/timers[/STATUS]): one-shot timers and the firings of cron
// schedules are listed apart, by status (the status is part of the address); the schedules
// with their next and last firing; a form to call a URL later. A firing is told from a timer
// by its id: firings have name-derived UUIDv8 ids (docs/timers.md), timers UUIDv7 ones.
import { get, post, del, enc } from './api.js';
import { h, clear, field, num, time, shortId, badge, errorBox, notice, confirmAction, pagedTable, tabs } from './views.js';
import { main, POLL_MS, every, act, tile, setSubPath, onSubmit, stateButtons } from './common.js';
import { attemptsList } from './subscriptions.js';

const STATUSES = ['pending', 'failed', 'succeeded', 'cancelled'];

/** Is this timer a cron schedule's firing? */
export const isFiring = (t) => t.id.charAt(14) === '8';
/** The schedule a firing belongs to, as its calls named it (`sluice-schedule` header). */
const scheduleOf = (t) => {
  for (const a of t.attempts) {
    const m = /^sluice-schedule: (.+)$/m.exec(a.request || '');
    if (m) return m[1];
  }
  return null;
};

function timerTable(label, empty, cancel, extra) {
  return pagedTable({
    label, key: (t) => t.id, pageSize: 25, empty,
    detail: (t) => (t.attempts.length ? attemptsList(t.attempts) : h('p', { class: 'muted' }, 'No attempts yet.')),
    columns: [
      { label: label === 'Cron firings' ? 'Firing' : 'Timer', cell: (t) => h('span', { class: 'mono' }, shortId(t.id)) },
      ...extra,
      { label: 'Status', cell: (t) => badge(t.status, t.status === 'failed' ? 'bad' : t.status === 'succeeded' ? 'ok' : t.status === 'retrying' ? 'warn' : '') },
      { label: 'Due', cell: (t) => [time(t.due_at), t.status === 'scheduled' && t.time_left <= 60 ? [' ', badge('due soon', 'warn')] : null] },
      { label: 'Attempts', num: true, cell: (t) => num(t.attempts.length) },
      { label: 'Last result', cell: (t) => { const a = t.attempts.at(-1); return a ? (a.status ? `HTTP ${a.status}` : a.error || a.outcome) : '–'; } },
      { label: '', cell: (t) => (['scheduled', 'retrying'].includes(t.status) ? h('button', { class: 'small', 'aria-label': `Cancel timer ${t.id}`, onclick: (ev) => cancel(ev.currentTarget, t) }, 'Cancel') : '') },
    ],
  });
}

function createForm(done) {
  const url = h('input', { type: 'url', required: true, placeholder: 'https://example.com/hook' });
  const delay = h('input', { type: 'number', min: 0, value: 600 });
  const method = h('select', {}, ['POST', 'PUT', 'PATCH', 'GET', 'DELETE'].map((m) => h('option', {}, m)));
  const tbody = h('textarea', { rows: 3, placeholder: 'optional body' });
  const cerr = h('div', {});
  return h('form', {
    onsubmit: onSubmit(cerr, async () => {
      const b = { url: url.value, method: method.value, delay_seconds: Number(delay.value || 0) };
      if (tbody.value) b.body = tbody.value;
      const t = await post('/v1/timers', b);
      notice(`Timer ${t.id} scheduled`);
      done();
    }),
  }, h('div', { class: 'row' }, field('URL to call', url, { wide: true }), field('Method', method), field('In (seconds)', delay)),
  field('Body', tbody, { wide: true }), h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Schedule timer')), cerr);
}

export async function timersPage(statusSlug) {
  const counts = h('div', { class: 'tiles' });
  const err = h('div', {});
  let status = STATUSES.includes(statusSlug) ? statusSlug : 'pending';
  async function cancel(btn, t) {
    if (!(await confirmAction('Cancel this timer?', `Timer ${t.id} will not fire.`, 'Cancel timer'))) return;
    const r = await act(btn, () => del(`/v1/timers/${enc(t.id)}`), 'Timer cancelled');
    if (r) load();
  }
  const timers = timerTable('Timers', 'No one-shot timers here.', cancel, []);
  const firings = timerTable('Cron firings', 'No cron firings here.', cancel,
    [{ label: 'Schedule', cell: (t) => scheduleOf(t) || h('span', { class: 'muted' }, 'not called yet') }]);
  async function dropSchedule(btn, n) {
    if (!(await confirmAction(`Delete schedule ${n}?`, 'It will not fire again.', 'Delete schedule'))) return;
    if (await act(btn, () => del(`/v1/schedules/${enc(n)}`), 'Schedule deleted') !== undefined) load();
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
      { label: 'Catch-up', cell: (x) => x.catch_up + (x.catch_up_window_seconds ? ` (${x.catch_up_window_seconds} s)` : ''), narrow: true },
      { label: 'State', cell: (x) => [x.paused ? badge('paused', 'warn') : badge('active', 'ok'),
        stateButtons(`/v1/schedules/${enc(x.name)}`, { paused: x.paused }, `schedule ${x.name}`, () => load())] },
      { label: '', cell: (x) => h('button', { class: 'small', 'aria-label': `Delete schedule ${x.name}`, onclick: (ev) => dropSchedule(ev.currentTarget, x.name) }, 'Delete') },
    ],
  });
  async function load() {
    const asked = status;
    try {
      const r = await get(`/v1/timers?status=${asked}&limit=1000`);
      if (asked !== status) return; // the user switched tabs meanwhile
      clear(err);
      const oneShot = r.timers.filter((t) => !isFiring(t));
      clear(counts, tile('Pending', num(r.pending), 'pending', 'timers and firings'), tile('Finished', num(r.finished), 'finished'),
        tile('Due within a minute', status === 'pending' ? num(oneShot.filter((t) => t.time_left <= 60).length) : '–', 'due_soon', 'one-shot timers'));
      timers.set(oneShot);
      firings.set(r.timers.filter(isFiring));
      st.set((await get('/v1/schedules')).schedules);
    } catch (e) { clear(err, errorBox(e)); }
  }
  clear(main, h('h1', {}, 'Timers and schedules'), err, counts,
    h('section', { class: 'card' },
      tabs(STATUSES, (s) => { status = s; setSubPath(s === 'pending' ? '/timers' : `/timers/${s}`); timers.set([]); firings.set([]); load(); }, status),
      h('h2', {}, 'One-shot timers'), timers.el,
      h('h2', {}, 'Cron firings'), h('p', { class: 'muted' }, 'Each firing of a cron schedule is a call of its own, with its own attempts.'), firings.el),
    h('section', { class: 'card' }, h('h2', {}, 'Cron schedules'), st.el),
    h('section', { class: 'card' }, h('h2', {}, 'Call a URL later'), createForm(load)));
  every(POLL_MS * 2, load);
}
