// What the dashboard test files share: the server under test ($SLUICE_URL, started by run.sh),
// a JSON API client, Debian's Chromium driven by playwright-core, a local webhook receiver,
// and small page helpers. Screenshots go to $SLUICE_UI_ARTIFACTS (default target/test-output/ui).
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

export const BASE = process.env.SLUICE_URL;
const SHOTS = process.env.SLUICE_UI_ARTIFACTS || path.resolve('../../target/test-output/ui');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// Generous: the CI machine has 2 cores and builds nothing meanwhile, but polls every 2 s.
export const WAIT = { timeout: Number(process.env.SLUICE_UI_WAIT_MS || 20000) };

export async function api(method, p, body) {
  const r = await fetch(BASE + p, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Chromium with one page; script errors and requests off the server are collected. */
export async function launch() {
  assert.ok(BASE, 'SLUICE_URL must point at a running sluice (tests/ui/run.sh starts one)');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  const pageErrors = [];
  const foreign = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  // Offline: the page may only talk to the server that served it.
  page.on('request', (r) => { if (!r.url().startsWith(BASE) && !r.url().startsWith('data:')) foreign.push(r.url()); });
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) pageErrors.push(m.text()); });
  return { browser, page, pageErrors, foreign };
}

/**
 * A webhook receiver on a free loopback port. `answer(body, req)` returns the status to send
 * (200 by default). Returns { server, url(path), received }.
 */
export async function receiver(answer = () => 200) {
  const received = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      received.push({ headers: req.headers, body, path: req.url });
      const status = answer(body, req);
      if (status === null) return; // never answered: the delivery stays in flight
      res.writeHead(status, { 'content-type': status === 200 ? 'application/json' : 'text/plain' });
      res.end(status === 200 ? '{"ok":true,"from":"test receiver"}' : 'receiver says: temporarily broken');
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  return { server, url: (p) => `http://127.0.0.1:${port}${p}`, received };
}

export async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

export async function expectStat(page, key, value) {
  await page.waitForFunction(([k, v]) => document.querySelector(`[data-stat="${k}"]`)?.textContent === v, [key, value], WAIT);
}

export async function tab(page, name) {
  await page.getByRole('tab', { name, exact: true }).click();
}
