// The compare view in a real browser: from the explorer's "Compare models"
// link with an uploaded image, wait for the numbers, the filters and the
// layer-2 patches, switch the filter contrast, and reopen the URL elsewhere.
// usage: node compare.mjs BASE_URL IMAGE OUT_DIR
import { launch } from "./launch.mjs";

const [base, imagePath, outDir] = process.argv.slice(2);

async function loaded(page) {
  await page.waitForSelector("#cmp-table table", { timeout: 90000 });
  await page.waitForFunction(() => document.querySelectorAll(".patches .patch").length === 18
    && [...document.querySelectorAll(".patch")].every((p) => p.style.backgroundImage.includes("top9.png")), null, { timeout: 60000 });
  await page.waitForFunction(() => ["a", "b"].every((s) => {
    const i = document.getElementById(`filters-${s}-img`);
    return i.complete && i.naturalWidth > 0 && document.querySelectorAll(`#filters-${s} .hit`).length > 0;
  }), null, { timeout: 60000 });
  return page.evaluate(() => ({
    table: document.querySelector("#cmp-table table").innerText,
    hits: document.querySelectorAll(".filters .hit").length,
    source: document.getElementById("cmp-source").textContent,
  }));
}

const browser = await launch();
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base);
  await page.setInputFiles("#file", imagePath);
  await page.waitForSelector("#maps-panel:not([hidden]) .tile", { timeout: 60000 });
  const href = await page.getAttribute("#compare-link", "href");
  await page.click("#compare-link");
  await page.waitForURL(/\/compare\?/);
  const first = await loaded(page);
  await page.click('#norm button[data-norm="filter"]');
  await page.waitForFunction(() => new URL(location.href).searchParams.get("norm") === "filter");
  await page.waitForFunction(() => document.getElementById("filters-a-img").src.includes("norm=filter"));
  const url = page.url();
  await page.screenshot({ path: `${outDir}/compare.png`, fullPage: true });

  const ctx2 = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page2 = await ctx2.newPage();
  page2.on("pageerror", (e) => errors.push(String(e)));
  await page2.goto(url);
  const second = await loaded(page2);
  await page2.screenshot({ path: `${outDir}/compare-phone.png`, fullPage: true });
  const normKept = await page2.evaluate(() => document.getElementById("filters-a-img").src.includes("norm=filter"));
  const same = first.table === second.table;
  console.log(JSON.stringify({ href, url, same, normKept, hits: first.hits, source: first.source, table: first.table, errors }));
  if (!same || !normKept || errors.length || !href.includes("image=")) process.exit(1);
} finally {
  await browser.close();
}
