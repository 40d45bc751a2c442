// A newcomer's first minute: the empty page offers the bundled examples;
// click one, open conv5, click a map, reach its projection. Every
// Content-Security-Policy violation on the way is reported.
// usage: node examples.mjs BASE_URL _ OUT_DIR
import { launch } from "./launch.mjs";

const [base, _unused, outDir] = process.argv.slice(2);

const browser = await launch();
try {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error" && /Content Security Policy/i.test(m.text())) errors.push(m.text()); });
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  await page.goto(base);
  await page.waitForSelector("#examples:not([hidden]) .example img");
  await page.waitForFunction(() => [...document.querySelectorAll(".example img")].every((i) => i.complete && i.naturalWidth > 0));
  const offered = await page.$$eval(".example", (bs) => bs.map((b) => ({ id: b.dataset.id, name: b.textContent, title: b.title })));
  const title = await page.textContent("#examples-title");
  await page.screenshot({ path: `${outDir}/empty.png`, fullPage: true });
  await page.click(".example >> nth=0");
  await page.waitForSelector("#maps-panel:not([hidden]) .tile", { timeout: 60000 });
  await page.click(`#layers button[data-layer="5"]`);
  await page.waitForSelector("#grid .tile");
  await page.click("#grid .tile >> nth=0");
  await page.waitForFunction(() => {
    const i = document.getElementById("projection");
    return i && i.src.includes("projection.png") && i.complete && i.naturalWidth > 0;
  }, null, { timeout: 60000 });
  const url = page.url();
  const top5 = await page.$$eval("#top5 li", (li) => li.length);
  const knows = await page.textContent("#knows");
  // By default the pair as the paper draws it: receptive field, own contrast.
  await page.waitForFunction(() => /own contrast ×/.test(document.getElementById("patch-proj-cap").textContent));
  const patches = await page.evaluate(() => {
    const spread = (id) => {
      const c = document.getElementById(id), d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let lo = 255, hi = 0;
      for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }
      return hi - lo;
    };
    return { fieldShown: !document.getElementById("field-pair").hidden, fullShown: !document.getElementById("full-pair").hidden,
      input: spread("patch-in"), proj: spread("patch-proj"), cap: document.getElementById("patch-in-cap").textContent };
  });
  await page.screenshot({ path: `${outDir}/example-projection.png`, fullPage: true });
  await page.click('#frames button[data-frame="full"]');
  await page.waitForFunction(() => new URL(location.href).searchParams.get("frame") === "full");
  patches.fullAfterToggle = await page.evaluate(() => !document.getElementById("full-pair").hidden && document.getElementById("field-pair").hidden);
  await page.screenshot({ path: `${outDir}/example-fullframe.png`, fullPage: true });
  // Occlusion maps: (d) on a fitted scale (a 0-1 box for the fixed one),
  // (e) with a distinct colour per label.
  await page.click('#views button[data-view="occlusion"]');
  await page.fill("#occ-stride", "32");
  await page.press("#occ-stride", "Tab");
  await page.click("#occ-run");
  await page.waitForSelector("#occ-maps:not([hidden]) #legend i", { timeout: 60000 });
  const legend = await page.$$eval("#legend i", (is) => is.map((i) => getComputedStyle(i).backgroundColor));
  const scaleFitted = (await page.textContent("#scale-d")).replace(/\s+/g, " ").trim();
  await page.check("#occ-fixed");
  const scaleFixed = (await page.textContent("#scale-d")).replace(/\s+/g, " ").trim();
  await page.screenshot({ path: `${outDir}/example-occlusion.png`, fullPage: true });
  // "Download figure" links answer the figure's PNG.
  const fetchFigure = async (sel) => {
    await page.waitForSelector(`${sel}:not([hidden])`, { timeout: 120000 });
    const href = await page.getAttribute(sel, "href");
    const r = await page.request.get(new URL(href, base).href);
    return { href, status: r.status(), type: r.headers()["content-type"], download: await page.getAttribute(sel, "download") };
  };
  const figures = { fig7: await fetchFigure("#dl-fig7"), fig3: await fetchFigure("#arch-dl") };
  // Without --dataset the dataset views run over the examples and uploads.
  const randomHidden = await page.evaluate(() => document.getElementById("random-image").hidden);
  await page.click('#views button[data-view="dataset"]');
  await page.waitForSelector("#ds-body .ds-row", { timeout: 120000 });
  await page.waitForFunction(() => /example photos/.test(document.getElementById("ds-source").textContent));
  const source = await page.textContent("#ds-source");
  // "Full frame" was chosen in the image view: the dataset view follows;
  // its own toggle goes back to receptive-field cuts.
  const dsFrame = { full: await page.$eval("#ds-body .ds-cell", (c) => c.style.backgroundImage) };
  await page.click('#ds-frames button[data-frame="field"]');
  await page.waitForFunction(() => (document.querySelector("#ds-body .ds-cell") || { style: {} }).style.backgroundImage?.includes("frame=field"), null, { timeout: 60000 });
  dsFrame.field = await page.$eval("#ds-body .ds-cell", (c) => c.style.backgroundImage);
  const top9Rows = await page.$$eval("#ds-body .ds-row", (r) => r.length);
  figures.fig2 = await fetchFigure("#ds-dl");
  await page.screenshot({ path: `${outDir}/dataset-top9.png`, fullPage: true });
  await page.click('#views button[data-view="timeline"]');
  const staleRows = await page.$$eval("#ds-body .ds-row", (r) => r.length);
  await page.waitForSelector("#ds-body table.timeline", { timeout: 120000 });
  const timeline = await page.evaluate(() => ({
    title: document.getElementById("ds-title").textContent,
    rows: document.querySelectorAll("#ds-body .ds-row").length,
    epochs: document.querySelectorAll("#ds-body table.timeline thead th[data-c]").length,
  }));
  figures.fig4 = await fetchFigure("#ds-dl");
  await page.screenshot({ path: `${outDir}/dataset-timeline.png`, fullPage: true });
  // Top 9 of this layer: receptive-field cuts by default.
  await page.click('#views button[data-view="top9"]');
  await page.waitForSelector("#top9 figure .pic9");
  await page.click('#top9-frames button[data-frame="full"]');
  await page.waitForFunction(() => document.querySelector("#top9 figure .pic9").style.backgroundImage.includes("frame=full"));
  const top9Full = await page.$eval("#top9 figure .pic9", (p) => p.style.backgroundImage);
  await page.click('#top9-frames button[data-frame="field"]');
  await page.waitForFunction(() => document.querySelector("#top9 figure .pic9").style.backgroundImage.includes("frame=field"));
  const top9Frame = { full: top9Full, field: await page.$eval("#top9 figure .pic9", (p) => p.style.backgroundImage) };
  await page.screenshot({ path: `${outDir}/image-top9.png`, fullPage: true });
  const csp = await page.evaluate(() => window.__csp);
  console.log(JSON.stringify({ offered, title, url, top5, knows, patches, legend, scaleFitted, scaleFixed, figures, randomHidden,
    source, top9Rows, dsFrame, staleRows, timeline, top9Frame, errors, csp }));
} finally {
  await browser.close();
}
