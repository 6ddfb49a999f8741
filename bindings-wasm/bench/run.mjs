// Runs the browser benchmarks in headless Chromium against the real hub and prints the figures:
//   node bench/run.mjs [frames] [e2e-messages]   (after ./build.sh and bench/build.sh)
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startHub } from "../test/hub.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const [frames = "50000", e2e = "20000"] = process.argv.slice(2);
const hub = await startHub(["--static", path.resolve(here, "../dist/bench"), "--rate", "off", "--outbound-queue", "1000000"]);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  await page.goto(`${hub.http}/index.html?frames=${frames}&e2e=${e2e}`);
  await page.waitForFunction(() => window.benchResult !== undefined, null, { timeout: 180_000 });
  const result = await page.evaluate(() => window.benchResult);
  console.log(JSON.stringify(result, null, 2));
  if (result.error) process.exitCode = 1;
} finally {
  await browser.close();
  await hub.kill();
}
