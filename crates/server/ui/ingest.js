// File ingestion (#/ingest): watched folders, files still settling, and every ingested file
// with its state, a progress bar and its row counters.
import { get } from './api.js';
import { h, clear, num, bytes, time, badge, errorBox, pagedTable } from './views.js';
import { main, POLL_MS, every, queueLink } from './common.js';

export async function ingestPage() {
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
