// awe_queue's developer tool (built by run.sh from the seed's components), clicked in headless
// Chromium: the page is served from its own origin, so every call to sluice is cross-origin and
// needs the CORS headers, as with the seed.
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const dist = process.env.AWE_OUT;
let server, page, browser, origin;

before(async () => {
  server = http.createServer((req, res) => {
    const p = path.join(dist, decodeURIComponent(new URL(req.url, "http://x").pathname));
    const file = fs.existsSync(p) && fs.statSync(p).isFile() ? p : path.join(dist, "index.html");
    res.setHeader("content-type", file.endsWith(".js") ? "text/javascript" : file.endsWith(".css") ? "text/css" : "text/html");
    fs.createReadStream(file).pipe(res);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  origin = `http://127.0.0.1:${server.address().port}`;
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
  page = await browser.newPage();
  page.on("console", (m) => m.type() === "error" && console.log("browser:", m.text()));
  await page.goto(origin);
});

after(async () => {
  await browser?.close();
  server?.close();
});

const panel = (title) => page.locator(".container", { hasText: title });

test("send, stats, receive (trailing slash), delete, stats", async () => {
  const send = panel("Post Message to AweQ");
  await send.locator("input").fill("hello from the tool");
  await send.getByRole("button", { name: "Send Message" }).click();
  const sent = await send.locator(".alert-success").textContent({ timeout: 10000 });
  const key = sent.match(/Message "([0-9a-f-]{36})" posted to queue/)?.[1];
  assert.ok(key, sent);

  const stats = panel("Check AweQ Stats");
  await stats.getByRole("button", { name: "Check Stats" }).click();
  let text = await stats.locator("pre").textContent({ timeout: 10000 });
  assert.match(text, /"queue_length": 1/);

  const receive = panel("Checkout Messages from AweQ");
  await receive.locator("input").fill("2");
  await receive.getByRole("button", { name: "Receive Messages" }).click();
  text = await receive.locator("pre").textContent({ timeout: 10000 });
  assert.match(text, /hello from the tool/);
  assert.match(text, new RegExp(key));
  assert.match(text, /Fewer messages available than requested/);

  const del = panel("Acknowledge Handling of AweQ Message");
  await del.locator("input").fill(key);
  await del.getByRole("button", { name: "Delete Message" }).click();
  const deleted = await del.locator(".alert-success").textContent({ timeout: 10000 });
  assert.match(deleted, new RegExp(`Message "${key}" deleted`));

  await stats.getByRole("button", { name: "Check Stats" }).click();
  await page.waitForFunction(() => /"checkouts_count": 0/.test(document.body.innerText), null, { timeout: 10000 });
  text = await stats.locator("pre").textContent();
  assert.match(text, /"queue_length": 0/);
  const out = process.env.SLUICE_UI_ARTIFACTS;
  if (out) {
    fs.mkdirSync(out, { recursive: true });
    await page.screenshot({ path: path.join(out, "awe-tool.png"), fullPage: true });
  }
});
