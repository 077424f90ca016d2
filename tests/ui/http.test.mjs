// The UI's endpoints over plain HTTP, against a running pier with auth
// (native or the Worker) holding what tests/ui/run.sh pushed (see
// browser.test.mjs): the assets' headers (types, CSP, ETag and 304, unknown
// files) and the JSON API's access checks and bad inputs, compared with
// what the distribution API answers the same caller.

import { test } from "node:test";
import assert from "node:assert/strict";

import { BASE, basic, token } from "./lib.mjs";

const get = (path, headers = {}, method = "GET") => fetch(`${BASE}${path}`, { method, headers, redirect: "manual" });
const bearer = async (role, ...scopes) => ({ Authorization: `Bearer ${await token(role, ...scopes)}` });
const errorCode = async (response) => (await response.json()).errors?.[0]?.code;

test("the page and its files come with their types, a strict policy and an ETag", async () => {
  const page = await get("/ui/");
  assert.equal(page.status, 200);
  assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
  const policy = page.headers.get("content-security-policy");
  for (const directive of ["default-src 'self'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]) {
    assert.ok(policy.includes(directive), `${directive} in ${policy}`);
  }
  assert.ok(!policy.includes("unsafe-inline"), policy);
  assert.equal(page.headers.get("x-content-type-options"), "nosniff");
  const html = await page.text();
  assert.ok(!/<script(?![^>]*\bsrc=)[^>]*>/.test(html), "no inline script");
  for (const [file, type] of [["app.js", "text/javascript; charset=utf-8"], ["style.css", "text/css; charset=utf-8"], ["icon.svg", "image/svg+xml"]]) {
    const asset = await get(`/ui/${file}`);
    assert.equal(asset.status, 200, file);
    assert.equal(asset.headers.get("content-type"), type, file);
    const etag = asset.headers.get("etag");
    assert.match(etag, /^"[0-9a-f]{64}"$/, file);
    const again = await get(`/ui/${file}`, { "If-None-Match": etag });
    assert.equal(again.status, 304, file);
    assert.equal(again.headers.get("etag"), etag);
    assert.equal(await again.text(), "");
    assert.equal((await get(`/ui/${file}`, { "If-None-Match": '"another"' })).status, 200);
  }
});

test("unknown files are not found, the root leads to the UI, only GET and HEAD are served", async () => {
  for (const path of ["/ui/missing.js", "/ui/app.js/x", "/ui/index.html"]) {
    const response = await get(path);
    assert.equal(response.status, 404, path);
    assert.equal(await errorCode(response), "UNSUPPORTED", path);
  }
  for (const path of ["/", "/ui"]) {
    const response = await get(path);
    assert.equal(response.status, 302, path);
    assert.equal(response.headers.get("location"), "/ui/");
  }
  assert.equal((await get("/ui/app.js", {}, "HEAD")).status, 200);
  for (const method of ["POST", "PUT", "DELETE"]) assert.equal((await get("/ui/", {}, method)).status, 405, method);
});

test("the repository list shows each caller what it may pull", async () => {
  const listed = async (headers) => (await (await get("/_pier/repositories", headers)).json()).repositories;
  const anonymous = await listed();
  assert.ok(anonymous.includes("ci/tool") && !anonymous.includes("prod/app"), `${anonymous}`);
  const reader = await listed(await bearer("production"));
  assert.ok(reader.includes("prod/app") && reader.includes("ci/tool"), `${reader}`);
  const admin = await listed({ Authorization: basic("admin") });
  assert.ok(admin.includes("prod/app"));
  const sandbox = await listed({ Authorization: basic("sandbox") });
  assert.ok(!sandbox.includes("prod/app"), `${sandbox}`);
  const wrong = await get("/_pier/repositories", { Authorization: "Basic " + Buffer.from("root:wrong").toString("base64") });
  assert.equal(wrong.status, 401);
  assert.equal(await errorCode(wrong), "UNAUTHORIZED");
  assert.equal((await get("/_pier/repositories")).headers.get("cache-control"), "no-store");
});

test("the repository list pages and filters", async () => {
  const admin = { Authorization: basic("admin") };
  const first = await get("/_pier/repositories?n=1", admin);
  const body = await first.json();
  assert.equal(body.repositories.length, 1);
  const link = first.headers.get("link");
  assert.match(link, /^<\/_pier\/repositories\?n=1&last=[^>]+>; rel="next"$/);
  const second = await (await get(link.slice(1, link.indexOf(">")), admin)).json();
  assert.notDeepEqual(second.repositories, body.repositories);
  assert.ok(second.repositories[0] > body.repositories[0]);
  const filtered = await get("/_pier/repositories?q=app&n=1", admin);
  assert.deepEqual((await filtered.json()).repositories, ["prod/app"]);
  const none = await (await get("/_pier/repositories?q=no-such-thing", admin)).json();
  assert.deepEqual(none.repositories, []);
  for (const n of ["abc", "-1", "1.5"]) {
    const bad = await get(`/_pier/repositories?n=${n}`, admin);
    assert.equal(bad.status, 400, n);
    assert.equal(await errorCode(bad), "UNSUPPORTED");
  }
});

test("a repository's tags: sizes, platforms, signature, times and the caller's actions", async () => {
  const response = await get("/_pier/repositories/prod/app/tags", await bearer("admin", "repository:prod/app:*"));
  assert.equal(response.status, 200);
  const body = await response.json();
  assert.equal(body.name, "prod/app");
  assert.deepEqual(body.actions, ["pull", "push", "delete"]);
  const tag = body.tags.find((t) => t.tag === "1.0");
  assert.equal(tag.media_type, "application/vnd.oci.image.index.v1+json");
  assert.deepEqual(tag.platforms.map((p) => p.platform).sort(), ["linux/amd64", "linux/arm64"]);
  assert.equal(tag.size, tag.platforms.reduce((sum, p) => sum + p.size, 0));
  assert.ok(tag.platforms.every((p) => p.size > 0 && /^sha256:/.test(p.digest)));
  assert.equal(tag.signed, true);
  assert.equal(tag.last_pull, null);
  assert.ok(Math.abs(Date.parse(tag.pushed) - tag.pushed_ms) < 1000);
  // The manifest the API describes is the one the distribution API serves.
  const manifest = await get(`/v2/prod/app/manifests/1.0`, { ...(await bearer("admin", "repository:prod/app:pull")), Accept: tag.media_type });
  assert.equal(manifest.headers.get("docker-content-digest"), tag.digest);
  const reader = await (await get("/_pier/repositories/prod/app/tags", await bearer("production", "repository:prod/app:*"))).json();
  assert.deepEqual(reader.actions, ["pull"]);
  const tool = await (await get("/_pier/repositories/ci/tool/tags")).json();
  assert.deepEqual(tool.actions, ["pull"]);
  assert.equal(tool.tags[0].signed, false);
  assert.deepEqual(tool.tags[0].platforms.map((p) => p.platform), ["linux/amd64"]);
  const paged = await get("/_pier/repositories/prod/app/tags?n=1", await bearer("admin", "repository:prod/app:pull"));
  assert.equal((await paged.json()).tags.length, 1);
  assert.match(paged.headers.get("link"), /^<\/_pier\/repositories\/prod\/app\/tags\?n=1&last=[^>]+>; rel="next"$/);
});

test("tags of a repository the caller may not pull: the distribution API's answer", async () => {
  const callers = [
    ["anonymous", {}],
    ["sandbox user", { Authorization: basic("sandbox") }],
    ["reader's token for another repository", await bearer("production", "repository:prod/other:pull")],
  ];
  for (const [who, headers] of callers) {
    const ours = await get("/_pier/repositories/prod/app/tags", headers);
    const theirs = await get("/v2/prod/app/tags/list", headers);
    assert.equal(ours.status, theirs.status, who);
    assert.ok([401, 403].includes(ours.status), `${who}: ${ours.status}`);
    assert.equal(await errorCode(ours), await errorCode(theirs), who);
    assert.equal(ours.headers.get("www-authenticate"), theirs.headers.get("www-authenticate"), who);
  }
});

test("bad requests to the tags endpoint", async () => {
  const admin = { Authorization: basic("admin") };
  const unknown = await get("/_pier/repositories/prod/nothing-here/tags", admin);
  assert.equal(unknown.status, 404);
  assert.equal(await errorCode(unknown), "NAME_UNKNOWN");
  const invalid = await get("/_pier/repositories/Prod/App/tags", admin);
  assert.equal(invalid.status, 400);
  assert.equal(await errorCode(invalid), "NAME_INVALID");
  assert.equal((await get("/_pier/repositories/prod/app/other", admin)).status, 404);
  const bad = await get("/_pier/repositories/prod/app/tags?n=x", admin);
  assert.equal(bad.status, 400);
  for (const method of ["POST", "PUT", "DELETE"]) {
    for (const path of ["/_pier/repositories", "/_pier/repositories/prod/app/tags"]) {
      const refused = await get(path, admin, method);
      assert.equal(refused.status, 405, `${method} ${path}`);
      assert.equal(await errorCode(refused), "UNSUPPORTED");
    }
  }
  const head = await get("/_pier/repositories/prod/app/tags", admin, "HEAD");
  assert.equal(head.status, 200);
  assert.equal(await head.text(), "");
});
