// The feature-analysis view in a real browser: from the explorer's link, set
// a small run (a background job longer than the server's request timeout),
// reload mid-job and find the same job's progress, wait for the per-layer
// bars and the transfer curve, open the shared URL on a phone-sized page and
// find the same numbers; then start another run and cancel it.
// usage: node features.mjs BASE_URL IMAGE OUT_DIR
import { launch } from "./launch.mjs";

const [base, , outDir] = process.argv.slice(2);

async function loaded(page) {
  await page.waitForSelector("#fa-layers svg rect", { timeout: 240000 });
  await page.waitForSelector("#fa-curve svg circle", { timeout: 10000 });
  return page.evaluate(() => ({
    layers: document.getElementById("fa-layers-table").innerText,
    curve: document.getElementById("fa-curve-table").innerText,
    bars: document.querySelectorAll("#fa-layers svg rect[fill]").length,
    paper: document.getElementById("fa-table7").innerText,
    progressHidden: document.getElementById("fa-progress").hidden,
  }));
}

const browser = await launch();
try {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base);
  await page.click("#features-link");
  await page.waitForURL(/\/features/);
  // The paper's numbers are there before anything runs.
  const paperFirst = await page.evaluate(() => document.getElementById("fa-table7").innerText);
  await page.fill("#tpc", "2");
  await page.fill("#shots", "1,2");
  await page.fill("#seeds", "2");
  await page.fill("#scratch", "3");
  const t0 = Date.now();
  await page.click("#run");
  // The progress indicator shows while the job runs.
  await page.waitForSelector("#fa-progress:not([hidden])", { timeout: 5000 });
  // Reloading once the transfer stage has begun joins the running job: its
  // progress goes on from there (a new job would start at 0).
  const bar = () => Number(document.getElementById("fa-bar").value);
  await page.waitForFunction(() => Number(document.getElementById("fa-bar").value) >= 100, null, { timeout: 240000 });
  const beforeReload = await page.evaluate(bar);
  const statusBefore = await page.evaluate(() => document.getElementById("fa-eta").textContent);
  await page.reload();
  await page.waitForFunction(() => Number(document.getElementById("fa-bar").value) > 0, null, { timeout: 20000 });
  const afterReload = await page.evaluate(bar);
  const first = await loaded(page);
  const elapsed = (Date.now() - t0) / 1000;
  const url = page.url();
  await page.screenshot({ path: `${outDir}/features.png`, fullPage: true });

  const page2 = await (await browser.newContext({ viewport: { width: 390, height: 844 } })).newPage();
  page2.on("pageerror", (e) => errors.push(String(e)));
  await page2.goto(url);
  const second = await loaded(page2);
  await page2.screenshot({ path: `${outDir}/features-phone.png`, fullPage: true });
  const same = first.layers === second.layers && first.curve === second.curve;

  // Another run (3 draws), cancelled while it runs.
  await page.fill("#seeds", "3");
  await page.click("#run");
  await page.waitForSelector("#fa-progress:not([hidden])", { timeout: 5000 });
  await page.waitForFunction(() => Number(document.getElementById("fa-bar").value) > 0, null, { timeout: 60000 });
  await page.click("#fa-cancel");
  await page.waitForSelector("#fa-progress[hidden]", { state: "attached", timeout: 20000 });
  const cancelText = await page.evaluate(() => document.getElementById("error").textContent);
  const cancelled = await page.evaluate(async () => (await fetch(`/api/features/progress${location.search}`)).json());
  console.log(JSON.stringify({ url, same, first, paperFirst, errors, elapsed, beforeReload, afterReload, statusBefore, cancelText, cancelled }));
  if (!same || errors.length) process.exit(1);
} finally {
  await browser.close();
}
