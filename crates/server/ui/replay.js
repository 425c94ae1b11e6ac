// A subscription's replay and counter reset, the way webhook users recover from an outage:
// send a time window's dead-lettered (or, where the queue keeps them, delivered) messages
// again (POST …/replay), following the task's progress (GET …/replay/{task}); and set the
// subscription's durable counters back to zero after confirmation (POST …/stats/reset).
import { get, post, enc } from './api.js';
import { h, clear, num, field, errorBox, notice, confirmAction, duration } from './views.js';
import { onSubmit, onLeave } from './common.js';

const TASK_POLL_MS = 500;

/** `ms` as the value of an `<input type="datetime-local">`, in local time. */
function localValue(ms) {
  const d = new Date(ms);
  return new Date(ms - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
}

/** The card: a window (since, until), which messages, and the task's progress; `done` runs
 * when a replay has finished (the page reloads what it moved). */
export function replayCard(queue, name, done = () => {}) {
  const base = `/v1/queues/${enc(queue)}/subscriptions/${enc(name)}`;
  const since = h('input', { type: 'datetime-local', required: true, value: localValue(Date.now() - 3_600_000) });
  const until = h('input', { type: 'datetime-local' });
  const outcome = h('select', {},
    h('option', { value: 'failed' }, 'dead-lettered (failed)'),
    h('option', { value: 'delivered' }, 'delivered'),
    h('option', { value: 'all' }, 'both'));
  const err = h('div', {});
  const progress = h('p', { role: 'status', 'aria-label': 'replay progress' });
  const kept = h('p', { class: 'muted' });
  let stopped = false;
  onLeave(() => { stopped = true; });
  get(`/v1/queues/${enc(queue)}`).then((q) => {
    const s = q.config.retain_delivered_seconds || 0;
    clear(kept, s
      ? `Delivered messages are kept for ${duration(s)} after their delivery (retain_delivered_seconds).`
      : 'This queue keeps no delivered messages (retain_delivered_seconds is 0): only dead-lettered ones can be replayed.');
  }).catch(() => {});
  async function follow(task) {
    while (!stopped) {
      clear(progress, `Replay ${task.state}: ${num(task.replayed)} of ${num(task.total)} sent again${task.error ? ` (${task.error})` : ''}.`);
      if (task.state !== 'running') { done(); return; }
      await new Promise((r) => setTimeout(r, TASK_POLL_MS));
      task = await get(`${base}/replay/${enc(task.id)}`);
    }
  }
  const form = h('form', { class: 'row', 'aria-label': 'replay' },
    field('Since', since), field('Until (empty: now)', until), field('Messages', outcome),
    h('button', { type: 'submit' }, 'Replay'));
  form.addEventListener('submit', onSubmit(err, async () => {
    const body = { since: new Date(since.value).toISOString(), outcome: outcome.value };
    if (until.value) body.until = new Date(until.value).toISOString();
    const task = await post(`${base}/replay`, body);
    notice(`Replay started: ${num(task.total)} found`);
    follow(task).catch((e) => clear(err, errorBox(e)));
  }));
  return h('section', { class: 'card', 'aria-labelledby': 'replay-h' },
    h('h2', { id: 'replay-h' }, 'Replay since…'),
    h('p', { class: 'muted' }, 'Send this window\'s messages to this subscription again, under their original ids (the same webhook-id), with fresh attempts.'),
    kept, form, err, progress);
}

/** A button that resets the subscription's counters after confirmation; `done` reloads. */
export function resetCountersButton(queue, name, done) {
  return h('button', {
    class: 'small',
    onclick: async (ev) => {
      const btn = ev.currentTarget;
      const ok = await confirmAction('Reset the counters?',
        `Delivered, retried, throttled, failed and filtered of ${queue} → ${name} go back to 0. Messages and their history are not touched.`,
        'Reset counters');
      if (!ok) return;
      btn.disabled = true;
      try {
        await post(`/v1/queues/${enc(queue)}/subscriptions/${enc(name)}/stats/reset`, {});
        notice('Counters reset');
        done();
      } catch (e) { notice(String(e), 'error'); } finally { btn.disabled = false; }
    },
  }, 'Reset counters');
}
