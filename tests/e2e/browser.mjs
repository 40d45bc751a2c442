// End-to-end in a real browser: upload the beagle, open conv5, click a map,
// wait for its reconstruction, then open the page URL in a fresh browser
// context and find the same reconstruction.
// usage: node browser.mjs BASE_URL IMAGE OUT_DIR [LAYER]
import { launch } from "./launch.mjs";

const [base, imagePath, outDir, layerArg] = process.argv.slice(2);
const layer = layerArg || "5";

async function projectionLoaded(page) {
  await page.waitForFunction(() => {
    const i = document.getElementById("projection");
    return i && i.src.includes("projection.png") && i.complete && i.naturalWidth > 0 && !document.getElementById("detail").hidden;
  }, null, { timeout: 60000 });
  return page.evaluate(() => {
    const i = document.getElementById("projection");
    const c = document.createElement("canvas");
    c.width = i.naturalWidth; c.height = i.naturalHeight;
    const g = c.getContext("2d");
    g.drawImage(i, 0, 0);
    return { src: i.getAttribute("src"), pixels: c.toDataURL(), w: i.naturalWidth };
  });
}

const browser = await launch();
try {
  const ctx1 = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx1.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base);
  await page.setInputFiles("#file", imagePath);
  await page.waitForSelector("#maps-panel:not([hidden]) .tile", { timeout: 60000 });
  await page.click(`#layers button[data-layer="${layer}"]`);
  await page.waitForFunction((l) => new URL(location.href).searchParams.get("layer") === l, layer);
  const button = await page.textContent(`#layers button[data-layer="${layer}"]`);
  await page.waitForSelector("#grid .tile");
  // Sort by peak and click the strongest map.
  await page.selectOption("#sort", "peak");
  await page.waitForSelector("#grid .tile");
  await page.click("#grid .tile >> nth=0");
  const first = await projectionLoaded(page);
  await page.waitForFunction(() => new URL(location.href).searchParams.has("map"));
  const url = page.url();
  await page.screenshot({ path: `${outDir}/first.png`, fullPage: true });
  // Arrow keys move through the grid.
  await page.keyboard.press("ArrowRight");
  await page.waitForFunction((u) => location.href !== u, url);
  const moved = page.url();

  const ctx2 = await browser.newContext({ viewport: { width: 390, height: 844 } }); // a phone
  const page2 = await ctx2.newPage();
  await page2.goto(url);
  const second = await projectionLoaded(page2);
  await page2.screenshot({ path: `${outDir}/shared-phone.png`, fullPage: true });
  const same = first.src === second.src && first.pixels === second.pixels;
  const q = new URL(url).searchParams;
  const caption = await page2.textContent("#proj-caption");
  console.log(JSON.stringify({ url, moved, same, src: first.src, layer: q.get("layer"), map: q.get("map"), button, caption, errors }));
  if (!same || errors.length || q.get("layer") !== layer || moved === url) process.exit(1);
} finally {
  await browser.close();
}
