// A stand-in upstream registry for the pull-through cache tests that real
// registries cannot play: it serves one repository, `gated/blob`, with
//   - two good blobs whose GETs send the first half at once and the rest
//     only after POST /release (so a test can see the first puller receive
//     bytes while upstream is still sending, or leave half way), and
//   - a bad blob whose bytes do not match its digest.
// POST /hold gates later GETs again. GET /digests tells the test what it serves.
// Usage: node gated-upstream.mjs SIZE   (prints the port it listens on)
import { createServer } from "node:http";
import { createHash, randomBytes } from "node:crypto";

const size = Number(process.argv[2] || 8 << 20);
const digestOf = (bytes) => "sha256:" + createHash("sha256").update(bytes).digest("hex");
const blobs = new Map();
const good = randomBytes(size);
const other = randomBytes(size);
const badDigest = digestOf(randomBytes(size)); // what the bad blob claims to be
blobs.set(digestOf(good), good);
blobs.set(digestOf(other), other);
blobs.set(badDigest, randomBytes(size));
let released = false;
let waiting = [];

const server = createServer((req, res) => {
  const url = new URL(req.url, "http://upstream");
  if (req.method === "POST" && url.pathname === "/release") {
    released = true;
    waiting.forEach((go) => go());
    waiting = [];
    return res.end("released\n");
  }
  if (req.method === "POST" && url.pathname === "/hold") {
    released = false;
    return res.end("holding\n");
  }
  if (url.pathname === "/digests") {
    return res.end(JSON.stringify({ good: digestOf(good), other: digestOf(other), bad: badDigest, size }));
  }
  if (url.pathname === "/v2/" || url.pathname === "/v2") {
    res.setHeader("content-type", "application/json");
    return res.end("{}");
  }
  const match = url.pathname.match(/^\/v2\/gated\/blob\/blobs\/(sha256:[0-9a-f]{64})$/);
  const body = match && blobs.get(match[1]);
  if (!body) {
    res.statusCode = 404;
    res.setHeader("content-type", "application/json");
    return res.end(JSON.stringify({ errors: [{ code: "BLOB_UNKNOWN", message: "unknown" }] }));
  }
  res.setHeader("content-type", "application/octet-stream");
  res.setHeader("content-length", body.length);
  res.setHeader("docker-content-digest", match[1]);
  if (req.method === "HEAD") return res.end();
  const half = body.length >> 1;
  res.write(body.subarray(0, half));
  const rest = () => res.end(body.subarray(half));
  if (released) rest();
  else waiting.push(rest);
});
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
