// What a unit wants to see, in a real browser: upload a photo, open the
// whole-layer view of conv3 for four maps, watch the previews sharpen while
// the job runs, reload the shared URL (the stored pictures at once), click
// a picture for its trio (the optimised image beside the dataset top 9).
// usage: node visualize.mjs BASE_URL IMAGE OUT_DIR
import { launch } from "./launch.mjs";

const [base, imagePath, outDir] = process.argv.slice(2);

const cellsDone = (sel) => (p) => p.waitForFunction((s) => {
  const cs = [...document.querySelectorAll(s)];
  return cs.length > 0 && cs.every((c) => c.style.backgroundImage.startsWith('url("data:') && c.title.includes("objective"));
}, sel, { timeout: 240000 });

const browser = await launch();
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base);
  await page.setInputFiles("#file", imagePath);
  await page.waitForSelector("#maps-panel:not([hidden]) .tile", { timeout: 60000 });
  // The view's settings come from the URL (as a shared link gives them).
  const u = new URL(page.url());
  for (const [k, v] of Object.entries({ layer: "3", view: "wants", vmaps: "0-3", vsteps: "64" })) u.searchParams.set(k, v);
  await page.goto(u.toString());
  // A preview shows before the job is done (every 32 steps).
  await page.waitForFunction(() => [...document.querySelectorAll(".vz-cell")].some((c) => c.style.backgroundImage.includes("data:")) &&
    !document.getElementById("vz-progress").hidden, null, { timeout: 240000 });
  const previewSeen = await page.evaluate(() => document.getElementById("vz-progress-text").textContent);
  await cellsDone(".vz-cell")(page);
  const cells = await page.$$eval(".vz-cell", (cs) => cs.map((c) => ({ map: c.dataset.map, title: c.title })));
  const title = await page.textContent("#vz-title");
  await page.screenshot({ path: `${outDir}/wants.png`, fullPage: true });
  const url = page.url();
  // The shared URL: the stored pictures come back at once.
  const again = await ctx.newPage();
  const t0 = Date.now();
  await again.goto(url);
  await cellsDone(".vz-cell")(again);
  const reloadMs = Date.now() - t0;
  // A picture opens its map's trio.
  await page.click('.vz-item:has(.vz-cell[data-map="2"])');
  await cellsDone(".ds-wants")(page);
  const trio = await page.evaluate(() => ({
    rows: document.querySelectorAll(".ds-row.trio").length,
    patches: document.querySelectorAll(".ds-row.trio .ds-cell").length,
    checked: document.getElementById("ds-want").checked,
  }));
  await page.screenshot({ path: `${outDir}/trio.png`, fullPage: true });
  console.log(JSON.stringify({ previewSeen, cells, title, url, reloadMs, trio, trioUrl: page.url(), errors }));
} finally {
  await browser.close();
}
