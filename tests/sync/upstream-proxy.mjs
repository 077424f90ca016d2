// The upstream of tests/sync as a sync rule sees it: a proxy in front of a
// real pier (the upstream registry), which passes requests through, slowed
// down when told (so a pass can be killed half-way), and lies for a few
// repositories, as a hostile or broken upstream would:
//   tampered/...  GET of a manifest by digest: the real bytes with a space
//                 added (they no longer match the digest HEAD announced)
//   badlink/...   tag list: a `Link` to the next page on the collector's
//                 port (another origin)
//   realm/...     401 Bearer whose realm is on the collector's port, a
//                 token endpoint no rule allows
// A collector on a second port answers 200 to anything and appends one
// JSON line per request (method, URL, headers) to FILE: nothing may reach it.
// Control: POST /_proxy/delay?ms=N delays every later answer by N ms.
// Prints {"proxy": PORT, "collector": PORT} once both listen.
// Usage: node upstream-proxy.mjs UPSTREAM_HOST:PORT FILE
import fs from "node:fs";
import http from "node:http";

const [upstream, file] = process.argv.slice(2);
const [upstreamHost, upstreamPort] = upstream.split(":");
fs.writeFileSync(file, "");
let delayMs = 0;
let collectorPort = 0;

const collector = http.createServer((req, res) => {
  req.resume();
  fs.appendFileSync(file, JSON.stringify({ method: req.method, url: req.url, headers: req.headers }) + "\n");
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify({ token: "stolen", tags: ["x"], name: "x" }));
});

// Sends the request on to the upstream pier; `rewrite` may change a 200
// answer's body (then Content-Length follows it) and headers.
function forward(req, res, rewrite) {
  const out = http.request(
    { host: upstreamHost, port: upstreamPort, method: req.method, path: req.url, headers: req.headers },
    (answer) => {
      if (!rewrite || answer.statusCode !== 200) {
        res.writeHead(answer.statusCode, answer.headers);
        return answer.pipe(res);
      }
      const chunks = [];
      answer.on("data", (chunk) => chunks.push(chunk));
      answer.on("end", () => {
        const { body, headers } = rewrite(Buffer.concat(chunks), { ...answer.headers });
        headers["content-length"] = String(body.length);
        res.writeHead(200, headers);
        res.end(body);
      });
    },
  );
  out.on("error", () => {
    res.writeHead(502);
    res.end();
  });
  req.pipe(out);
}

function handle(req, res) {
  const url = new URL(req.url, "http://proxy");
  const repo = url.pathname.split("/")[2];
  if (repo === "tampered" && /\/manifests\/sha256:/.test(url.pathname) && req.method === "GET") {
    return forward(req, res, (body, headers) => ({ body: Buffer.concat([body, Buffer.from(" ")]), headers }));
  }
  if (repo === "badlink" && url.pathname.endsWith("/tags/list")) {
    return forward(req, res, (body, headers) => {
      headers.link = `<http://127.0.0.1:${collectorPort}${url.pathname}?n=1000&last=zzz>; rel="next"`;
      return { body, headers };
    });
  }
  if (repo === "realm") {
    req.resume();
    res.writeHead(401, {
      "content-type": "application/json",
      "www-authenticate": `Bearer realm="http://127.0.0.1:${collectorPort}/token",service="upstream"`,
    });
    return res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "a token, please" }] }));
  }
  forward(req, res);
}

const proxy = http.createServer((req, res) => {
  const url = new URL(req.url, "http://proxy");
  if (url.pathname === "/_proxy/delay" && req.method === "POST") {
    delayMs = Number(url.searchParams.get("ms") || 0);
    req.resume();
    res.writeHead(204);
    return res.end();
  }
  if (delayMs > 0) return setTimeout(() => handle(req, res), delayMs);
  handle(req, res);
});

collector.listen(0, "127.0.0.1", () => {
  collectorPort = collector.address().port;
  proxy.listen(0, "127.0.0.1", () => {
    console.log(JSON.stringify({ proxy: proxy.address().port, collector: collectorPort }));
  });
});
