// The dashboard shows where messages are: a queue's total with its subscriptions' copies (list,
// page, overview), push dead letters in the source queue's count and in its dead-letter
// queue's, charts of push deliveries and queue depth whose axis labels are alike and never
// crowd, settings in units, "not found" for a queue that does not exist, bookmarkable tabs, and
// cron firings apart from one-shot timers. run.sh runs it after dashboard.test.mjs (same server).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, WAIT, api, launch, receiver, shot, expectStat, tab } from './setup.mjs';

let browser;
let page;
let pageErrors;
let foreign;
let rx;

before(async () => {
  // /stuck refuses for now (503, retried an hour later); /dead refuses (given up at once).
  rx = await receiver((body, req) => (req.url === '/ok' ? 200 : 503));
  ({ browser, page, pageErrors, foreign } = await launch());
});

after(async () => {
  if (browser) await browser.close();
  if (rx) rx.server.close();
});

/** The labels a chart drew on an axis, once it drew some. */
async function axisLabels(chart, axis) {
  const key = axis === 'x' ? 'xLabels' : 'yLabels';
  await page.waitForFunction(([label, k]) => document.querySelector(`[aria-label^="${label}"]`)?.dataset[k], [chart, key], WAIT);
  return page.evaluate(([label, k]) => {
    const el = document.querySelector(`[aria-label^="${label}"]`);
    return { labels: el.dataset[k].split('|'), width: el.clientWidth };
  }, [chart, key]);
}

describe('counts and charts', () => {
  it('shows a queue\'s total with its subscriptions\' copies in the list, on its page and in the overview', async () => {
    await api('PUT', '/v1/queues/backlog/subscriptions/slow', {
      url: rx.url('/stuck'), max_attempts: 10, concurrency: 5, backoff: { initial_seconds: 3600, max_seconds: 3600, jitter: false },
    });
    await api('POST', '/v1/queues/backlog/messages', { messages: [1, 2, 3, 4, 5].map((i) => ({ body: `m${i}` })) });
    await page.goto(`${BASE}/#/queues/backlog`);
    await expectStat(page, 'total', '5');
    await expectStat(page, 'retrying', '5');
    await page.getByText('5 with 1 subscription').waitFor(WAIT);
    await tab(page, 'Messages');
    await page.getByText(/own list is empty: its 5 messages are with its 1 subscription/).waitFor(WAIT);
    await page.goto(`${BASE}/#/`);
    const row = page.getByRole('row', { name: /^backlog / });
    await row.waitFor(WAIT);
    const cells = await row.getByRole('cell').allTextContents();
    assert.equal(cells[1], '5', `Messages column: ${cells}`);
    const { queues } = await api('GET', '/v1/queues');
    assert.equal(queues.find((q) => q.name === 'backlog').counts.total, 5);
  });

  it('counts a push dead letter for its source queue and shows what a dead-letter queue holds', async () => {
    await api('PUT', '/v1/queues/pushy/subscriptions/dead', { url: rx.url('/dead'), max_attempts: 1 });
    await api('POST', '/v1/queues/pushy/messages', { body: 'cannot be delivered' });
    await page.goto(`${BASE}/#/queues/pushy`);
    await expectStat(page, 'dead_lettered', '1');
    await page.goto(`${BASE}/#/queues/pushy-dlq`);
    await expectStat(page, 'dead_letters_held', '1');
    await page.locator('.tile', { hasText: 'Dead letters held' }).getByRole('link', { name: 'pushy' }).waitFor(WAIT);
    await tab(page, 'Dead letters');
    await page.getByText(/This is the dead-letter queue of/).waitFor(WAIT);
    await page.getByRole('row', { name: /cannot be delivered/ }).waitFor(WAIT);
    await shot(page, 'dead-letter-queue');
  });

  it('says "not found" for a queue that does not exist, without actions or charts', async () => {
    await page.goto(`${BASE}/#/queues/no-such-queue`);
    await page.getByRole('heading', { name: 'Queue no-such-queue not found' }).waitFor(WAIT);
    assert.equal(await page.getByRole('button', { name: /Purge|Delete/ }).count(), 0);
    assert.equal(await page.locator('main .chart').count(), 0);
    assert.equal(await page.getByRole('tab').count(), 0);
  });

  it('keeps the open tab in the address, so it can be bookmarked', async () => {
    await page.goto(`${BASE}/#/queues/backlog/config`);
    await page.getByRole('tab', { name: 'Config', selected: true }).waitFor(WAIT);
    // Settings in units people read, beside the raw numbers.
    await page.locator('[data-config="retention_seconds"]', { hasText: '4d (345,600 s)' }).waitFor(WAIT);
    await page.locator('[data-config="max_message_bytes"]', { hasText: '256 KiB (262,144 bytes)' }).waitFor(WAIT);
    await tab(page, 'Dead letters');
    assert.equal(await page.evaluate(() => location.hash), '#/queues/backlog/dead-letters');
    await tab(page, 'Messages');
    assert.equal(await page.evaluate(() => location.hash), '#/queues/backlog');
    await page.goto(`${BASE}/#/timers/cancelled`);
    await page.getByRole('tab', { name: 'cancelled', selected: true }).waitFor(WAIT);
  });

  it('charts push deliveries and depth, with time labels of one format that never crowd', async () => {
    await api('PUT', '/v1/queues/charted/subscriptions/fine', { url: rx.url('/ok') });
    for (let i = 0; i < 3; i++) await api('POST', '/v1/queues/charted/messages', { body: `c${i}` });
    await page.goto(`${BASE}/#/subscriptions/charted/fine`);
    await expectStat(page, 'delivered', '3');
    await page.locator('[aria-label^="Push deliveries per second, charted → fine"] .uplot').waitFor(WAIT);
    // The series behind it (GET /v1/rates) has the deliveries.
    for (let i = 0; ; i++) {
      const r = await api('GET', '/v1/rates?queue=charted');
      if ((r.subscriptions['charted/fine']?.delivered || []).some((v) => v > 0)) break;
      assert.ok(i < 20, `no delivered rate: ${JSON.stringify(r.subscriptions)}`);
      await new Promise((res) => setTimeout(res, 1000));
    }
    await page.goto(`${BASE}/#/`);
    for (const label of ['Messages per second, all queues', 'Push deliveries per second, all subscriptions', 'Messages waiting or in flight, all queues']) {
      await page.locator(`[aria-label^="${label}"] .uplot`).waitFor(WAIT);
    }
    for (const width of [1280, 390]) {
      await page.setViewportSize({ width, height: 900 });
      await page.waitForTimeout(2500); // a poll at this width redraws the axes
      const { labels, width: w } = await axisLabels('Messages waiting or in flight, all queues', 'x');
      assert.ok(labels.length * 55 <= w, `${labels.length} time labels in ${w}px: ${labels}`);
      const format = /^\d\d:\d\d$/.test(labels[0]) ? /^\d\d:\d\d$/ : /^\d\d:\d\d:\d\d$/;
      assert.ok(labels.every((l) => format.test(l)), `mixed time formats: ${labels}`);
      const { labels: ys } = await axisLabels('Messages per second, all queues', 'y');
      const decimals = new Set(ys.map((y) => (y.split('.')[1] || '').length));
      assert.equal(decimals.size, 1, `mixed number formats: ${ys}`);
      // Exact labels: evenly spaced ticks read evenly spaced (0.25 is not shown as 0.3).
      const v = ys.map((y) => Number(y.replace(/,/g, '')));
      const steps = v.slice(1).map((x, i) => +(x - v[i]).toFixed(6));
      assert.ok(steps.every((d) => d === steps[0]), `uneven labels: ${ys}`);
    }
    await page.setViewportSize({ width: 1280, height: 900 });
    await shot(page, 'overview-charts');
  });

  it('lists cron firings apart from one-shot timers', async () => {
    await api('PUT', '/v1/schedules/every-second', { cron: '* * * * * *', url: rx.url('/ok') });
    const later = await api('POST', '/v1/timers', { url: rx.url('/ok'), delay_seconds: 3600 });
    await page.goto(`${BASE}/#/timers/succeeded`);
    const firings = page.getByRole('table', { name: 'Cron firings' });
    await firings.getByRole('cell', { name: 'every-second' }).first().waitFor(WAIT);
    await api('DELETE', '/v1/schedules/every-second');
    const timers = page.getByRole('table', { name: 'Timers' });
    assert.equal(await timers.getByRole('cell', { name: 'every-second' }).count(), 0);
    await tab(page, 'pending');
    await timers.getByRole('button', { name: `Cancel timer ${later.id}` }).waitFor(WAIT);
    await api('DELETE', `/v1/timers/${later.id}`);
    await shot(page, 'timers-and-firings');
  });

  it('had no script errors and made no request off the server', () => {
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(foreign, []);
  });
});
