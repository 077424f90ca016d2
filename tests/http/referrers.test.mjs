// Referrers API (distribution-spec v1.1): manifests with a `subject` field and
// GET /v2/<name>/referrers/<digest>.
//
// Why: signatures (cosign/notation), SBOMs and attestations are attached to
// images as artifacts whose `subject` points at the image. A registry that
// supports the API must (a) answer such pushes with `OCI-Subject: <digest>`,
// otherwise clients fall back to maintaining a `sha256-<hex>` tag index
// themselves; (b) list referrers as an OCI image index whose descriptors carry
// artifactType (falling back to the config mediaType for image manifests;
// omitted for an index without artifactType) and the manifest annotations;
// (c) honour `?artifactType=` and say so with `OCI-Filters-Applied`;
// (d) accept a referrer before its subject exists; (e) never 404 the endpoint:
// unknown subjects yield an empty index.
//
// Bad inputs tried: referrers of a digest nothing refers to (200, empty list),
// referrers with a syntactically invalid digest (400), a subject that is not
// (yet) in the repository (must still be accepted), a filter that matches
// nothing, referrers queried from a different repository (not listed).

import { test, describe, before } from 'node:test';
import {
  assert,
  MT,
  request,
  assertStatus,
  assertHeader,
  assertError,
  repoName,
  randomBytes,
  randomHex,
  sha256,
  mediaTypeOf,
  toBytes,
  putManifest,
  pushBlob,
  pushImageByDigest,
  EMPTY_JSON,
  EMPTY_DESCRIPTOR,
  withQuery,
} from './lib.mjs';

const SBOM = 'application/vnd.example.sbom.v1';
const SIG_CONFIG = 'application/vnd.example.signature.config.v1+json';
const INDEX_ARTIFACT = 'application/vnd.example.bundle.v1';

async function referrers(repo, digest, query = {}) {
  return request('GET', withQuery(`/v2/${repo}/referrers/${digest}`, query));
}

function subjectOf(img) {
  return { mediaType: img.mediaType, digest: img.digest, size: img.size };
}

// Push a manifest by digest and return { res, descriptor }.
async function pushByDigest(repo, manifest) {
  const bytes = toBytes(manifest);
  const digest = sha256(bytes);
  const res = await putManifest(repo, digest, bytes, manifest.mediaType);
  return { res, digest, size: bytes.length, descriptor: { mediaType: manifest.mediaType, digest, size: bytes.length } };
}

function assertIndex(res) {
  assertStatus(res, 200);
  assert.equal(mediaTypeOf(res), MT.ociIndex, `Content-Type of referrers response: ${res.describe()}`);
  const idx = res.json();
  assert.equal(idx.schemaVersion, 2);
  assert.equal(idx.mediaType, MT.ociIndex);
  assert.ok(Array.isArray(idx.manifests), 'manifests must be an array');
  return idx;
}

describe('referrers', () => {
  const repo = repoName('referrers');
  let subject; // image the artifacts refer to
  let sbom; // artifact manifest with artifactType + annotations
  let sig; // image manifest without artifactType (config mediaType is used)
  let bundle; // index with subject and artifactType
  let plainIndex; // index with subject, no artifactType
  const sbomAnnotations = { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z', 'org.example.nonce': randomHex(6) };

  before(async () => {
    subject = await pushImageByDigest(repo);
    await pushBlob(repo, EMPTY_JSON);
    const layer = randomBytes(123);
    const layerDigest = await pushBlob(repo, layer);

    sbom = await pushByDigest(repo, {
      schemaVersion: 2,
      mediaType: MT.ociManifest,
      artifactType: SBOM,
      config: EMPTY_DESCRIPTOR,
      layers: [{ mediaType: 'application/spdx+json', digest: layerDigest, size: layer.length }],
      subject: subjectOf(subject),
      annotations: sbomAnnotations,
    });

    const sigConfig = Buffer.from(JSON.stringify({ nonce: randomHex(6) }));
    const sigConfigDigest = await pushBlob(repo, sigConfig);
    sig = await pushByDigest(repo, {
      schemaVersion: 2,
      mediaType: MT.ociManifest,
      config: { mediaType: SIG_CONFIG, digest: sigConfigDigest, size: sigConfig.length },
      layers: [EMPTY_DESCRIPTOR],
      subject: subjectOf(subject),
      annotations: { 'org.example.kind': 'signature' },
    });

    bundle = await pushByDigest(repo, {
      schemaVersion: 2,
      mediaType: MT.ociIndex,
      artifactType: INDEX_ARTIFACT,
      manifests: [sbom.descriptor],
      subject: subjectOf(subject),
      annotations: { 'org.example.kind': 'bundle' },
    });

    plainIndex = await pushByDigest(repo, {
      schemaVersion: 2,
      mediaType: MT.ociIndex,
      manifests: [],
      subject: subjectOf(subject),
    });
  });

  test('PUT of a manifest with subject -> 201 and OCI-Subject: <subject digest>', async () => {
    for (const m of [sbom, sig, bundle, plainIndex]) {
      assertStatus(m.res, 201);
      assertHeader(m.res, 'docker-content-digest', m.digest);
      assertHeader(m.res, 'oci-subject', subject.digest);
    }
  });

  test('GET referrers -> OCI index listing every referrer with artifactType and annotations', async () => {
    const idx = assertIndex(await referrers(repo, subject.digest));
    const byDigest = Object.fromEntries(idx.manifests.map((d) => [d.digest, d]));
    assert.equal(idx.manifests.length, 4, `expected 4 referrers, got ${JSON.stringify(idx.manifests)}`);

    const d1 = byDigest[sbom.digest];
    assert.ok(d1, 'sbom referrer missing');
    assert.equal(d1.mediaType, MT.ociManifest);
    assert.equal(d1.size, sbom.size);
    assert.equal(d1.artifactType, SBOM);
    assert.deepEqual(d1.annotations, sbomAnnotations);

    const d2 = byDigest[sig.digest];
    assert.ok(d2, 'signature referrer missing');
    assert.equal(d2.artifactType, SIG_CONFIG, 'artifactType must fall back to config.mediaType');
    assert.deepEqual(d2.annotations, { 'org.example.kind': 'signature' });

    const d3 = byDigest[bundle.digest];
    assert.ok(d3, 'index referrer missing');
    assert.equal(d3.mediaType, MT.ociIndex);
    assert.equal(d3.artifactType, INDEX_ARTIFACT);
    assert.deepEqual(d3.annotations, { 'org.example.kind': 'bundle' });

    const d4 = byDigest[plainIndex.digest];
    assert.ok(d4, 'plain index referrer missing');
    assert.ok(!('artifactType' in d4), `index without artifactType: artifactType must be omitted, got ${JSON.stringify(d4)}`);
  });

  test('?artifactType= filter -> only matching referrers and OCI-Filters-Applied: artifactType', async () => {
    const res = await referrers(repo, subject.digest, { artifactType: SBOM });
    const idx = assertIndex(res);
    assertHeader(res, 'oci-filters-applied', /^\s*artifactType\s*$/);
    assert.deepEqual(
      idx.manifests.map((d) => d.digest),
      [sbom.digest],
    );

    const none = await referrers(repo, subject.digest, { artifactType: 'application/vnd.example.none' });
    assert.deepEqual(assertIndex(none).manifests, []);
    assertHeader(none, 'oci-filters-applied', /^\s*artifactType\s*$/);
  });

  test('referrers of a digest nothing refers to -> 200 with an empty index', async () => {
    const idx = assertIndex(await referrers(repo, sha256(randomBytes(16))));
    assert.deepEqual(idx.manifests, []);
  });

  test('referrers in a repository that does not exist -> 200 empty index (or 404 NAME_UNKNOWN)', async () => {
    const res = await referrers(repoName('no-such-repo'), subject.digest);
    if (res.status === 404) assertError(res, 404, 'NAME_UNKNOWN');
    else assert.deepEqual(assertIndex(res).manifests, []);
  });

  test('referrers are scoped to the repository', async () => {
    const other = repoName('referrers-other');
    await pushImageByDigest(other);
    const res = await referrers(other, subject.digest);
    assert.deepEqual(assertIndex(res).manifests, []);
  });

  test('referrers with an invalid digest -> 400', async () => {
    const res = await request('GET', `/v2/${repo}/referrers/sha256:xyz`);
    assertError(res, 400, ['DIGEST_INVALID']);
  });

  test('a referrer may be pushed before its subject exists, and is listed', async () => {
    const repo2 = repoName('referrers-early');
    await pushBlob(repo2, EMPTY_JSON);
    const futureSubject = { mediaType: MT.ociManifest, digest: sha256(randomBytes(40)), size: 1234 };
    const early = await pushByDigest(repo2, {
      schemaVersion: 2,
      mediaType: MT.ociManifest,
      artifactType: SBOM,
      config: EMPTY_DESCRIPTOR,
      layers: [EMPTY_DESCRIPTOR],
      subject: futureSubject,
    });
    assertStatus(early.res, 201, 'a missing subject must not cause MANIFEST_BLOB_UNKNOWN');
    assertHeader(early.res, 'oci-subject', futureSubject.digest);
    const idx = assertIndex(await referrers(repo2, futureSubject.digest));
    assert.deepEqual(
      idx.manifests.map((d) => d.digest),
      [early.digest],
    );
  });

  test('deleting a referrer removes it from the list', async () => {
    const repo3 = repoName('referrers-del');
    await pushBlob(repo3, EMPTY_JSON);
    const subj = await pushImageByDigest(repo3);
    const ref = await pushByDigest(repo3, {
      schemaVersion: 2,
      mediaType: MT.ociManifest,
      artifactType: SBOM,
      config: EMPTY_DESCRIPTOR,
      layers: [EMPTY_DESCRIPTOR],
      subject: subjectOf(subj),
    });
    assertStatus(ref.res, 201);
    assert.equal(assertIndex(await referrers(repo3, subj.digest)).manifests.length, 1);
    assertStatus(await request('DELETE', `/v2/${repo3}/manifests/${ref.digest}`), 202);
    assert.deepEqual(assertIndex(await referrers(repo3, subj.digest)).manifests, []);
  });
});
