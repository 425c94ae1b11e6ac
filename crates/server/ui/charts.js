// Line charts over GET /v1/rates (uPlot, vendored): message rates, push delivery rates and
// queue depth. Every axis formats all its labels alike (one time format, one number of
// decimals) and time labels keep at least TIME_SPACE pixels apart, so they never overlap, also
// at phone width. The labels drawn are kept in data-x-labels / data-y-labels for tests.
import { h, clear, errorBox, fixed, num, rate } from './views.js';
import { onLeave } from './common.js';

export const MESSAGE_SERIES = [['published', '#1f6feb'], ['received', '#9a6700'], ['acked', '#1a7f37']];
export const DELIVERY_SERIES = [['delivered', '#1a7f37'], ['failed', '#cf222e'], ['throttled', '#9a6700'], ['retried', '#8250df']];
export const DEPTH_SERIES = [['depth', '#1f6feb']];
/** Least room for one time label, in pixels ("12:34:56" is about 55). */
export const TIME_SPACE = 80;

const pad = (n) => String(n).padStart(2, '0');

/** One format for every time label of an axis: HH:MM when every tick is a whole minute. */
export function timeLabels(ticks) {
  const whole = ticks.every((t) => Math.round(t) % 60 === 0);
  return ticks.map((t) => {
    const d = new Date(t * 1000);
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    return whole ? hm : `${hm}:${pad(d.getSeconds())}`;
  });
}

/**
 * One number of decimals for every value label of an axis: as many as the step between ticks
 * has (0.25 → 2), so every label is exact and they all look alike.
 */
export function valueLabels(ticks) {
  const step = ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) : 1;
  const d = Math.min(3, (String(Number(step.toFixed(3))).split('.')[1] || '').length);
  return ticks.map((t) => fixed(t, d));
}

/**
 * A chart of `defs` ([name, color] pairs) from a rates view's series. `counts` charts plot
 * numbers of messages; the others rates per second.
 */
export function lineChart(label, defs, { counts = false, empty } = {}) {
  const box = h('div', { class: 'chart', role: 'img', 'aria-label': label });
  const names = defs.map(([n]) => n);
  const fmt = (v) => (v === null || v === undefined ? '–' : counts ? num(v) : `${rate(v)}/s`);
  let plot = null;
  const size = () => ({ width: Math.max(260, box.clientWidth || 600), height: 200 });
  const onResize = () => plot && plot.setSize(size());
  window.addEventListener('resize', onResize);
  onLeave(() => { window.removeEventListener('resize', onResize); if (plot) plot.destroy(); });
  function update(view, series) {
    const data = [view.t, ...names.map((n) => series[n] || view.t.map(() => null))];
    box.setAttribute('aria-label', `${label}. Latest: ${names.map((n, i) => `${n} ${fmt(data[i + 1].at(-1))}`).join(', ')}`);
    if (plot) { plot.setData(data); return; }
    if (typeof uPlot === 'undefined') { clear(box, errorBox('chart library not loaded')); return; }
    if (!data.slice(1).some((s) => s.some((v) => v !== null))) {
      clear(box, h('p', { class: 'muted' }, empty || 'Figures appear here a few seconds after the server first sees them (one point every 2 s, the last 10 minutes).'));
      return;
    }
    clear(box);
    plot = new uPlot({
      ...size(),
      series: [{ value: (u, t) => (t ? timeLabels([t])[0] : '–') },
        ...defs.map(([n, color]) => ({ label: n, stroke: color, width: 2, spanGaps: false, value: (u, v) => fmt(v) }))],
      axes: [
        { space: TIME_SPACE, values: (u, ticks) => { const l = timeLabels(ticks); box.dataset.xLabels = l.join('|'); return l; } },
        { size: 64, values: (u, ticks) => { const l = valueLabels(ticks); box.dataset.yLabels = l.join('|'); return l; } },
      ],
      scales: { x: { time: true }, y: { range: (u, lo, hi) => [0, Math.max(hi, counts ? 5 : 1)] } },
    }, data, box);
  }
  return { el: box, update };
}
