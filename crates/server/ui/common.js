// What every page shares: the view's lifetime (polls and cleanups that stop when the user
// leaves), actions from buttons, tiles, message details and links, and small input parsers.
import { enc, post } from './api.js';
import { h, clear, num, time, attrsTable, badge, errorBox, notice, pretty, duration, bytes } from './views.js';

export const main = document.getElementById('view');
export const POLL_MS = 2000;
const cleanups = [];

/** Stop everything the current view started (the router calls this on every page change). */
export function leaveView() {
  for (const c of cleanups.splice(0)) c();
}

/** Run fn when the current view is left. */
export const onLeave = (fn) => cleanups.push(fn);

/** Run fn now and every ms while the current view is open. */
export function every(ms, fn) {
  let stopped = false;
  let timer = null;
  const loop = async () => {
    if (stopped) return;
    try { await fn(); } catch (e) { console.warn(e); }
    if (!stopped) timer = setTimeout(loop, ms);
  };
  loop();
  onLeave(() => { stopped = true; clearTimeout(timer); });
}

/** Run an action from a button: disable it meanwhile, show the error or the success text. */
export async function act(button, fn, success) {
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

/**
 * The buttons that pause, resume (and, for a disabled subscription, enable) what lives at
 * `path` (`POST path/pause|resume|enable`); `then` runs after a change (to refresh the page).
 * `what` names it in the buttons' accessible names: "Pause subscription hook".
 */
export function stateButtons(path, { paused, disabled }, what, then) {
  const button = (verb, label, done) => h('button', {
    class: 'small', 'aria-label': `${label} ${what}`,
    onclick: async (ev) => { if (await act(ev.currentTarget, () => post(`${path}/${verb}`, {}), done) !== undefined) then(); },
  }, label);
  const out = [];
  if (disabled) out.push(button('enable', 'Enable', 'Enabled: deliveries start again'));
  out.push(paused ? button('resume', 'Resume', 'Resumed') : button('pause', 'Pause', 'Paused'));
  return h('span', { class: 'row', style: 'display: inline-flex; margin-left: 8px' }, out);
}

/**
 * A form's submit handler: the page does not reload, the submit button is disabled while `fn`
 * runs, and an error (the API's, or a field's) is shown in `errEl`.
 */
export function onSubmit(errEl, fn) {
  return async (ev) => {
    ev.preventDefault();
    const btn = ev.currentTarget.querySelector('button[type=submit]');
    clear(errEl);
    if (btn) btn.disabled = true;
    try { await fn(); } catch (e) { clear(errEl, errorBox(e)); } finally { if (btn) btn.disabled = false; }
  };
}

/** Keep the open view's sub-page (a tab) in the address without reloading the view. */
export function setSubPath(path) {
  const want = `#${path}`;
  if (location.hash !== want) history.replaceState(null, '', want);
}

export function tile(label, value, key, note) {
  return h('div', { class: 'tile' }, h('div', { class: 'v', 'data-stat': key }, value), h('div', { class: 'k' }, label),
    note ? h('div', { class: 'note' }, note) : null);
}

export const queueLink = (name) => h('a', { href: `#/queues/${enc(name)}` }, name);
export const stateBadge = (s) => badge(s, s === 'ready' ? 'ok' : s === 'in_flight' ? 'warn' : '');
/** Where a dead letter came from: the store's own dead letters, or push ones (attributes). */
export const deadSource = (m) => m.dead_letter_source || (m.attributes || {})['sluice-source-queue'] || null;
export const defaultDlq = (q) => (q.endsWith('.fifo') ? `${q.slice(0, -5)}-dlq.fifo` : `${q}-dlq`);

export function messageFacts(m) {
  return h('dl', { class: 'facts' },
    h('dt', {}, 'Id'), h('dd', { class: 'mono' }, m.id),
    h('dt', {}, 'State'), h('dd', {}, m.state),
    h('dt', {}, 'Receive count'), h('dd', {}, num(m.receive_count)),
    h('dt', {}, 'Enqueued'), h('dd', {}, time(m.enqueued_at)),
    m.first_received_at && [h('dt', {}, 'First received'), h('dd', {}, time(m.first_received_at))],
    h('dt', {}, 'Visible'), h('dd', {}, time(m.visible_at)),
    m.priority !== undefined && [h('dt', {}, 'Priority'), h('dd', {}, String(m.priority))],
    m.expires_at && [h('dt', {}, 'Expires'), h('dd', {}, time(m.expires_at))],
    m.message_group_id && [h('dt', {}, 'Group'), h('dd', { class: 'mono' }, m.message_group_id)],
    m.deduplication_id && [h('dt', {}, 'Dedup id'), h('dd', { class: 'mono' }, m.deduplication_id)],
    m.dead_letter_source && [h('dt', {}, 'Dead letter of'), h('dd', {}, queueLink(m.dead_letter_source))]);
}

export function messageDetail(m, extra) {
  return h('div', {}, messageFacts(m), h('h3', {}, 'Body'), h('pre', { 'aria-label': 'message body' }, pretty(m.body, m.body_base64)),
    h('h3', {}, 'Attributes'), attrsTable(m.attributes), extra || null);
}

export function parseAttrs(text) {
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

export function intOrNull(input, name) {
  const v = input.value.trim();
  if (v === '') return null;
  if (!/^\d+$/.test(v)) throw new Error(`${name}: "${v}" is not a whole number ≥ 0`);
  return Number(v);
}

/** A setting in units people read: `4 days (345,600 s)`, `256 KiB (262,144 bytes)`. */
export function inUnits(key, v) {
  if (v === null || v === undefined) return 'none';
  if (key.endsWith('_seconds')) return v >= 60 ? `${duration(v)} (${num(v)} s)` : `${num(v)} s`;
  if (key.endsWith('_ms')) return v >= 1000 ? `${duration(v / 1000)} (${num(v)} ms)` : `${num(v)} ms`;
  if (key.endsWith('_bytes')) return v >= 1024 ? `${bytes(v)} (${num(v)} bytes)` : `${num(v)} bytes`;
  return typeof v === 'number' ? num(v) : String(v);
}
