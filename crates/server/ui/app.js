// The sluice dashboard: a hash-routed page over the JSON API (/v1/...). This file is the
// router, the API-key dialog and the connection indicator; each page is a module of its own
// (overview.js, queue.js with queue-messages.js and queue-settings.js, subscriptions.js,
// timers.js, ingest.js) that renders into <main>, polls what it shows every 2 s while it is
// open, and stops when the user leaves. Addresses like #/queues/orders/config bookmark a tab.
import { onAuthNeeded, onConnection, setToken, token } from './api.js';
import { h, clear, notice } from './views.js';
import { main, leaveView } from './common.js';
import { overview } from './overview.js';
import { queuePage } from './queue.js';
import { subscriptionsPage, subscriptionPage } from './subscriptions.js';
import { timersPage } from './timers.js';
import { ingestPage } from './ingest.js';

const routes = [
  [/^\/?$/, 'overview', overview],
  [/^\/queues\/([^/]+)(?:\/([a-z-]+))?$/, 'overview', queuePage],
  [/^\/subscriptions$/, 'subscriptions', subscriptionsPage],
  [/^\/subscriptions\/([^/]+)\/([^/]+)$/, 'subscriptions', subscriptionPage],
  [/^\/timers(?:\/([a-z]+))?$/, 'timers', timersPage],
  [/^\/ingest$/, 'ingest', ingestPage],
];

let firstRender = true;
function render() {
  leaveView();
  const path = location.hash.replace(/^#/, '') || '/';
  for (const [re, nav, view] of routes) {
    const m = path.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll('[data-nav]')) {
      if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    document.title = `${m[1] ? decodeURIComponent(m[1]) + ' · ' : ''}sluice`;
    view(...m.slice(1).map((p) => (p === undefined ? p : decodeURIComponent(p))));
    if (!firstRender) main.focus();
    firstRender = false;
    return;
  }
  clear(main, h('h1', {}, 'Not found'), h('p', {}, 'No such page. ', h('a', { href: '#/' }, 'Go to the overview.')));
}

const tokenDialog = document.getElementById('token-dialog');
const tokenOpen = document.getElementById('token-open');
let tokenDismissed = false;
const showTokenButton = () => { tokenOpen.hidden = !(token() || tokenDismissed); };
tokenOpen.addEventListener('click', () => { tokenDismissed = false; tokenDialog.showModal(); document.getElementById('token-input').focus(); });
document.getElementById('token-cancel').addEventListener('click', () => { tokenDismissed = true; tokenDialog.close(); showTokenButton(); });
tokenDialog.addEventListener('cancel', () => { tokenDismissed = true; setTimeout(showTokenButton); });
document.getElementById('token-forget').addEventListener('click', () => {
  setToken(null);
  document.getElementById('token-input').value = '';
  tokenDialog.close();
  showTokenButton();
  notice('API key forgotten');
  render();
});
showTokenButton();
onAuthNeeded((msg) => {
  // Once dismissed, the page does not nag on every poll; the header button reopens it.
  if (tokenDialog.open || tokenDismissed) { showTokenButton(); return; }
  document.getElementById('token-reason').textContent = token()
    ? `The server refused this key: ${msg}`
    : `This server requires an API key: ${msg}`;
  tokenDialog.showModal();
  document.getElementById('token-input').focus();
});
document.getElementById('token-form').addEventListener('submit', () => {
  setToken(document.getElementById('token-input').value.trim());
  tokenDismissed = false;
  showTokenButton();
  render();
});

const conn = document.getElementById('conn');
onConnection((ok) => {
  const text = ok ? '● live' : '○ server unreachable, retrying';
  if (conn.textContent !== text) conn.textContent = text;
});

window.addEventListener('hashchange', render);
render();
