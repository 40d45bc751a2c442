// The live occluder on a phone: a touch drag (real touch events through
// the DevTools protocol, so the browser makes the pointer events) moves
// the square and updates the readout.
// usage: node touch.mjs BASE_URL _ OUT_DIR
import { launch } from "./launch.mjs";

const [base, _unused, outDir] = process.argv.slice(2);

const browser = await launch();
try {
  const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true, deviceScaleFactor: 2 });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const ex = (await (await page.request.get(`${base}/api/examples`)).json()).examples[0].id;
  await page.goto(`${base}/?image=${ex}&view=occlusion&ox=0&oy=0&size=48`);
  await page.waitForSelector("#occ-stage img", { state: "visible" });
  await page.waitForFunction(() => /\d/.test(document.getElementById("live-prob").textContent), null, { timeout: 60000 });
  const before = await page.evaluate(() => ({ url: location.href, prob: document.getElementById("live-prob").textContent,
    left: document.getElementById("occ-square").style.left }));
  await page.locator("#occ-stage").scrollIntoViewIfNeeded();
  const scrollY = await page.evaluate(() => window.scrollY);
  const box = await page.locator("#occ-stage").boundingBox();
  const cdp = await ctx.newCDPSession(page);
  const touch = (type, x, y) => cdp.send("Input.dispatchTouchEvent", { type, touchPoints: type === "touchEnd" ? [] : [{ x, y }] });
  // Start on the square (top left), drag it towards the bottom right.
  let x = box.x + 10, y = box.y + 10;
  await touch("touchStart", x, y);
  for (let i = 0; i < 8; i++) { x += box.width * 0.06; y += box.height * 0.06; await touch("touchMove", x, y); await page.waitForTimeout(30); }
  await touch("touchEnd", x, y);
  await page.waitForFunction((u) => location.href !== u, before.url, { timeout: 30000 });
  await page.waitForTimeout(1500);
  const after = await page.evaluate(() => {
    const q = new URL(location.href).searchParams;
    return { ox: Number(q.get("ox")), oy: Number(q.get("oy")), prob: document.getElementById("live-prob").textContent,
      left: document.getElementById("occ-square").style.left, scrollY: window.scrollY };
  });
  after.scrolled = after.scrollY - scrollY;
  await page.screenshot({ path: `${outDir}/touch-occluder.png` });
  console.log(JSON.stringify({ before, after, width: box.width, errors }));
} finally {
  await browser.close();
}
