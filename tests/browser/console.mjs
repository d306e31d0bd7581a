// The web console in headless Chromium: it lists a stream and its group,
// shows an entry produced through the API in the live tail, and redrives a
// dead letter with its button.  Saves a screenshot.
//
//   node console.mjs BASE_URL SCREENSHOT.png
// (playwright-core must be resolvable: NODE_PATH or a node_modules nearby.)
import { createRequire } from "node:module";
const require = createRequire(process.cwd() + "/");
const { chromium } = require("playwright-core");

const [base, shot] = process.argv.slice(2);
const fail = (msg) => { console.error("FAIL: " + msg); process.exitCode = 1; };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 860 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base + "/#stream=orders&dlq=orders/counter");

  // The stream and its group, with the group's dead letters counted.
  await page.locator('tr.stream[data-stream="orders"]').waitFor({ timeout: 10000 });
  await page.locator("tr.group", { hasText: "counter" }).waitFor({ timeout: 10000 });

  // An entry produced through the API appears in the live tail.
  await page.locator("#tailstatus", { hasText: "live" }).waitFor({ timeout: 10000 });
  const key = "browser-" + Date.now();
  const r = await fetch(base + "/v1/streams/orders/events", {
    method: "POST", body: JSON.stringify({ type: "order.created", key, actor: "browser-test" }),
  });
  if (r.status !== 201) fail("produce answered " + r.status);
  await page.locator("#tail .ev", { hasText: key }).waitFor({ timeout: 10000 });

  // Redrive one dead letter with its button.
  const rows = page.locator("#dlq tbody tr.dlqrow");
  await rows.first().waitFor({ timeout: 10000 });
  const before = await rows.count();
  await rows.first().locator("button").click();
  await page.locator("#dlqmsg", { hasText: "Moved 1 back to orders." }).waitFor({ timeout: 10000 });
  const after = await rows.count();
  if (after !== before - 1) fail(`dead letters: ${before} before the redrive, ${after} after`);

  await page.waitForTimeout(4500); // two more polls: the lag chart has points
  await page.screenshot({ path: shot });
  if (errors.length) fail("page errors: " + errors.join("; "));
} catch (e) {
  fail(e.message);
} finally {
  await browser.close();
}
if (!process.exitCode) console.log("console: stream, group, live tail and redrive seen; screenshot " + shot);
