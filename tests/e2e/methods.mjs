// The methods view in a real browser: upload a photo, see every method's map
// side by side with its time and scores, reload the shared URL (the stored
// result comes back), download the figure, run a two-step sanity check.
// usage: node methods.mjs BASE_URL IMAGE OUT_DIR
import { launch } from "./launch.mjs";
import { statSync } from "node:fs";

const [base, imagePath, outDir] = process.argv.slice(2);

const browser = await launch();
try {
  const ctx = await browser.newContext({ viewport: { width: 1300, height: 1000 }, acceptDownloads: true });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${base}/methods?model=zfnet-woofnette`);
  await page.setInputFiles("#file", imagePath);
  const loaded = () => page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll(".mt-card img")];
    return imgs.length === 14 && imgs.every((i) => i.complete && i.naturalWidth === 224);
  }, null, { timeout: 120000 });
  await loaded();
  const cards = await page.$$eval(".mt-card", (cs) => cs.map((c) => ({ method: c.dataset.method, text: c.querySelector("figcaption").textContent })));
  const curves = await page.$$eval("#mt-deletion polyline, #mt-insertion polyline", (ps) => ps.length);
  await page.screenshot({ path: `${outDir}/methods.png`, fullPage: true });
  const url = page.url();
  // The shared URL brings the result back.
  const again = await ctx.newPage();
  await again.goto(url);
  await again.waitForFunction(() => document.querySelectorAll(".mt-card img").length === 14, null, { timeout: 30000 });
  const reloaded = await again.$$eval(".mt-card", (cs) => cs.length);
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#mt-figure")]);
  const fig = `${outDir}/figure.png`;
  await download.saveAs(fig);
  // A two-step sanity check.
  await page.fill("#steps", "2");
  await page.click("#sanity-run");
  await page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll(".sc-table tbody img")];
    return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
  }, null, { timeout: 120000 });
  const rows = await page.$$eval(".sc-table tbody tr", (rs) => rs.map((r) => r.children[1].textContent));
  await page.screenshot({ path: `${outDir}/sanity.png`, fullPage: true });
  console.log(JSON.stringify({ url, cards, curves, reloaded, figure: statSync(fig).size, rows, errors }));
} finally {
  await browser.close();
}
