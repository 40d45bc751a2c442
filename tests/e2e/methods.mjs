// The methods view in a real browser: upload a photo, see every method's map
// side by side with its time and scores, reload the shared URL (the stored
// result comes back), download the figure; pick another CAM unit, SmoothGrad
// and the overlay (all in the URL); run a two-step sanity check.
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
  // Every method of the registry that applies to a CNN (attention
  // rollout's need a transformer), each image loaded.
  const loaded = (p = page) => p.waitForFunction(() => {
    const n = JSON.parse(document.getElementById("methods-data").textContent).filter((m) => !m.needs.attention).length;
    const imgs = [...document.querySelectorAll(".mt-card img")];
    return document.querySelectorAll(".mt-card").length === n && imgs.every((i) => i.complete && i.naturalWidth === 224);
  }, null, { timeout: 240000 });
  await loaded();
  const cards = await page.$$eval(".mt-card", (cs) => cs.map((c) => ({ method: c.dataset.method, text: c.querySelector("figcaption").textContent })));
  const curves = await page.$$eval("#mt-deletion polyline, #mt-insertion polyline", (ps) => ps.length);
  await page.screenshot({ path: `${outDir}/methods.png`, fullPage: true });
  const url = page.url();
  // The shared URL brings the result back.
  const again = await ctx.newPage();
  await again.goto(url);
  await loaded(again);
  const reloaded = await again.$$eval(".mt-card", (cs) => cs.length);
  const suggested = await page.$eval("#layer option", (o) => o.textContent);
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#mt-figure")]);
  const fig = `${outDir}/figure.png`;
  await download.saveAs(fig);
  // Another unit for the CAMs, SmoothGrad over the gradient methods, the
  // maps over the image: the URL keeps them all.
  const layers = await page.$$eval("#layer option", (os) => os.map((o) => o.textContent));
  await page.selectOption("#layer", "4");
  await page.fill("#smooth", "3");
  await page.click("#run");
  await page.waitForFunction(() => [...document.querySelectorAll(".mt-card figcaption")].some((f) => f.textContent.includes("SmoothGrad")), null, { timeout: 240000 });
  await loaded();
  await page.check("#overlay-on");
  await page.fill("#overlay", "0.7");
  await page.dispatchEvent("#overlay", "input");
  const overlaid = await page.$$eval(".mt-card", (cs) => cs.map((c) => ({
    method: c.dataset.method, text: c.querySelector("figcaption").textContent,
    stack: !c.querySelector(".mt-stack").hidden, opacity: c.querySelector(".mt-jet").style.opacity })));
  await page.screenshot({ path: `${outDir}/methods-overlay.png`, fullPage: true });
  const sharedUrl = page.url();
  // A two-step sanity check.
  await page.fill("#steps", "2");
  await page.click("#sanity-run");
  await page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll(".sc-table tbody img")];
    return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
  }, null, { timeout: 120000 });
  const rows = await page.$$eval(".sc-table tbody tr", (rs) => rs.map((r) => r.children[1].textContent));
  await page.screenshot({ path: `${outDir}/sanity.png`, fullPage: true });
  console.log(JSON.stringify({ url, cards, curves, reloaded, suggested, layers, overlaid, sharedUrl, figure: statSync(fig).size, rows, errors }));
} finally {
  await browser.close();
}
