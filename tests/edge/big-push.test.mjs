// A 1 GiB blob pushed through the Worker in 64 MiB chunks (each under the
// 100 MB body limit) and pulled back whole, with matching digests: chunked
// pushes of any size work at the edge, and memory stays bounded by a part, not
// by the blob. Reported (and written to PIER_EDGE_MEASUREMENTS if set): the
// resident memory of the local workerd processes, sampled during the run (it
// includes miniflare's R2/KV/cache simulators and uncollected JavaScript
// garbage), and the Worker's wasm memory, which never shrinks and so is the
// peak of what pier's own code held; the test fails if that peak grows with
// the blob instead of staying near a few parts.
//
// Env: PIER_URL (the Worker), PIER_EDGE_PGID (process group of the local
//      wrangler/workerd, for memory sampling; optional),
//      PIER_BIG_PUSH_BYTES (default 1 GiB), PIER_BIG_PUSH_CHUNK (default 64 MiB).
import { test } from 'node:test';
import { createHash, randomFillSync } from 'node:crypto';
import { appendFileSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import {
  BASE,
  assert,
  assertHeader,
  assertStatus,
  finishUpload,
  patchChunk,
  repoName,
  resolveLocation,
  startUpload,
} from '../http/lib.mjs';

const TOTAL = Number(process.env.PIER_BIG_PUSH_BYTES || 1 << 30);
const CHUNK = Number(process.env.PIER_BIG_PUSH_CHUNK || 64 << 20);
const PGID = process.env.PIER_EDGE_PGID;
const MiB = 1 << 20;
// What pier's code may hold at once for one upload: a few parts of 10 MiB and
// the runtime's own allocations; a buffered blob would be far above.
const WASM_MEMORY_LIMIT = 128 * MiB;

async function wasmMemoryBytes() {
  const res = await fetch(`${BASE}/_pier_test/wasm-memory`);
  assert.equal(res.status, 200, 'wasm memory route');
  return Number((await res.text()).trim());
}

// Resident set of every workerd process in the Worker's process group.
function workerdRssBytes() {
  if (!PGID) return null;
  let total = 0;
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[2] !== PGID || !readlinkSync(`/proc/${pid}/exe`).endsWith('/workerd')) continue;
      const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (rss) total += Number(rss[1]) * 1024;
    } catch {
      // the process ended while we looked
    }
  }
  return total;
}

function sampler() {
  const start = workerdRssBytes();
  let peak = start;
  const timer = setInterval(() => {
    const now = workerdRssBytes();
    if (now !== null && now > peak) peak = now;
  }, 200);
  return {
    stop() {
      clearInterval(timer);
      return { start, peak, end: workerdRssBytes() };
    },
  };
}

const mib = (bytes) => (bytes === null ? 'n/a' : `${(bytes / MiB).toFixed(0)} MiB`);

test(`push ${TOTAL / MiB} MiB in ${CHUNK / MiB} MiB chunks and pull it back`, { timeout: 30 * 60 * 1000 }, async (t) => {
  const repo = repoName('big-push');
  const wasmBefore = await wasmMemoryBytes();
  const memory = sampler();
  const hash = createHash('sha256');
  const chunk = Buffer.alloc(CHUNK);
  const session = await startUpload(repo);
  let location = session.location;
  const pushStarted = Date.now();
  for (let offset = 0; offset < TOTAL; offset += CHUNK) {
    const piece = chunk.subarray(0, Math.min(CHUNK, TOTAL - offset));
    randomFillSync(piece);
    hash.update(piece);
    const res = await patchChunk(location, piece, offset);
    assertStatus(res, 202, `chunk at ${offset}`);
    assertHeader(res, 'range', `0-${offset + piece.length - 1}`);
    location = resolveLocation(assertHeader(res, 'location'), res.url);
  }
  const digest = `sha256:${hash.digest('hex')}`;
  assertStatus(await finishUpload(location, digest), 201, 'final PUT');
  const pushSeconds = (Date.now() - pushStarted) / 1000;

  const pullStarted = Date.now();
  const res = await fetch(`${BASE}/v2/${repo}/blobs/${digest}`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-length'), String(TOTAL));
  const pulled = createHash('sha256');
  let received = 0;
  for await (const piece of res.body) {
    pulled.update(piece);
    received += piece.length;
  }
  const pullSeconds = (Date.now() - pullStarted) / 1000;
  const rss = memory.stop();
  const wasmAfter = await wasmMemoryBytes();
  assert.equal(received, TOTAL, 'bytes pulled');
  assert.equal(`sha256:${pulled.digest('hex')}`, digest, 'pulled digest');

  const line =
    `big push: ${TOTAL / MiB} MiB in ${CHUNK / MiB} MiB chunks, push ${pushSeconds.toFixed(1)} s ` +
    `(${(TOTAL / MiB / pushSeconds).toFixed(0)} MiB/s), pull ${pullSeconds.toFixed(1)} s ` +
    `(${(TOTAL / MiB / pullSeconds).toFixed(0)} MiB/s); workerd RSS start ${mib(rss.start)}, ` +
    `peak ${mib(rss.peak)}, end ${mib(rss.end)}; Worker wasm memory ${mib(wasmBefore)} before, ${mib(wasmAfter)} after`;
  t.diagnostic(line);
  if (process.env.PIER_EDGE_MEASUREMENTS) appendFileSync(process.env.PIER_EDGE_MEASUREMENTS, line + '\n');
  assert.ok(wasmAfter <= WASM_MEMORY_LIMIT, `wasm memory ${mib(wasmAfter)} over ${mib(WASM_MEMORY_LIMIT)}`);
});
