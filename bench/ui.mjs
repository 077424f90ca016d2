// Times the web UI's repository list in headless Chromium for bench/ui.sh:
// from the start of navigation to the first page rendered (its 50 links in
// the DOM), measured by the page's own clock (performance.now(), which
// starts at navigation), on a first visit and on repeated ones, and with a
// filter that matches one repository. Prints medians in milliseconds.
//
// Usage: PIER_URL=... node bench/ui.mjs N

import { launch } from "../tests/ui/lib.mjs";

const count = Number(process.argv[2]);
const base = process.env.PIER_URL;
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const { browser, open, foreign } = await launch();

/** Milliseconds from navigation to `links` repository links rendered, in a new tab (same browser cache). */
async function visit(hash, links) {
  const page = await open();
  await page.goto(`${base}/ui/${hash}`, { waitUntil: "domcontentloaded" });
  await page.waitForFunction((n) => document.querySelectorAll("ul.repos li a").length >= n, { polling: "mutation" }, links);
  const elapsed = await page.evaluate(() => performance.now());
  await page.close();
  return elapsed;
}

const first = await visit("#/", 50);
const again = [];
for (let i = 0; i < 9; i += 1) again.push(await visit("#/", 50));
const filtered = [];
const wanted = `app-${String(count - 1).padStart(5, "0")}`;
for (let i = 0; i < 5; i += 1) filtered.push(await visit(`#/?q=${wanted}`, 1));
await browser.close();
if (foreign.length) throw new Error(`requests to other hosts: ${foreign}`);
console.log(`repositories: ${count}`);
console.log(`first page, first visit: ${first.toFixed(0)} ms`);
console.log(`first page, later visits (median of 9): ${median(again).toFixed(0)} ms`);
console.log(`filter matching 1 of ${count} (median of 5): ${median(filtered).toFixed(0)} ms`);
