// Garbage collection on the edge Worker, driven as Cloudflare drives it: by
// the cron trigger (wrangler dev --test-scheduled exposes it as
// GET /__scheduled?cron=..., which answers once the handler has returned).
// scripts/test-edge.sh starts this Worker with
//   PIER_GC = {"grace_secs":0,"upload_expiry_secs":0,
//              "rules":[{"namespace":"locked/**","immutable_tags":true}]}
//   PIER_GC_BUDGET_SECS = 0      (every invocation takes exactly one step)
// so each invocation is the smallest possible piece of a collection and the
// next one must resume from the state left in R2.
//
// What is proven, through HTTP only (plus the test routes to look into R2):
// - a collection spans invocations, its state in R2 in between, and ends with
//   a report readable at /_pier/gc/report;
// - an image whose manifest was deleted loses its own blobs (GET 404, the
//   bytes gone from R2, the records and links gone from KV too) while a base
//   layer another image shares still pulls;
// - an abandoned upload session expires and its R2 multipart upload is aborted;
// - the retention rules of PIER_GC apply to pushes too (immutable tags: 409);
// - how many invocations and steps a registry of a few hundred blobs takes
//   (PIER_EDGE_GC_IMAGES images; written to PIER_EDGE_MEASUREMENTS if set).
//
// Env: PIER_URL (the Worker), PIER_EDGE_GC_IMAGES (default 100),
//      PIER_EDGE_MEASUREMENTS (file to append the measurement to).
import { test } from 'node:test';
import { appendFileSync } from 'node:fs';
import {
  MT,
  assert,
  assertError,
  assertStatus,
  makeImage,
  patchChunk,
  pushBlob,
  pushManifest,
  putManifest,
  randomBytes,
  repoName,
  request,
  sha256,
  startUpload,
} from '../http/lib.mjs';

const CRON = '/__scheduled?cron=' + encodeURIComponent('*/30 * * * *');
const MAX_INVOCATIONS = 2000;
const IMAGES = Number(process.env.PIER_EDGE_GC_IMAGES || 100);
const PART_SIZE = 10 * 1024 * 1024; // PIER_PART_SIZE of the test configuration

async function invokeCron() {
  const res = await request('GET', CRON);
  assertStatus(res, 200, `cron: ${res.text()}`);
}

async function lastReport() {
  const res = await request('GET', '/_pier/gc/report');
  if (res.status === 404) return null;
  assertStatus(res, 200, 'GC report');
  return res.json();
}

// Invokes the cron until a collection that started at or after `since` (ms)
// has finished (a collection already under way is finished first).
async function collect(since) {
  const durations = [];
  for (let invocations = 1; invocations <= MAX_INVOCATIONS; invocations++) {
    const started = performance.now();
    await invokeCron();
    durations.push(performance.now() - started);
    const report = await lastReport();
    if (report && report.started_ms >= since) return { report, invocations, durations };
  }
  throw new Error(`no collection finished within ${MAX_INVOCATIONS} cron invocations`);
}

async function stored(key) {
  const res = await request('GET', `/_pier_test/objects/${key}`);
  if (res.status === 404) return false;
  assertStatus(res, 200, `raw read of ${key}`);
  return true;
}

function blobKey(digest) {
  return `blobs/${digest.replace(':', '/')}`;
}

function linkKey(repo, digest) {
  return `repos/${repo}/_layers/${digest.replace(':', '/')}`;
}

// Whether the edge caches (KV, for these keys) hold `key`.
async function cached(key) {
  const res = await request('GET', `/_pier_test/cached/${key}`);
  assert.ok([200, 404].includes(res.status), `cache probe of ${key}: ${res.status}`);
  return res.status === 200;
}

async function eventuallyCached(key) {
  for (let tries = 0; !(await cached(key)); tries++) {
    assert.ok(tries < 75, `${key} was not cached within 15 s`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

test('a collection spans cron invocations, resuming from its state in R2', async () => {
  await pushBlob(repoName('gc-resume'), randomBytes(64));
  const since = Date.now();
  await invokeCron();
  assert.ok(await stored('gc/run'), 'after one step the collection state is in R2');
  const first = await lastReport();
  assert.ok(!first || first.started_ms < since, 'one step does not finish a collection');
  const { report, invocations } = await collect(since);
  assert.equal(report.dry_run, false);
  assert.equal(report.steps, invocations + 1, 'every invocation took one step of the same collection');
  assert.ok(!(await stored('gc/run')), 'the state is gone once the collection ended');
});

test('deleting an image frees its own blobs; a base layer another image shares still pulls', async () => {
  const [doomedRepo, keptRepo] = [repoName('gc-doomed'), repoName('gc-kept')];
  const base = randomBytes(2048);
  const baseDigest = sha256(base);
  const own = randomBytes(4096);
  const image = async (repo, layers) => {
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', repo }));
    const configDigest = await pushBlob(repo, config);
    const descriptors = [];
    for (const data of layers) {
      descriptors.push({ mediaType: MT.ociLayer, digest: await pushBlob(repo, data), size: data.length });
    }
    const manifest = {
      schemaVersion: 2,
      mediaType: MT.ociManifest,
      config: { mediaType: MT.ociConfig, digest: configDigest, size: config.length },
      layers: descriptors,
    };
    const { digest } = await pushManifest(repo, 'v1', manifest, MT.ociManifest);
    return { configDigest, digest };
  };
  const doomed = await image(doomedRepo, [base, own]);
  const kept = await image(keptRepo, [base]);
  const ownDigest = sha256(own);
  // Pulled once, as another isolate would (the push left copies in this
  // one's memory), so the edge caches hold copies the collection must not be
  // fooled by.
  for (const key of [blobKey(ownDigest), linkKey(doomedRepo, ownDigest)]) {
    assertStatus(await request('DELETE', `/_pier_test/in-memory/${key}`), 200);
  }
  assertStatus(await request('GET', `/v2/${doomedRepo}/blobs/${ownDigest}`), 200);
  await eventuallyCached(blobKey(ownDigest));
  await eventuallyCached(linkKey(doomedRepo, ownDigest));
  assertStatus(await request('DELETE', `/v2/${doomedRepo}/manifests/${doomed.digest}`), 202);

  const { report } = await collect(Date.now());
  assert.ok(report.blobs_deleted >= 2, `the image's config and own layer go: ${JSON.stringify(report)}`);
  // What the collection deleted, it dropped from KV (before any pull could
  // find it missing): not served from there for the rest of the entries' day.
  assert.ok(!(await cached(blobKey(ownDigest))), 'the collected record is gone from KV');
  assert.ok(!(await cached(linkKey(doomedRepo, ownDigest))), 'the collected link is gone from KV');
  for (const digest of [ownDigest, doomed.configDigest]) {
    assertError(await request('GET', `/v2/${doomedRepo}/blobs/${digest}`), 404, ['BLOB_UNKNOWN'], digest);
    assert.ok(!(await stored(blobKey(digest))), `the record of ${digest} is gone from R2`);
  }
  const pulled = await request('GET', `/v2/${keptRepo}/blobs/${baseDigest}`);
  assertStatus(pulled, 200, 'the shared base layer');
  assert.equal(sha256(pulled.body), baseDigest);
  assertStatus(await request('GET', `/v2/${keptRepo}/manifests/v1`), 200);
  assertStatus(await request('GET', `/v2/${keptRepo}/blobs/${kept.configDigest}`), 200);
});

test('an abandoned upload expires and its R2 multipart upload is aborted', async () => {
  const repo = repoName('gc-upload');
  const session = await startUpload(repo);
  const id = new URL(session.location).pathname.split('/').pop();
  // More than a part: the first part goes to an R2 multipart upload.
  const chunk = randomBytes(PART_SIZE + 1024);
  const patched = await patchChunk(session.location, chunk, 0);
  assertStatus(patched, 202, 'PATCH of one part and a bit');
  const found = await request('GET', `/_pier_test/uploads/${id}/multipart`);
  assertStatus(found, 200, 'the session writes to a multipart upload');
  const multipart = found.text();
  const probe = `/_pier_test/uploads/${id}/multipart?multipart=${encodeURIComponent(multipart)}`;
  assertStatus(await request('POST', probe), 200, 'R2 takes parts before the collection');

  const { report } = await collect(Date.now());
  assert.ok(report.uploads_expired >= 1, JSON.stringify(report));
  assertError(await request('GET', session.location), 404, ['BLOB_UPLOAD_UNKNOWN'], 'upload status');
  assertStatus(await request('POST', probe), 404, 'R2 no longer knows the multipart upload');
});

test('PIER_GC retention rules apply to pushes: an immutable tag does not move', async () => {
  const repo = `locked/${repoName('app')}`;
  const first = await makeImage(repo);
  await pushManifest(repo, 'v1', first, MT.ociManifest);
  await pushManifest(repo, 'v1', first, MT.ociManifest); // the same manifest again is fine
  const second = await makeImage(repo);
  const moved = await putManifest(repo, 'v1', second, MT.ociManifest);
  assertError(moved, 409, ['DENIED'], 'moving an immutable tag');
  assert.match(moved.json().errors[0].message, /immutable/);
  await pushManifest(repo, 'v2', second, MT.ociManifest); // a new tag is fine
  const elsewhere = repoName('free');
  await pushManifest(elsewhere, 'v1', await makeImage(elsewhere), MT.ociManifest);
  await pushManifest(elsewhere, 'v1', await makeImage(elsewhere), MT.ociManifest); // tags move elsewhere
});

test(`a registry of ${IMAGES} images and as many stray blobs, one step per invocation`, async () => {
  const base = randomBytes(1024);
  const images = [];
  const strays = [];
  for (let i = 0; i < IMAGES; i++) {
    const repo = repoName(`gc-many-${i % 10}`);
    const manifest = await makeImage(repo, { layers: 2 });
    const baseDigest = await pushBlob(repo, base);
    manifest.layers.push({ mediaType: MT.ociLayer, digest: baseDigest, size: base.length });
    await pushManifest(repo, `v${i}`, manifest, MT.ociManifest);
    images.push({ repo, manifest });
    strays.push({ repo, digest: await pushBlob(repo, randomBytes(128)) });
  }
  const started = performance.now();
  const { report, invocations, durations } = await collect(Date.now());
  const seconds = (performance.now() - started) / 1000;
  assert.ok(report.blobs_deleted >= IMAGES, `every stray blob goes: ${JSON.stringify(report)}`);
  for (const { repo, digest } of strays) {
    assertError(await request('HEAD', `/v2/${repo}/blobs/${digest}`), 404, ['BLOB_UNKNOWN'], 'stray');
  }
  for (const { repo, manifest } of images) {
    for (const { digest } of [manifest.config, ...manifest.layers]) {
      assertStatus(await request('HEAD', `/v2/${repo}/blobs/${digest}`), 200, `kept ${digest}`);
    }
  }
  const slowest = Math.max(...durations) / 1000;
  const line =
    `GC under workerd of ${report.repos_examined} repositories and ${report.blobs_examined} blobs ` +
    `(${IMAGES} images, ${report.blobs_deleted} unreferenced blobs deleted), default page_size: ` +
    `${report.steps} steps, ${invocations} cron invocations at one step each, ${seconds.toFixed(1)} s in all ` +
    `(slowest step ${slowest.toFixed(2)} s); at the default 20 s budget about ` +
    `${Math.max(1, Math.ceil(seconds / 20))} invocation(s)`;
  console.log(`# ${line}`);
  if (process.env.PIER_EDGE_MEASUREMENTS) appendFileSync(process.env.PIER_EDGE_MEASUREMENTS, line + '\n');
});
