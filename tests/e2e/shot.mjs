// Manual look: node shot.mjs URL OUT.png [clickSelector] [waitMs] [width]
import { launch } from "./launch.mjs";
const [url, out, click, wait, width] = process.argv.slice(2);
const browser = await launch();
const page = await browser.newPage({ viewport: { width: Number(width || 1280), height: 900 } });
page.on("pageerror", (e) => console.log("pageerror", String(e)));
page.on("console", (m) => console.log("console", m.text()));
await page.goto(url);
await page.waitForTimeout(1500);
if (click) { await page.click(click); }
await page.waitForTimeout(Number(wait || 1500));
await page.screenshot({ path: out, fullPage: true });
console.log(page.url());
await browser.close();
