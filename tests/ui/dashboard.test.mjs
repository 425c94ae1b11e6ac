// End-to-end tests of the dashboard in Debian's headless Chromium (/usr/bin/chromium) driven by
// playwright-core, against a live sluice started by run.sh ($SLUICE_URL). A local webhook
// receiver (started here) gives a subscription real attempts. Screenshots of the main pages go
// to $SLUICE_UI_ARTIFACTS (default target/test-output/ui).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import http from 'node:http';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { BASE, WAIT, api, launch, receiver, shot as shotOf, expectStat as statOf, tab as tabOf } from './setup.mjs';

let browser;
let page;
let rx;
let receiverUrl;
let failing = true;
let received = [];
let pageErrors = [];
let foreign = [];
const SHOTS = process.env.SLUICE_UI_ARTIFACTS || path.resolve('../../target/test-output/ui');
const shot = (name) => shotOf(page, name);
const expectStat = (key, value) => statOf(page, key, value);
const tab = (name) => tabOf(page, name);
/** Wait until no notice says `text` (an earlier one would make the next wait for it ambiguous). */
const noNotice = async (text) => {
  for (let i = 0; i < 200 && (await page.getByText(text).count()) > 0; i++) await new Promise((r) => setTimeout(r, 100));
};

before(async () => {
  rx = await receiver((body) => (failing && body.includes('please-fail') ? 503 : 200));
  received = rx.received;
  receiverUrl = rx.url('/hook');
  ({ browser, page, pageErrors, foreign } = await launch());
});

after(async () => {
  if (browser) await browser.close();
  if (rx) rx.server.close();
});

describe('dashboard', () => {
  it('is served by the binary at / and /ui/ with its assets, offline', async () => {
    for (const p of ['/', '/ui/', '/ui/app.js', '/ui/vendor/uPlot.iife.min.js', '/ui/style.css']) {
      const r = await fetch(BASE + p);
      assert.equal(r.status, 200, p);
    }
    const html = await (await fetch(BASE + '/')).text();
    assert.doesNotMatch(html, /https?:\/\//, 'the page must not load anything from the network');
    const missing = await fetch(BASE + '/ui/nope.js');
    assert.equal(missing.status, 404);
    assert.equal((await missing.json()).error.code, 'not_found');
  });

  it('overview shows server facts, the rates chart and the queues', async () => {
    await api('PUT', '/v1/queues/already-there', {});
    await page.goto(BASE + '/');
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await page.getByText('Uptime').waitFor(WAIT);
    await page.locator('dd', { hasText: 'embedded' }).first().waitFor(WAIT);
    await page.getByRole('link', { name: 'already-there' }).waitFor(WAIT);
    await page.locator('.uplot').first().waitFor(WAIT);
    await page.getByText('(this node)').waitFor(WAIT);
    await page.locator('dd', { hasText: 'open of 1,000' }).waitFor(WAIT);
  });

  it('creates a queue, sends a message from the page and sees the counts change', async () => {
    // An existing name is refused rather than silently reconfigured.
    await page.getByLabel('Name').fill('already-there');
    await page.getByLabel('Max receives').fill('7');
    await page.getByRole('button', { name: 'Create queue' }).click();
    await page.getByRole('alert').filter({ hasText: 'already exists' }).waitFor(WAIT);
    assert.equal((await api('GET', '/v1/queues/already-there')).config.max_receives, null);
    await page.getByLabel('Name').fill('orders');
    await page.getByLabel('Dead-letter queue').fill('orders-dlq');
    await page.getByLabel('Max receives').fill('1');
    await page.getByRole('button', { name: 'Create queue' }).click();
    await page.getByRole('heading', { name: 'orders', exact: true }).waitFor(WAIT);
    await expectStat('ready', '0');
    await tab('Send');
    await page.getByLabel('Body').fill('{"order":1,"items":["tea"]}');
    await page.getByLabel('Attributes').fill('source=dashboard-test');
    await page.getByRole('button', { name: 'Send message' }).click();
    await page.getByText(/^Sent message /).waitFor(WAIT);
    await expectStat('ready', '1');
    await expectStat('published', '1');
    const peek = await api('GET', '/v1/queues/orders/messages');
    assert.equal(peek.messages[0].attributes.source, 'dashboard-test');
  });

  it('peeks with the JSON body pretty-printed', async () => {
    await tab('Messages');
    await page.locator('main button[aria-expanded="false"]').first().click();
    const body = page.getByLabel('message body');
    await body.waitFor(WAIT);
    assert.match(await body.textContent(), /\{\n {2}"order": 1,\n {2}"items": \[/);
    await page.getByText('dashboard-test').waitFor();
    await shot('queue-messages');
  });

  it('receives with a visibility timeout, then acks', async () => {
    await tab('Receive');
    await page.getByLabel('Visibility timeout (s)').fill('120');
    await page.getByRole('button', { name: 'Receive', exact: true }).click();
    const card = page.getByRole('article', { name: /received message/ });
    await card.waitFor(WAIT);
    await card.getByText(/lease ends in/).waitFor();
    await expectStat('in_flight', '1');
    // The nack delay typed survives the lease countdown's updates, and the card survives a
    // trip to another tab.
    await card.getByLabel('Nack delay (s)').fill('5');
    await page.waitForTimeout(1500);
    assert.equal(await card.getByLabel('Nack delay (s)').inputValue(), '5');
    await tab('Send');
    await tab('Receive');
    await card.waitFor(WAIT);
    await shot('queue-receive');
    await card.getByRole('button', { name: 'Ack', exact: true }).click();
    await card.waitFor({ state: 'detached', ...WAIT });
    await expectStat('in_flight', '0');
    await expectStat('acked', '1');
    await expectStat('ready', '0');
  });

  it('nacks a message into the dead-letter queue, lists it and redrives it', async () => {
    await api('POST', '/v1/queues/orders/messages', { body: 'will be dead-lettered' });
    await expectStat('ready', '1');
    await page.getByRole('button', { name: 'Receive', exact: true }).click();
    const card = page.getByRole('article', { name: /received message/ });
    await card.waitFor(WAIT);
    await card.getByRole('button', { name: 'Nack', exact: true }).click();
    await card.waitFor({ state: 'detached', ...WAIT });
    await expectStat('dead_lettered', '1');
    await tab('Dead letters');
    const row = page.getByRole('row', { name: /will be dead-lettered/ });
    await row.waitFor(WAIT);
    await shot('queue-dead-letters');
    await row.getByRole('button', { name: 'Redrive' }).click();
    await expectStat('dead_lettered', '0');
    await expectStat('ready', '1');
    const peek = await api('GET', '/v1/queues/orders/messages');
    assert.equal(peek.messages[0].body, 'will be dead-lettered');
    assert.equal(peek.messages[0].receive_count, 0);
  });

  it('shows API errors plainly (a config value past its limit) and keeps the stored config', async () => {
    await tab('Config');
    await page.getByLabel('Visibility timeout (s)').fill('99999999');
    await page.getByRole('button', { name: 'Save configuration' }).click();
    const alert = page.getByRole('alert').filter({ hasText: 'visibility_timeout_seconds' });
    await alert.waitFor(WAIT);
    assert.match(await alert.textContent(), /^400 /);
    assert.equal((await api('GET', '/v1/queues/orders')).config.visibility_timeout_seconds, 30);
    await page.getByLabel('Visibility timeout (s)').fill('45');
    await page.getByRole('button', { name: 'Save configuration' }).click();
    await page.getByText('Configuration saved').waitFor(WAIT);
    assert.equal((await api('GET', '/v1/queues/orders')).config.visibility_timeout_seconds, 45);
    await shot('queue-config');
  });

  it('purges only after confirmation', async () => {
    await page.getByRole('button', { name: 'Purge…' }).click();
    const dialog = page.getByRole('dialog', { name: 'Purge orders?' });
    await dialog.waitFor();
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    assert.equal((await api('GET', '/v1/queues/orders')).stats.ready, 1);
    await page.getByRole('button', { name: 'Purge…' }).click();
    await dialog.getByRole('button', { name: 'Purge' }).click();
    await page.getByText('Purged 1 messages').waitFor(WAIT);
    await expectStat('ready', '0');
  });

  it('paginates long lists', async () => {
    await api('PUT', '/v1/queues/many', {});
    await api('POST', '/v1/queues/many/messages', { messages: Array.from({ length: 45 }, (_, i) => ({ body: `m${i}` })) });
    await page.goto(BASE + '/#/queues/many');
    await tab('Messages');
    await page.getByText('1–20 of 45').waitFor(WAIT);
    await page.getByRole('button', { name: 'Next ›' }).click();
    await page.getByText('21–40 of 45').waitFor();
    await page.getByRole('button', { name: 'Next ›' }).click();
    await page.getByText('41–45 of 45').waitFor();
    assert.equal(await page.getByRole('button', { name: 'Next ›' }).isDisabled(), true);
  });

  it('edits the queue rules in Config (they round-trip) and shows a message\'s priority, group and end of life', async () => {
    await api('PUT', '/v1/queues/ranked', { max_receives: 3, dead_letter_queue: 'ranked-dlq' });
    await page.goto(BASE + '/#/queues/ranked');
    await tab('Config');
    await page.getByLabel('Deduplication window (s)').fill('3600');
    await page.getByLabel('Default time to live (s)').fill('7200');
    await page.getByLabel('Max in flight per group').fill('2');
    await page.getByLabel('Messages a second per group').fill('5');
    await page.getByLabel('On expiry').selectOption('dead_letter');
    await noNotice('Configuration saved');
    await page.getByRole('button', { name: 'Save configuration' }).click();
    await page.getByText('Configuration saved').waitFor(WAIT);
    let c = (await api('GET', '/v1/queues/ranked')).config;
    assert.deepEqual([c.dedup_window_seconds, c.default_ttl_seconds, c.max_in_flight_per_group, c.group_rate_per_second, c.on_expire], [3600, 7200, 2, 5, 'dead_letter']);
    // The summary shows them in units, and a fresh page shows the stored values in the form.
    await page.locator('[data-config="dedup_window_seconds"]', { hasText: '1h' }).waitFor(WAIT);
    await page.locator('[data-config="on_expire"]', { hasText: 'dead_letter' }).waitFor(WAIT);
    await page.reload();
    await tab('Config');
    assert.equal(await page.getByLabel('Default time to live (s)').inputValue(), '7200');
    assert.equal(await page.getByLabel('On expiry').inputValue(), 'dead_letter');
    // Emptied nullable fields clear the settings; a bad value is refused, plainly.
    await page.getByLabel('Default time to live (s)').fill('');
    await page.getByLabel('Max in flight per group').fill('');
    await page.getByLabel('Messages a second per group').fill('');
    await page.getByLabel('On expiry').selectOption('drop');
    await page.getByLabel('Deduplication window (s)').fill('86401');
    await noNotice('Configuration saved');
    await page.getByRole('button', { name: 'Save configuration' }).click();
    await page.getByRole('alert').filter({ hasText: 'dedup_window_seconds' }).waitFor(WAIT);
    await page.getByLabel('Deduplication window (s)').fill('600');
    await noNotice('Configuration saved');
    await page.getByRole('button', { name: 'Save configuration' }).click();
    await page.getByText('Configuration saved').waitFor(WAIT);
    c = (await api('GET', '/v1/queues/ranked')).config;
    assert.deepEqual([c.dedup_window_seconds, c.default_ttl_seconds, c.max_in_flight_per_group, c.group_rate_per_second, c.on_expire], [600, null, null, null, 'drop']);

    // A message sent from the page with a priority, a group and a time to live shows them.
    await tab('Send');
    await page.getByLabel('Body').fill('rush order');
    await page.getByLabel('Group id').fill('tenant-7');
    await page.getByLabel('Priority (0-9)').fill('8');
    await page.getByLabel('Time to live (s)', { exact: true }).fill('900');
    await page.getByRole('button', { name: 'Send message' }).click();
    await page.getByText(/^Sent message /).waitFor(WAIT);
    await api('POST', '/v1/queues/ranked/messages', { body: 'routine' });
    await tab('Messages');
    const row = page.getByRole('row').filter({ hasText: 'rush order' });
    await row.waitFor(WAIT);
    assert.equal(await row.locator('[data-priority]').textContent(), '8');
    await row.getByText('tenant-7').waitFor();
    await row.locator('time').filter({ hasText: /^in 1[45]m/ }).first().waitFor();
    const other = page.getByRole('row').filter({ hasText: 'routine' });
    assert.equal(await other.locator('[data-priority]').textContent(), '4');
    const peek = (await api('GET', '/v1/queues/ranked/messages')).messages;
    assert.deepEqual(peek.map((m) => [m.body, m.priority]), [['rush order', 8], ['routine', 4]]);
    await shot('queue-rules');
  });

  it('shows a subscription with its attempts, request and response excerpts, and resends a dead letter', async () => {
    await api('PUT', '/v1/queues/hooks', {});
    await api('PUT', '/v1/queues/hooks/subscriptions/billing', {
      url: receiverUrl, max_attempts: 2, backoff: { initial_seconds: 0.05, max_seconds: 0.1, jitter: false },
    });
    await api('POST', '/v1/queues/hooks/messages', { body: '{"invoice":7}' });
    await api('POST', '/v1/queues/hooks/messages', { body: '{"invoice":8,"note":"please-fail"}' });
    await page.goto(BASE + '/#/subscriptions');
    const link = page.getByRole('link', { name: 'hooks → billing' });
    await link.waitFor(WAIT);
    await shot('subscriptions');
    await link.click();
    await expectStat('delivered', '1');
    await expectStat('failed', '1');
    // The failed delivery: two attempts, each with the request sent and the response.
    const failedRow = page.getByRole('table', { name: 'Recent deliveries' }).getByRole('row').filter({ has: page.getByText('failed', { exact: true }) }).first();
    await failedRow.waitFor(WAIT);
    await failedRow.locator('button[aria-expanded="false"]').click();
    const req = page.getByLabel('request excerpt').first();
    await req.waitFor();
    assert.match(await req.textContent(), /^POST http:\/\/127\.0\.0\.1:\d+\/hook\n/);
    assert.match(await req.textContent(), /please-fail/);
    assert.match(await page.getByLabel('response excerpt').first().textContent(), /temporarily broken/);
    assert.equal(await page.getByText('Attempt 2', { exact: true }).count(), 1);
    const dead = page.getByRole('table', { name: 'Dead-lettered deliveries' });
    await page.reload();
    await dead.getByRole('row', { name: /HTTP 503/ }).waitFor(WAIT);
    await shot('subscription');
    failing = false;
    await dead.getByRole('button', { name: 'Resend' }).click();
    await page.getByText('Resent 1').waitFor(WAIT);
    await expectStat('delivered', '2');
    assert.equal(received.filter((r) => r.body.includes('please-fail')).length, 3);
  });

  it('replays the dead letters of a window from a subscription page, and resets its counters', async () => {
    failing = true;
    await api('PUT', '/v1/queues/replays', {});
    await api('PUT', '/v1/queues/replays/subscriptions/again', {
      url: receiverUrl, max_attempts: 1, backoff: { initial_seconds: 0.05, max_seconds: 0.1, jitter: false },
    });
    await api('POST', '/v1/queues/replays/messages', { body: '{"replay":1,"note":"please-fail"}' });
    await api('POST', '/v1/queues/replays/messages', { body: '{"replay":2,"note":"please-fail"}' });
    await page.goto(BASE + '/#/subscriptions/replays/again');
    await expectStat('failed', '2');
    failing = false;
    const card = page.getByRole('region', { name: 'Replay since…' });
    await card.getByText(/only dead-lettered ones can be replayed/).waitFor(WAIT);
    await card.getByLabel('Messages').selectOption('failed');
    await card.getByRole('button', { name: 'Replay' }).click();
    await card.getByRole('status', { name: 'replay progress' }).filter({ hasText: 'Replay done: 2 of 2 sent again.' }).waitFor(WAIT);
    await expectStat('delivered', '2');
    await page.getByRole('table', { name: 'Dead-lettered deliveries' }).waitFor({ state: 'detached', ...WAIT });
    assert.equal(received.filter((r) => r.body.includes('"replay":')).length, 4);
    await shot('subscription-replay');
    await page.getByRole('button', { name: 'Reset counters' }).click();
    await page.getByRole('dialog', { name: 'Reset the counters?' }).getByRole('button', { name: 'Reset counters' }).click();
    await page.getByText('Counters reset').waitFor(WAIT);
    await expectStat('delivered', '0');
    await expectStat('failed', '0');
  });

  it('lists timers due soon, and cancels one after confirmation', async () => {
    await api('POST', '/v1/timers', { url: receiverUrl, delay_seconds: 30 });
    await page.goto(BASE + '/#/timers');
    await page.getByLabel('URL to call').fill(receiverUrl);
    await page.getByLabel('In (seconds)').fill('3600');
    await page.getByRole('button', { name: 'Schedule timer' }).click();
    await page.getByText(/^Timer .* scheduled$/).waitFor(WAIT);
    await expectStat('pending', '2');
    await page.getByText('due soon').waitFor(WAIT);
    await shot('timers');
    await page.getByRole('button', { name: 'Cancel' }).last().click();
    await page.getByRole('dialog', { name: 'Cancel this timer?' }).getByRole('button', { name: 'Cancel timer' }).click();
    await page.getByText('Timer cancelled').waitFor(WAIT);
    await expectStat('pending', '1');
    await tab('cancelled');
    await page.getByRole('cell', { name: 'cancelled' }).waitFor(WAIT);
  });

  it('pauses and resumes a subscription, enables a disabled one, and pauses a queue and a schedule', async () => {
    failing = true;
    await api('PUT', '/v1/queues/ctl', {});
    await api('PUT', '/v1/queues/ctl/subscriptions/flaky', {
      url: receiverUrl, disable_after_seconds: 1, backoff: { initial_seconds: 0.2, max_seconds: 0.2, jitter: false },
    });
    await api('POST', '/v1/queues/ctl/messages', { body: '{"ctl":1,"note":"please-fail"}' });
    const state = async () => (await api('GET', '/v1/queues/ctl/subscriptions/flaky')).state;
    for (let i = 0; i < 300 && (await state()) !== 'disabled'; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await state(), 'disabled');
    failing = false;
    await page.goto(BASE + '/#/subscriptions/ctl/flaky');
    // Its endpoint settings are shown: what it takes, its breaker, when it is disabled.
    await page.locator('[data-config="filter"]', { hasText: 'every message' }).waitFor(WAIT);
    await page.getByText(/opens after 20 failures in a row/).waitFor(WAIT);
    await page.getByText(/1 s failing without a success/).waitFor(WAIT);
    await page.getByRole('button', { name: 'Enable subscription flaky' }).click();
    await page.getByText('Enabled: deliveries start again').waitFor(WAIT);
    assert.equal(await state(), 'active');
    await page.getByRole('button', { name: 'Pause subscription flaky' }).click();
    await page.getByRole('button', { name: 'Resume subscription flaky' }).waitFor(WAIT);
    assert.equal(await state(), 'paused');
    await page.getByRole('button', { name: 'Resume subscription flaky' }).click();
    await page.getByRole('button', { name: 'Pause subscription flaky' }).waitFor(WAIT);
    assert.equal(await state(), 'active');
    // A queue's consumption.
    await page.goto(BASE + '/#/queues/ctl');
    await page.getByRole('button', { name: 'Pause queue ctl' }).click();
    await page.getByText('consumption paused').waitFor(WAIT);
    assert.equal((await api('GET', '/v1/queues/ctl')).paused, true);
    await page.getByRole('button', { name: 'Resume queue ctl' }).click();
    await page.getByRole('button', { name: 'Pause queue ctl' }).waitFor(WAIT);
    assert.equal((await api('GET', '/v1/queues/ctl')).paused, false);
    // A schedule.
    await api('PUT', '/v1/schedules/nightly', { cron: '0 3 * * *', url: receiverUrl });
    await page.goto(BASE + '/#/timers');
    await page.getByRole('cell', { name: 'latest', exact: true }).waitFor(WAIT);
    await page.getByRole('button', { name: 'Pause schedule nightly' }).click();
    await page.getByRole('button', { name: 'Resume schedule nightly' }).waitFor(WAIT);
    assert.equal((await api('GET', '/v1/schedules/nightly')).paused, true);
    await page.getByRole('button', { name: 'Resume schedule nightly' }).click();
    await page.getByRole('button', { name: 'Pause schedule nightly' }).waitFor(WAIT);
    assert.equal((await api('GET', '/v1/schedules/nightly')).paused, false);
    await api('DELETE', '/v1/schedules/nightly');
  });

  it('shows ingested files with their progress', async () => {
    const r = await fetch(`${BASE}/v1/ingest?queue=rows&format=csv&name=users.csv`, {
      method: 'POST', body: 'userId,alertMessage\nu1,hello\nu2,world\n',
    });
    assert.equal(r.status, 202);
    await page.goto(BASE + '/#/ingest');
    const row = page.getByRole('row', { name: /users\.csv/ });
    await row.waitFor(WAIT);
    await page.waitForFunction(() => [...document.querySelectorAll('tr')].some((tr) => tr.textContent.includes('users.csv') && tr.textContent.includes('processed')), null, WAIT);
    assert.equal(await row.getByRole('progressbar').getAttribute('aria-valuenow'), '100');
    await shot('ingest');
  });

  it('asks for an API key when the server answers 401, and sends it', async () => {
    const seen = [];
    await page.route('**/v1/server', async (route) => {
      const auth = route.request().headers().authorization;
      seen.push(auth);
      if (auth !== 'Bearer s3cret') {
        await route.fulfill({ status: 401, contentType: 'application/json', body: '{"error":{"code":"unauthorized","message":"an API key is required"}}' });
      } else {
        await route.continue();
      }
    });
    await page.goto(BASE + '/');
    const dialog = page.getByRole('dialog', { name: 'API key needed' });
    await dialog.waitFor(WAIT);
    await dialog.getByText('an API key is required').waitFor();
    await dialog.getByLabel(/API key/).fill('s3cret');
    await dialog.getByRole('button', { name: 'Use key' }).click();
    await page.getByText('Uptime').waitFor(WAIT);
    assert.ok(seen.includes('Bearer s3cret'));
    await page.unroute('**/v1/server');
    await page.evaluate(() => sessionStorage.clear());
  });

  it('against a server with API keys: asks for one on 401, then works with it', async () => {
    const bin = process.env.SLUICE_BIN;
    assert.ok(bin, 'SLUICE_BIN must name the sluice binary');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-ui-auth-'));
    const key = 'dashboard-admin-key-0123456789';
    fs.writeFileSync(path.join(dir, 'keys.toml'), `[[key]]\nname = "ui"\nkey = "${key}"\nrole = "admin"\n`);
    const port = await new Promise((res) => { const s = http.createServer(); s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); }); });
    const url = `http://127.0.0.1:${port}`;
    const child = spawn(bin, ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', path.join(dir, 'data'), '--auth-keys', path.join(dir, 'keys.toml'), '--log-level', 'warn'], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 300; i++) {
        try { if ((await fetch(`${url}/healthz`)).ok) break; } catch { /* not yet */ }
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal((await fetch(`${url}/v1/queues`)).status, 401);
      await fetch(`${url}/v1/queues/locked-away`, { method: 'PUT', headers: { authorization: `Bearer ${key}` } });
      const p2 = await page.context().newPage();
      const offsite = [];
      p2.on('request', (r) => { if (!r.url().startsWith(url)) offsite.push(r.url()); });
      await p2.goto(url + '/');
      const dialog = p2.getByRole('dialog', { name: 'API key needed' });
      await dialog.waitFor(WAIT);
      await dialog.getByText('an API key is required').waitFor();
      await dialog.getByLabel(/API key/).fill('wrong-key-wrong-key-123');
      await dialog.getByRole('button', { name: 'Use key' }).click();
      await dialog.getByText('refused this key').waitFor(WAIT);
      await dialog.getByLabel(/API key/).fill(key);
      await dialog.getByRole('button', { name: 'Use key' }).click();
      await p2.getByRole('link', { name: 'locked-away' }).waitFor(WAIT);
      assert.equal(await p2.evaluate(() => document.cookie), '', 'no cookie holds the key');
      await p2.screenshot({ path: path.join(SHOTS, 'auth-overview.png') });
      assert.deepEqual(offsite, []);
      await p2.close();
    } finally {
      child.kill('SIGTERM');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is usable at phone width and by keyboard', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(BASE + '/');
    await page.getByRole('link', { name: 'orders', exact: true }).waitFor(WAIT);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `the page scrolls sideways by ${overflow}px at 390px`);
    await shot('overview-phone');
    // Every form control has a label.
    for (const route of ['#/', '#/queues/orders', '#/timers']) {
      await page.goto(BASE + '/' + route);
      await page.waitForTimeout(300);
      const unlabeled = await page.evaluate(() => [...document.querySelectorAll('main input, main select, main textarea')]
        .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')).map((el) => el.outerHTML));
      assert.deepEqual(unlabeled, [], route);
    }
    // The first Tab reaches the skip link; Enter moves focus to the content.
    await page.goto(BASE + '/');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it('overview screenshot, no script errors and no request off the server on any page', async () => {
    await page.goto(BASE + '/');
    await page.getByRole('link', { name: 'hooks', exact: true }).waitFor(WAIT);
    await page.waitForTimeout(2500); // one more poll so the chart has points
    await shot('overview');
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(foreign, []);
  });
});
