// Debian's chromium, headless, as every browser test starts it
// (CHROMIUM overrides the path; nothing is downloaded).
import { chromium } from "playwright-core";

const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--no-first-run", "--disable-quic", "--disable-component-update", "--disable-sync"];

export const launch = () => chromium.launch({ executablePath, args, headless: true });
