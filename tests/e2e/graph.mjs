// A graph network (an imported ResNet-18) in a real browser: pick the unit
// layer3.1 from the grouped list, click its strongest map and see its
// projection, then compute the occlusion maps.
// usage: node graph.mjs BASE_URL IMAGE OUT_DIR
import { launch } from "./launch.mjs";

const [base, imagePath, outDir] = process.argv.slice(2);

const browser = await launch();
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base);
  await page.setInputFiles("#file", imagePath);
  await page.waitForSelector("#maps-panel:not([hidden]) .tile", { timeout: 60000 });
  const options = await page.evaluate(() => [...document.querySelectorAll("#layer-select option")].length);
  const value = await page.evaluate(() =>
    [...document.querySelectorAll("#layer-select option")].find((o) => o.textContent.startsWith("layer3.1 ·")).value);
  await page.selectOption("#layer-select", value);
  await page.waitForFunction((l) => new URL(location.href).searchParams.get("layer") === l, value);
  await page.selectOption("#sort", "peak");
  await page.waitForSelector("#grid .tile");
  await page.click("#grid .tile >> nth=0");
  await page.waitForFunction(() => {
    const i = document.getElementById("projection");
    return i && i.src.includes("projection.png") && i.complete && i.naturalWidth > 0 && !document.getElementById("detail").hidden;
  }, null, { timeout: 60000 });
  const caption = await page.textContent("#proj-caption");
  const src = await page.getAttribute("#projection", "src");
  await page.screenshot({ path: `${outDir}/resnet-unit.png`, fullPage: true });
  await page.click('#views button[data-view="occlusion"]');
  await page.fill("#occ-stride", "32");
  await page.click("#occ-run");
  await page.waitForSelector("#occ-maps:not([hidden])", { timeout: 120000 });
  await page.waitForSelector("#occ-downloads:not([hidden])", { timeout: 120000 });
  const lastConv = await page.textContent("#occ-maps .last-conv");
  await page.screenshot({ path: `${outDir}/resnet-occlusion.png`, fullPage: true });
  console.log(JSON.stringify({ options, value, caption, src, lastConv, errors }));
  if (errors.length) process.exit(1);
} finally {
  await browser.close();
}
