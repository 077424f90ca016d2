// The web UI in a real browser (Chromium, headless) against a running pier
// with auth (native or the Worker): what tests/ui/run.sh pushed is
//   prod/app:1.0  a two-platform image (buildah manifest push --all) with a
//                 cosign-type signature attached as a referrer (oras attach)
//   prod/app:0.9  the same index under a tag the admin deletes
//   ci/tool:v1    an image anyone may pull
// Roles (tests/auth/policy.toml): admin (root), production (prod-puller,
// pulls prod/** only), anonymous. Every request to another host is aborted
// and the last test asserts none was attempted.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import { BASE, launch, screenshot, signIn, texts, token } from "./lib.mjs";

const HOST = new URL(BASE).host;
let browser, open, foreign;

before(async () => {
  ({ browser, open, foreign } = await launch());
});

after(async () => {
  await browser?.close();
});

test("an anonymous visitor sees only what anonymous callers may pull", async () => {
  const page = await open();
  await page.goto(`${BASE}/ui/`);
  const names = await texts(page, "ul.repos li a");
  assert.ok(names.includes("ci/tool"), `ci/tool is listed: ${names}`);
  assert.ok(!names.includes("prod/app"), `prod/app is not: ${names}`);
  const anonymous = await (await fetch(`${BASE}/_pier/repositories`)).json();
  assert.deepEqual(names, anonymous.repositories);
  assert.deepEqual(await texts(page, "#session a"), ["Sign in"]);
  await page.goto(`${BASE}/ui/#/r/prod/app`);
  await page.waitForSelector("main .problem");
  assert.equal(await page.$("table.tags"), null);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test("the admin signs in, browses to the multi-arch image, its platforms and config", async () => {
  const page = await open();
  await signIn(page, "admin");
  const names = await texts(page, "ul.repos li a");
  assert.ok(names.includes("prod/app") && names.includes("ci/tool"), `${names}`);
  await screenshot(page, "repositories");

  await page.click("ul.repos a[href='#/r/prod/app']");
  await page.waitForSelector("table.tags tr[data-tag='1.0']");
  const row = await page.$eval("tr[data-tag='1.0']", (tr) => tr.textContent);
  assert.match(row, /linux\/amd64/);
  assert.match(row, /linux\/arm64/);
  assert.match(row, /signed/);
  assert.ok(await page.$("svg.timeline"), "the tag history is drawn");
  await screenshot(page, "repository");

  await page.click("tr[data-tag='1.0'] a.tag");
  const platforms = await texts(page, "table.platforms tbody tr a");
  assert.deepEqual(platforms.sort(), ["linux/amd64", "linux/arm64"]);
  await page.waitForSelector("section.referrers li[data-kind=signature]");
  await screenshot(page, "index");

  await page.click("table.platforms tr[data-platform='linux/arm64'] a");
  await page.waitForSelector("section.config");
  const config = await page.$eval("section.config", (s) => s.textContent);
  assert.match(config, /\/hello/, "the entrypoint");
  assert.match(config, /GREETING=hi/, "the environment");
  assert.match(config, /linux\/arm64/, "the platform");
  assert.match(config, /org\.opencontainers\.image\.title/, "the labels");
  assert.ok(await page.$("figure.chart svg.size-bar rect"), "the size breakdown is drawn");
  await screenshot(page, "image");
  assert.deepEqual(page.errors, []);
  await page.close();
});

test("the signature opens from the image's referrers", async () => {
  const page = await open();
  await signIn(page, "admin");
  const { digest } = await (await fetch(`${BASE}/_pier/repositories/prod/app/tags`, {
    headers: { Authorization: `Bearer ${await token("admin", "repository:prod/app:pull")}` },
  })).json().then((body) => body.tags.find((t) => t.tag === "1.0"));
  await page.goto(`${BASE}/ui/#/r/prod/app/${digest}?tag=1.0`);
  await page.waitForSelector("section.referrers li[data-kind=signature] a");
  await page.click("section.referrers li[data-kind=signature] a");
  await page.waitForFunction(() => /artifact application\/vnd\.dev\.cosign\.artifact\.sig\.v1\+json/.test(document.querySelector("main").textContent));
  const subject = await page.$eval("p.subject a", (a) => a.getAttribute("href"));
  assert.equal(subject, `#/r/prod/app/${digest}`, "the signature links back to what it signs");
  const annotations = await page.$eval("section.layer-annotations", (s) => s.textContent);
  assert.match(annotations, /dev\.cosignproject\.cosign\/signature/);
  await screenshot(page, "signature");
  await page.close();
});

test("a pull command is copied to the clipboard", async () => {
  const page = await open();
  await signIn(page, "admin");
  await page.goto(`${BASE}/ui/#/r/prod/app`);
  await page.waitForSelector("section.pull button[data-tool=docker]");
  for (const tool of ["docker", "crane"]) {
    await page.click(`section.pull button[data-tool=${tool}]`);
    await page.waitForFunction((t) => document.querySelector("section.pull .copied").textContent.includes(t), {}, tool);
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    const shown = await page.$eval(`section.pull li:has(button[data-tool=${tool}]) code`, (c) => c.textContent);
    assert.equal(copied, shown);
    assert.ok(copied.includes(`${HOST}/prod/app:`), copied);
  }
  assert.match(await page.evaluate(() => navigator.clipboard.readText()), /^crane pull --insecure \S+\/prod\/app:\S+ app\.tar$/);
  await page.close();
});

test("a reader is offered no delete, and the server refuses the reader's token", async () => {
  const page = await open();
  await signIn(page, "production");
  await page.goto(`${BASE}/ui/#/r/prod/app`);
  await page.waitForSelector("tr[data-tag='0.9']");
  assert.equal(await page.$("button[data-action=delete]"), null, "no delete button");
  assert.equal(await page.$("#nav a[href='#/admin']"), null, "no admin link");
  // The token the UI holds for this repository, as the page would send it.
  const held = await page.evaluate(() => JSON.parse(sessionStorage.getItem("pier.tokens"))["repository:prod/app:pull,push,delete"].token);
  const refused = await fetch(`${BASE}/v2/prod/app/manifests/0.9`, { method: "DELETE", headers: { Authorization: `Bearer ${held}` } });
  assert.equal(refused.status, 403);
  assert.equal((await refused.json()).errors[0].code, "DENIED");
  const still = await fetch(`${BASE}/v2/prod/app/manifests/0.9`, {
    method: "HEAD",
    headers: { Authorization: `Bearer ${await token("admin", "repository:prod/app:pull")}`, Accept: "application/vnd.oci.image.index.v1+json" },
  });
  assert.equal(still.status, 200, "the tag is still there");
  await page.click("#session button");
  await page.waitForSelector("#session a[href='#/signin']");
  assert.deepEqual(await page.evaluate(() => [sessionStorage.getItem("pier.session"), sessionStorage.getItem("pier.tokens")]), [null, null]);
  await page.close();
});

test("the admin deletes a tag; it is gone through the API", async () => {
  const page = await open();
  await signIn(page, "admin");
  await page.goto(`${BASE}/ui/#/r/prod/app`);
  await page.waitForSelector("tr[data-tag='0.9'] button[data-action=delete]");
  await page.click("tr[data-tag='0.9'] button[data-action=delete]");
  await page.click("tr[data-tag='0.9'] button[data-action=confirm-delete]");
  await page.waitForFunction(() => !document.querySelector("tr[data-tag='0.9']"));
  const admin = { Authorization: `Bearer ${await token("admin", "repository:prod/app:pull")}` };
  const gone = await fetch(`${BASE}/v2/prod/app/manifests/0.9`, { headers: { ...admin, Accept: "application/vnd.oci.image.index.v1+json" } });
  assert.equal(gone.status, 404);
  const listed = await (await fetch(`${BASE}/v2/prod/app/tags/list`, { headers: admin })).json();
  assert.deepEqual(listed.tags.filter((t) => !t.startsWith("sha256-")), ["1.0"]);
  await page.close();
});

test("the admin panel shows the last collection and the event deliveries", async () => {
  const page = await open();
  await signIn(page, "admin");
  await page.click("#nav a[href='#/admin']");
  await page.waitForSelector("section.gc");
  const text = await page.$eval("main", (m) => m.textContent);
  assert.match(text, /Last garbage collection/);
  assert.match(text, /Pending event deliveries/);
  assert.match(text, /Failed event deliveries/);
  // The pushes of prod/app wait for the webhook run.sh points at a closed port.
  const pending = await texts(page, "section.deliveries[data-dead=false] tbody tr");
  assert.ok(pending.some((row) => /push prod\/app/.test(row)), `${pending}`);
  await screenshot(page, "admin");
  assert.deepEqual(page.errors, []);
  await page.close();
});

test("no page asked another host for anything", async () => {
  const attempted = [...foreign];
  // The guard itself: a request to another host is caught and aborted.
  const page = await open();
  await page.goto(`${BASE}/ui/`);
  // (The page's content security policy stops its own requests to other
  // hosts before they are made; a navigation is not subject to it.)
  await assert.rejects(page.goto("http://pier-ui-test.invalid/x"));
  assert.deepEqual(foreign.slice(attempted.length), ["http://pier-ui-test.invalid/x"]);
  await page.close();
  assert.deepEqual(attempted, []);
});
