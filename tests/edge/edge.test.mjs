// What only the edge deployment has to prove, against the Worker under local
// workerd started by scripts/test-edge.sh with its test routes on
// (PIER_TEST_ENDPOINTS=1, see edge-worker/src/test_routes.rs):
//
// - every check of pier-core's storage contract passes on R2 (conditional
//   creates and updates refused by R2 itself, also when racing, ranged reads
//   at the edges, sorted listing past 1000 keys, multipart), and the edge
//   caches' store forwards R2's capabilities and signed URLs;
// - digest-addressed bodies go out exactly as stored, with Content-Length and
//   no on-the-fly compression, whether or not the client accepts gzip (the Go
//   client of the conformance suite does), and carry the immutable
//   Cache-Control; tag answers do not;
// - pulls are served from the edge caches: blob data from the Cache API (ranges
//   too) and blob records and manifests by digest from KV, proven by deleting
//   the objects from R2 behind the Worker's back; a tag is always read from R2,
//   and a manifest DELETE drops the cached copy;
// - blobs pulled twice in a location (or twice from R2 in the isolate, before
//   the Cache API's fill) are then served from the isolate's memory
//   (hot_blobs.rs) with no subrequest, whole and ranged, and only where the
//   registry would serve them anyway: never to a repository the blob is not
//   linked in, nor after its DELETE; racing pulls during the copy all get the
//   blob's bytes, and a blob over 8 MiB is not kept;
// - the round trips to R2, KV and the Cache API of a cached pull's requests
//   (the test build's x-pier-test-ops header) are today's, no more;
// - the request body limit: 413 SIZE_INVALID naming the limit and the way out
//   for a monolithic push over it (declared or streamed), acceptance at it;
// - the cron entry point runs, and does nothing without PIER_GC (garbage
//   collection from the cron: gc.test.mjs).
//
// Env: PIER_URL (the Worker), PIER_MAX_BODY_BYTES (its limit, default 100000000).
import { describe, test } from 'node:test';
import http from 'node:http';
import {
  BASE,
  MT,
  assert,
  assertError,
  assertHeader,
  assertStatus,
  finishUpload,
  getManifest,
  makeImage,
  pushBlob,
  pushManifest,
  randomBytes,
  repoName,
  request,
  sha256,
  startUpload,
  toBytes,
} from '../http/lib.mjs';

const IMMUTABLE = 'public, max-age=31536000, immutable';
const MAX_BODY = Number(process.env.PIER_MAX_BODY_BYTES || 100000000);
const CACHE_WAIT_MS = 15000;

// A GET through node:http, which neither asks for nor undoes compression, so
// the headers and bytes are exactly what the Worker sent.
function rawGet(path, headers = {}) {
  const url = new URL(BASE + path);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { method: headers.method || 'GET', host: url.hostname, port: url.port, path: url.pathname + url.search, headers },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function assertSentAsStored(res, expected, what) {
  assert.equal(res.headers['content-encoding'], undefined, `${what}: no Content-Encoding`);
  assert.equal(res.headers['transfer-encoding'], undefined, `${what}: not re-chunked`);
  assert.equal(res.headers['content-length'], String(expected.length), `${what}: Content-Length`);
  assert.ok(res.body.equals(expected), `${what}: bytes as stored`);
}

async function testRoute(method, route, body) {
  return request(method, `/_pier_test/${route}`, body === undefined ? {} : { body, timeout: 600000 });
}

async function waitUntilCached(key) {
  const deadline = Date.now() + CACHE_WAIT_MS;
  for (;;) {
    const res = await testRoute('GET', `cached/${key}`);
    if (res.status === 200) return;
    assert.equal(res.status, 404, `cache probe of ${key}: ${res.text()}`);
    assert.ok(Date.now() < deadline, `${key} was not cached within ${CACHE_WAIT_MS} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// Waits until this isolate keeps the blob data under `key` in its memory
// (after its second read: the copy ends after that response).
async function waitUntilInMemory(key) {
  const deadline = Date.now() + CACHE_WAIT_MS;
  for (;;) {
    const res = await testRoute('GET', `in-memory/${key}`);
    if (res.status === 200) return;
    assert.equal(res.status, 404, `memory probe of ${key}: ${res.text()}`);
    assert.ok(Date.now() < deadline, `${key} was not kept in memory within ${CACHE_WAIT_MS} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// Drops what this isolate keeps of each key in its memory, so that the next
// read is the one another isolate (or this one, 10 s later) would make: a
// push keeps what it wrote there.
async function forgetInMemory(...keys) {
  for (const key of keys) assertStatus(await testRoute('DELETE', `in-memory/${key}`), 200, `forget ${key}`);
}

async function deleteFromR2(key) {
  assertStatus(await testRoute('DELETE', `objects/${key}`), 200, `raw R2 delete of ${key}`);
  assertStatus(await testRoute('GET', `objects/${key}`), 404, `${key} is gone from R2`);
}

const blobRecordKey = (digest) => `blobs/${digest.replace(':', '/')}`;
const manifestKey = (repo, digest) => `repos/${repo}/_manifests/${digest.replace(':', '/')}`;
const layerLinkKey = (repo, digest) => `repos/${repo}/_layers/${digest.replace(':', '/')}`;

test('the storage contract holds on R2 under workerd', async (t) => {
  const res = await testRoute('POST', 'storage-contract', '');
  assertStatus(res, 200, `storage contract: ${res.text()}`);
  const report = JSON.parse(res.text());
  for (const check of report.checks) {
    t.diagnostic(`storage contract: ${check.passed ? 'ok  ' : 'FAIL'} ${check.name} (${check.elapsed_ms} ms)`);
  }
  // The checks the race and scale issues asked for are among those run.
  for (const name of ['concurrent creates', 'concurrent updates', 'list past 1000 keys', 'ranged read']) {
    assert.ok(report.expected.includes(name), `the contract has "${name}"`);
  }
  assert.deepEqual(
    report.checks.map((check) => check.name),
    report.expected,
    'every check of the contract ran, in order',
  );
  const failed = report.checks.filter((check) => !check.passed).map((check) => `${check.name}: ${check.error}`);
  assert.deepEqual(failed, [], `every check passed under ${report.prefix}`);
  assert.deepEqual(
    report.cached_store_forwards,
    { passed: true, error: null },
    "the edge caches' store reports R2's capabilities and signed URLs",
  );
  assert.deepEqual(
    report.counted_store_forwards,
    { passed: true, error: null },
    "the round-trip counter's store reports R2's capabilities and signed URLs",
  );
});

describe('digest-addressed bodies are sent as stored', () => {
  // Highly compressible, so a runtime that compresses on the fly would.
  const blob = Buffer.from('{"layer": "text that compresses well"}\n'.repeat(8000));
  const repo = repoName('as-stored');
  let digest;
  let manifest;

  test('setup: push a compressible blob and an image', async () => {
    digest = await pushBlob(repo, blob);
    const image = await makeImage(repo);
    manifest = await pushManifest(repo, 'v1', image, MT.ociManifest);
  });

  for (const acceptEncoding of [undefined, 'gzip', 'gzip, deflate, br']) {
    const label = acceptEncoding ? `Accept-Encoding: ${acceptEncoding}` : 'no Accept-Encoding';

    test(`blob GET with ${label}`, async () => {
      const headers = acceptEncoding ? { 'accept-encoding': acceptEncoding } : {};
      const res = await rawGet(`/v2/${repo}/blobs/${digest}`, headers);
      assert.equal(res.status, 200);
      assertSentAsStored(res, blob, 'blob');
      assert.equal(res.headers['content-type'], 'application/octet-stream');
      assert.equal(res.headers['cache-control'], IMMUTABLE);
      assert.equal(res.headers['docker-content-digest'], digest);
      assert.equal(sha256(res.body), digest);
    });

    test(`ranged blob GET with ${label}`, async () => {
      const headers = { range: 'bytes=1000-50999', ...(acceptEncoding ? { 'accept-encoding': acceptEncoding } : {}) };
      const res = await rawGet(`/v2/${repo}/blobs/${digest}`, headers);
      assert.equal(res.status, 206);
      assert.equal(res.headers['content-range'], `bytes 1000-50999/${blob.length}`);
      assertSentAsStored(res, blob.subarray(1000, 51000), 'range');
    });

    test(`manifest GET by digest and by tag with ${label}`, async () => {
      const headers = { accept: MT.ociManifest, ...(acceptEncoding ? { 'accept-encoding': acceptEncoding } : {}) };
      const byDigest = await rawGet(`/v2/${repo}/manifests/${manifest.digest}`, headers);
      assert.equal(byDigest.status, 200);
      assertSentAsStored(byDigest, manifest.bytes, 'manifest by digest');
      assert.equal(byDigest.headers['cache-control'], IMMUTABLE);
      const byTag = await rawGet(`/v2/${repo}/manifests/v1`, headers);
      assert.equal(byTag.status, 200);
      assertSentAsStored(byTag, manifest.bytes, 'manifest by tag');
      assert.notEqual(byTag.headers['cache-control'], IMMUTABLE, 'a tag may move: not immutable');
    });
  }

  test('blob HEAD keeps its Content-Length', async () => {
    const res = await rawGet(`/v2/${repo}/blobs/${digest}`, { method: 'HEAD' });
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-length'], String(blob.length));
    assert.equal(res.body.length, 0);
  });
});

describe('pulls are served from the edge caches', () => {
  test('blob data from the Cache API, ranges too, and the blob record from KV', async () => {
    const repo = repoName('cache-blob');
    const blob = randomBytes(1 << 20);
    const digest = await pushBlob(repo, blob);
    const record = await testRoute('GET', `objects/${blobRecordKey(digest)}`);
    assertStatus(record, 200, 'blob record in R2');
    const dataKey = record.json().object;
    assert.match(dataKey, /^data\//);

    await forgetInMemory(blobRecordKey(digest), layerLinkKey(repo, digest));
    assertStatus(await request('GET', `/v2/${repo}/blobs/${digest}`), 200, 'first pull');
    await waitUntilCached(dataKey);
    await waitUntilCached(blobRecordKey(digest));
    await deleteFromR2(dataKey);
    await deleteFromR2(blobRecordKey(digest));

    const whole = await request('GET', `/v2/${repo}/blobs/${digest}`);
    assertStatus(whole, 200, 'pull with the blob gone from R2');
    assert.ok(whole.body.equals(blob), 'cached bytes equal the pushed ones');
    const part = await request('GET', `/v2/${repo}/blobs/${digest}`, { headers: { range: 'bytes=4096-8191' } });
    assertStatus(part, 206, 'ranged pull from the cache');
    assertHeader(part, 'content-range', `bytes 4096-8191/${blob.length}`);
    assert.ok(part.body.equals(blob.subarray(4096, 8192)), 'cached range');
  });

  test('manifests by digest from KV; tags always from R2; DELETE drops the cached copy', async () => {
    const repo = repoName('cache-manifest');
    const first = await pushManifest(repo, 'v1', await makeImage(repo), MT.ociManifest);
    await forgetInMemory(manifestKey(repo, first.digest));
    assertStatus(await getManifest(repo, first.digest), 200, 'first pull by digest');
    await waitUntilCached(manifestKey(repo, first.digest));
    await deleteFromR2(manifestKey(repo, first.digest));

    const cached = await getManifest(repo, first.digest);
    assertStatus(cached, 200, 'pull by digest with the manifest gone from R2');
    assert.ok(cached.body.equals(first.bytes), 'cached manifest bytes');

    const second = await pushManifest(repo, 'v1', await makeImage(repo), MT.ociManifest);
    const moved = await getManifest(repo, 'v1');
    assertStatus(moved, 200, 'tag right after it moved');
    assertHeader(moved, 'docker-content-digest', second.digest);

    assertStatus(await request('DELETE', `/v2/${repo}/manifests/${first.digest}`), 202, 'delete by digest');
    assertError(await getManifest(repo, first.digest), 404, 'MANIFEST_UNKNOWN', 'deleted manifest, cached before');
    assertHeader(await getManifest(repo, 'v1'), 'docker-content-digest', second.digest);
  });
});

// The R2, KV and Cache API operations a request made before its response, as
// the test build reports them (edge-worker/src/counted.rs): the kinds made at
// least once, {"r2.get": 1, "kv.get": 1}. Work left to waitUntil (filling
// the caches after a miss) is in it as far as it got by then, so only reads
// that miss nothing have counts known in advance.
function roundTrips(res) {
  const counts = {};
  for (const field of assertHeader(res, 'x-pier-test-ops').split(' ')) {
    const [kind, count] = field.split('=');
    assert.match(count, /^\d+$/, `x-pier-test-ops field ${field}`);
    if (Number(count) > 0) counts[kind] = Number(count);
  }
  return counts;
}

const r2Trips = (counts) => Object.entries(counts).filter(([kind]) => kind.startsWith('r2.'));
// The reads of R2 and KV among them (a first pull's record of itself is a
// write, docs/lifecycle.md).
const storageReads = (counts) => Object.keys(counts).filter((kind) => /^(r2\.(get|head|list)|kv\.get)$/.test(kind));

describe('round trips per request (docs/benchmarks-edge.md lists them all)', () => {
  // What a pull of a cached image asks of R2 from a location far from the
  // bucket. These are today's counts, so that work adding a trip fails here
  // (and one removing a trip says so here). Once the edge caches hold an
  // image, nothing by digest reaches R2: a manifest or a blob's record and
  // link come from KV, or from the isolate's memory when it read or wrote them in the
  // last 10 s (then no operation at all); a blob's bytes from the Cache API,
  // or from memory too when under 64 KiB or once read from the Cache API
  // (hot_blobs.rs). A tag is one R2 read.
  test('cached pull: nothing by digest from R2; from memory no operation; a tag 1 R2 read', async () => {
    const repo = repoName('round-trips');
    const image = await makeImage(repo);
    const { digest } = await pushManifest(repo, 'v1', image, MT.ociManifest);
    const layer = image.layers[0];
    const record = await testRoute('GET', `objects/${blobRecordKey(layer.digest)}`);
    assertStatus(record, 200, 'blob record in R2');

    // Right after the push, its isolate has what the push wrote: the
    // manifest, and the layer's record, link and bytes (under 64 KiB).
    const pushedManifest = await getManifest(repo, digest);
    assertStatus(pushedManifest, 200, 'manifest by digest, right after the push');
    assert.deepEqual(storageReads(roundTrips(pushedManifest)), [], 'manifest by digest, right after the push: from memory');
    const pushedBlob = await request('GET', `/v2/${repo}/blobs/${layer.digest}`);
    assertStatus(pushedBlob, 200, 'blob, right after the push');
    assert.equal(sha256(pushedBlob.body), layer.digest, 'blob, right after the push: its bytes');
    assert.deepEqual(storageReads(roundTrips(pushedBlob)), [], 'blob, right after the push: from memory');

    // Then as another isolate reads them.
    await forgetInMemory(
      manifestKey(repo, digest),
      blobRecordKey(layer.digest),
      layerLinkKey(repo, layer.digest),
      record.json().object,
    );
    const firstManifest = await getManifest(repo, digest);
    assertStatus(firstManifest, 200, 'manifest by digest, first read');
    assert.ok(r2Trips(roundTrips(firstManifest)).length > 0, 'manifest by digest, first read: from R2');
    const firstBlob = await request('GET', `/v2/${repo}/blobs/${layer.digest}`);
    assertStatus(firstBlob, 200, 'blob, first read');
    assert.ok(r2Trips(roundTrips(firstBlob)).length > 0, 'blob, first read: from R2');
    await waitUntilCached(manifestKey(repo, digest));
    await waitUntilCached(blobRecordKey(layer.digest));
    await waitUntilCached(layerLinkKey(repo, layer.digest));
    await waitUntilCached(record.json().object);

    for (const method of ['GET', 'HEAD']) {
      const byDigest = await getManifest(repo, digest, { method });
      assertStatus(byDigest, 200, `manifest ${method} by digest, cached`);
      assert.deepEqual(r2Trips(roundTrips(byDigest)), [], `manifest ${method} by digest, cached: not from R2`);
      const again = await getManifest(repo, digest, { method });
      assert.deepEqual(roundTrips(again), {}, `manifest ${method} by digest, again: from memory`);
      const byTag = await getManifest(repo, 'v1', { method });
      assertStatus(byTag, 200, `manifest ${method} by tag`);
      assertHeader(byTag, 'docker-content-digest', digest);
      assert.deepEqual(roundTrips(byTag), { 'r2.get': 1 }, `manifest ${method} by tag: the tag from R2`);

      const blob = await request(method, `/v2/${repo}/blobs/${layer.digest}`);
      assertStatus(blob, 200, `blob ${method}, cached`);
      assertHeader(blob, 'content-length', layer.size);
      assert.deepEqual(r2Trips(roundTrips(blob)), [], `blob ${method}, cached: not from R2`);
      // (The layer is under 64 KiB, so its bytes too: a larger one's come
      // from the Cache API, as the test above shows.)
      const blobAgain = await request(method, `/v2/${repo}/blobs/${layer.digest}`);
      assert.deepEqual(roundTrips(blobAgain), {}, `blob ${method}, again: record, link and bytes from memory`);
    }

    const large = randomBytes(1 << 20);
    const largeDigest = await pushBlob(repo, large);
    const largeData = (await testRoute('GET', `objects/${blobRecordKey(largeDigest)}`)).json().object;
    const pushedLarge = await request('GET', `/v2/${repo}/blobs/${largeDigest}`);
    assert.ok(pushedLarge.body.equals(large), '1 MiB blob, right after the push: the bytes pushed');
    const pushedTrips = roundTrips(pushedLarge);
    assert.deepEqual(storageReads(pushedTrips), ['r2.get'], '1 MiB blob, right after the push: only its bytes read');
    assert.equal(pushedTrips['r2.get'], 1, '1 MiB blob, right after the push: one R2 read');
    // The Cache API fills after that read (waitUntil).
    await waitUntilCached(largeData);
    await forgetInMemory(blobRecordKey(largeDigest), layerLinkKey(repo, largeDigest));
    const elsewhere = await request('GET', `/v2/${repo}/blobs/${largeDigest}`);
    assert.ok(elsewhere.body.equals(large), '1 MiB blob, first read in another isolate: the bytes pushed');
    const elsewhereTrips = roundTrips(elsewhere);
    assert.equal(elsewhereTrips['cache.match'], 1, '1 MiB blob, first read in another isolate: bytes from the Cache API');
    assert.equal(elsewhereTrips['r2.get'], 2, '1 MiB blob, first read in another isolate: record and link from R2');
    await waitUntilCached(blobRecordKey(largeDigest));
    await waitUntilCached(layerLinkKey(repo, largeDigest));
    await forgetInMemory(largeData);
    const largeCached = await request('GET', `/v2/${repo}/blobs/${largeDigest}`);
    assert.ok(largeCached.body.equals(large), '1 MiB blob, cached: the bytes pushed');
    assert.deepEqual(r2Trips(roundTrips(largeCached)), [], '1 MiB blob, cached: not from R2');
    assert.deepEqual(roundTrips(largeCached), { 'cache.match': 1 }, '1 MiB blob, cached: its bytes from the Cache API');
    await waitUntilInMemory(largeData);
    const largeAgain = await request('GET', `/v2/${repo}/blobs/${largeDigest}`);
    assert.ok(largeAgain.body.equals(large), '1 MiB blob, again: the bytes pushed');
    assert.deepEqual(roundTrips(largeAgain), {}, '1 MiB blob, again: its bytes from memory');
  });
});

describe('request body limit', () => {
  const sizeError = (res, what) => {
    assertError(res, 413, 'SIZE_INVALID', what);
    const [error] = res.json().errors;
    assert.match(error.message, new RegExp(String(MAX_BODY)), 'the message names the limit');
    assert.match(error.message, /chunk/i, 'the message names the way out');
    assert.equal(error.detail?.limit, MAX_BODY);
  };

  test('a monolithic push one byte over the limit: 413 SIZE_INVALID', async () => {
    const repo = repoName('limit');
    const blob = Buffer.alloc(MAX_BODY + 1, 7);
    const session = await startUpload(repo);
    sizeError(await finishUpload(session.location, sha256(blob), blob), 'declared length over the limit');
  });

  test('a streamed body (no Content-Length) over the limit: 413 SIZE_INVALID', async () => {
    const repo = repoName('limit-stream');
    const piece = Buffer.alloc(1 << 20, 3);
    let sent = 0;
    const body = new ReadableStream({
      pull(controller) {
        if (sent > MAX_BODY) return controller.close();
        sent += piece.length;
        controller.enqueue(new Uint8Array(piece));
      },
    });
    const session = await startUpload(repo);
    sizeError(
      await request('PATCH', session.location, { headers: { 'content-type': MT.octet }, body }),
      'streamed past the limit',
    );
  });

  test('a monolithic push of exactly the limit is accepted', async () => {
    const repo = repoName('limit-at');
    const blob = Buffer.alloc(MAX_BODY, 9);
    const digest = await pushBlob(repo, blob);
    const head = await request('HEAD', `/v2/${repo}/blobs/${digest}`);
    assertStatus(head, 200);
    assertHeader(head, 'content-length', String(MAX_BODY));
  });
});

test('the scheduled (cron) entry point runs, and without PIER_GC collects nothing', async () => {
  const res = await request('GET', '/cdn-cgi/handler/scheduled?cron=' + encodeURIComponent('*/30 * * * *'));
  assertStatus(res, 200, `scheduled handler: ${res.text()}`);
  assertStatus(await request('GET', '/_pier_test/objects/gc/run'), 404, 'no collection was started');
  assertError(await request('GET', '/_pier/gc/report'), 404, ['GC_REPORT_UNKNOWN'], 'no collection has run');
});

describe("blobs pulled often are served from the isolate's memory", () => {
  // Pushes `blob` and reads it once, until the edge caches hold it.
  async function pushCached(repo, blob) {
    const digest = await pushBlob(repo, blob);
    const dataKey = (await testRoute('GET', `objects/${blobRecordKey(digest)}`)).json().object;
    await forgetInMemory(blobRecordKey(digest), layerLinkKey(repo, digest));
    assertStatus(await request('GET', `/v2/${repo}/blobs/${digest}`), 200, 'first read');
    await waitUntilCached(dataKey);
    await waitUntilCached(blobRecordKey(digest));
    await waitUntilCached(layerLinkKey(repo, digest));
    return { digest, dataKey };
  }

  // pushCached, then a second read: a Cache API hit, which keeps the blob in
  // this isolate's memory once its copy ends.
  async function pushHot(repo, blob) {
    const { digest, dataKey } = await pushCached(repo, blob);
    const second = await request('GET', `/v2/${repo}/blobs/${digest}`);
    assertStatus(second, 200, 'second read');
    assert.ok(second.body.equals(blob), 'second read: the bytes pushed');
    assert.deepEqual(roundTrips(second), { 'cache.match': 1 }, 'second read: from the Cache API');
    return { digest, dataKey };
  }

  // `count` GETs of the blob at once, every third for the bytes `first` to
  // `last`: each gets its bytes; then the blob is in memory.
  async function raceThenReadFromMemory(repo, digest, dataKey, blob, count, [first, last]) {
    const reads = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        request('GET', `/v2/${repo}/blobs/${digest}`, i % 3 ? {} : { headers: { range: `bytes=${first}-${last}` } }),
      ),
    );
    reads.forEach((res, i) => {
      if (i % 3) {
        assertStatus(res, 200, `racing read ${i}`);
        assert.ok(res.body.equals(blob), `racing read ${i}: the bytes pushed`);
      } else {
        assertStatus(res, 206, `racing ranged read ${i}`);
        assert.ok(res.body.equals(blob.subarray(first, last + 1)), `racing ranged read ${i}: its bytes`);
      }
    });
    await readFromMemory(repo, digest, dataKey, blob, 'after the race');
  }

  // Waits until this isolate keeps the blob, then reads it with no subrequest.
  async function readFromMemory(repo, digest, dataKey, blob, what) {
    await waitUntilInMemory(dataKey);
    const kept = await request('GET', `/v2/${repo}/blobs/${digest}`);
    assert.ok(kept.body.equals(blob), `from memory ${what}: the bytes pushed`);
    assert.deepEqual(roundTrips(kept), {}, `from memory ${what}`);
  }

  // Pushes `blob` and reads it once from R2, which keeps nothing in memory;
  // then drops it from the Cache API, as if the fill after that read had not
  // landed yet.
  async function pushReadOnceFromR2(repo, blob) {
    const digest = await pushBlob(repo, blob);
    const dataKey = (await testRoute('GET', `objects/${blobRecordKey(digest)}`)).json().object;
    const first = await request('GET', `/v2/${repo}/blobs/${digest}`);
    assert.ok(first.body.equals(blob), 'first read: the bytes pushed');
    assert.deepEqual(storageReads(roundTrips(first)), ['r2.get'], 'first read: its bytes from R2');
    await waitUntilCached(dataKey);
    assertStatus(await testRoute('GET', `in-memory/${dataKey}`), 404, 'read once: not in memory');
    assertStatus(await testRoute('DELETE', `cached/${dataKey}`), 200, 'dropped from the Cache API');
    return { digest, dataKey };
  }

  test('whole and ranged, with no subrequest', async () => {
    const repo = repoName('hot');
    const blob = randomBytes(1 << 20);
    const { digest, dataKey } = await pushHot(repo, blob);
    await waitUntilInMemory(dataKey);

    const whole = await rawGet(`/v2/${repo}/blobs/${digest}`);
    assert.equal(whole.status, 200);
    assertSentAsStored(whole, blob, 'from memory');
    assert.equal(whole.headers['cache-control'], IMMUTABLE);
    assert.equal(whole.headers['docker-content-digest'], digest);
    // Twice: the kept bytes are copied into each response, never handed out.
    for (const round of [1, 2]) {
      const again = await request('GET', `/v2/${repo}/blobs/${digest}`);
      assert.ok(again.body.equals(blob), `read ${round} from memory: the bytes pushed`);
      assert.deepEqual(roundTrips(again), {}, `read ${round} from memory: no R2, KV or Cache API operation`);
    }
    const ranges = [
      [0, 0],
      [4096, 8191],
      [blob.length - 1, blob.length - 1],
    ];
    for (const [first, last] of ranges) {
      const part = await request('GET', `/v2/${repo}/blobs/${digest}`, { headers: { range: `bytes=${first}-${last}` } });
      assertStatus(part, 206, `range ${first}-${last}`);
      assertHeader(part, 'content-range', `bytes ${first}-${last}/${blob.length}`);
      assert.ok(part.body.equals(blob.subarray(first, last + 1)), `range ${first}-${last}: its bytes`);
      assert.deepEqual(roundTrips(part), {}, `range ${first}-${last}: from memory`);
    }
    // A range past the end is refused as it is without the memory.
    const past = await request('GET', `/v2/${repo}/blobs/${digest}`, {
      headers: { range: `bytes=${blob.length}-${blob.length + 10}` },
    });
    assertStatus(past, 416, 'range past the end');
    const head = await rawGet(`/v2/${repo}/blobs/${digest}`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(blob.length));
  });

  test('never to a repository the blob is not linked in, nor after its DELETE', async () => {
    const repo = repoName('hot-private');
    const blob = randomBytes(300 << 10);
    const { digest, dataKey } = await pushHot(repo, blob);
    await waitUntilInMemory(dataKey);

    const stranger = repoName('hot-stranger');
    assertError(await request('GET', `/v2/${stranger}/blobs/${digest}`), 404, 'BLOB_UNKNOWN', 'another repository');
    assertError(
      await request('GET', `/v2/${stranger}/blobs/${digest}`, { headers: { range: 'bytes=0-9' } }),
      404,
      'BLOB_UNKNOWN',
      'another repository, ranged',
    );
    assertStatus(await request('DELETE', `/v2/${repo}/blobs/${digest}`), 202, 'blob DELETE');
    assertError(await request('GET', `/v2/${repo}/blobs/${digest}`), 404, 'BLOB_UNKNOWN', 'after the DELETE');
    assertStatus(await request('HEAD', `/v2/${repo}/blobs/${digest}`), 404, 'HEAD after the DELETE');
  });

  test('pulls racing the copy into memory all get the bytes', async () => {
    const repo = repoName('hot-race');
    const blob = randomBytes(3 << 20);
    const { digest, dataKey } = await pushCached(repo, blob);
    // The first of these is a Cache API hit that starts the copy; the others
    // race it, reading the Cache API or, once it is done, memory.
    await raceThenReadFromMemory(repo, digest, dataKey, blob, 12, [1000, 2000999]);
  });

  // Pulls closer together than the Cache API's fill after the first: the
  // second comes from R2 again, and is kept all the same. A blob read once
  // is not kept.
  test('a second read from R2, before the Cache API holds the blob, keeps it; a first keeps nothing', async () => {
    const repo = repoName('hot-second');
    const blob = randomBytes(1 << 20);
    const { digest, dataKey } = await pushReadOnceFromR2(repo, blob);
    const second = await request('GET', `/v2/${repo}/blobs/${digest}`);
    assert.ok(second.body.equals(blob), 'second read: the bytes pushed');
    const secondTrips = roundTrips(second);
    assert.equal(secondTrips['cache.match'], 1, 'second read: the Cache API asked');
    assert.equal(secondTrips['r2.get'], 1, 'second read: its bytes from R2');
    await readFromMemory(repo, digest, dataKey, blob, 'on the third read');
  });

  test('second reads from R2 racing each other all get the bytes; one copy is kept', async () => {
    const repo = repoName('hot-second-race');
    const blob = randomBytes(2 << 20);
    const { digest, dataKey } = await pushReadOnceFromR2(repo, blob);
    // All noted, all before the fill: the first to reserve copies, the
    // others are served as they are (whole and ranged alike).
    await raceThenReadFromMemory(repo, digest, dataKey, blob, 9, [7, 1048582]);
  });

  test('a blob over 8 MiB stays in the Cache API', async () => {
    const repo = repoName('hot-large');
    const blob = randomBytes((8 << 20) + 1);
    const { digest, dataKey } = await pushHot(repo, blob);
    for (const round of [1, 2]) {
      const again = await request('GET', `/v2/${repo}/blobs/${digest}`);
      assert.ok(again.body.equals(blob), `read ${round} more: the bytes pushed`);
      assert.deepEqual(roundTrips(again), { 'cache.match': 1 }, `read ${round} more: from the Cache API`);
    }
    assertStatus(await testRoute('GET', `in-memory/${dataKey}`), 404, 'not in memory');
  });

  // Last in this file: the isolate's wasm memory keeps the size this test
  // gives it, so no blob is kept in memory by this Worker afterwards.
  test('never past what the wasm memory leaves: kept blobs go as it grows', async () => {
    const repo = repoName('hot-room');
    const blob = randomBytes(1 << 20);
    const { digest, dataKey } = await pushHot(repo, blob);
    await readFromMemory(repo, digest, dataKey, blob, 'before the wasm memory grows');
    const before = (await testRoute('GET', 'hot-blobs')).json();
    assert.ok(before.held >= blob.length && before.held <= before.room, `held within the room: ${JSON.stringify(before)}`);

    // Uploads' parts grow the wasm memory, which never shrinks; past the
    // ceiling (96 MiB with the blobs) no room is left.
    assertStatus(await testRoute('POST', `wasm-memory?at_least=${100 << 20}`), 200, 'wasm memory grown');
    assert.equal((await testRoute('GET', 'hot-blobs')).json().room, 0, 'no room left');

    // The next read drops what is kept, and is served from the Cache API.
    const after = await request('GET', `/v2/${repo}/blobs/${digest}`);
    assertStatus(after, 200, 'read after the growth');
    assert.ok(after.body.equals(blob), 'read after the growth: the bytes pushed');
    assert.deepEqual(roundTrips(after), { 'cache.match': 1 }, 'read after the growth: from the Cache API');
    assertStatus(await testRoute('GET', `in-memory/${dataKey}`), 404, 'no longer in memory');
    assert.equal((await testRoute('GET', 'hot-blobs')).json().held, 0, 'nothing held');

    // A blob pulled twice now (pushHot checks both reads) is not kept.
    const other = randomBytes(1 << 20);
    const pulledTwice = await pushHot(repo, other);
    assert.equal((await testRoute('GET', 'hot-blobs')).json().held, 0, 'a blob pulled twice: nothing held');
    const third = await request('GET', `/v2/${repo}/blobs/${pulledTwice.digest}`);
    assert.ok(third.body.equals(other), 'third read: the bytes pushed');
    assert.deepEqual(roundTrips(third), { 'cache.match': 1 }, 'third read: from the Cache API');
  });
});
