// Invalid manifest pushes -> 4xx with the right OCI error code, and nothing
// visible afterwards (neither the tag nor the manifest by digest).
//
// Why: a manifest is the root of an image; accepting one whose blobs are
// missing produces images that fail on pull, accepting malformed JSON or a
// body whose mediaType contradicts the Content-Type enables type-confusion
// attacks (CVE-2021-41190 class: same digest interpreted as manifest or index),
// and unbounded manifest sizes are a memory-exhaustion vector. Tags must obey
// [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
//
// Bad inputs tried: OCI manifest with missing config blob; with a missing
// layer; Docker schema2 manifest with a missing layer; OCI index and Docker
// manifest list naming a missing child manifest; truncated JSON; non-JSON
// text; a JSON array; Content-Type OCI manifest with body mediaType Docker
// schema2; Content-Type OCI index with body mediaType OCI manifest; a manifest
// of 4 MiB + 1 byte (and exactly 4 MiB, which must be accepted); tags
// `.hidden`, `-dash`, a 129-character tag (and a 128-character tag, which must
// be accepted).

import { test, describe, before } from 'node:test';
import {
  assert,
  MT,
  request,
  assertStatus,
  assertError,
  repoName,
  randomBytes,
  randomHex,
  sha256,
  toBytes,
  putManifest,
  pushManifest,
  getManifest,
  makeImage,
  makeIndex,
  pushImageByDigest,
  pushBlob,
  tagsList,
} from './lib.mjs';

// The tag and the manifest digest must both be unknown after a rejected push.
async function assertNothingVisible(repo, tag, digest) {
  assertError(await getManifest(repo, tag), 404, ['MANIFEST_UNKNOWN', 'NAME_UNKNOWN'], `tag ${tag} after rejected push`);
  assertError(await getManifest(repo, digest), 404, ['MANIFEST_UNKNOWN', 'NAME_UNKNOWN'], `digest ${digest} after rejected push`);
  const tags = await tagsList(repo);
  if (tags.status === 200) assert.ok(!(tags.json().tags || []).includes(tag), `tag ${tag} is listed after a rejected push`);
}

describe('manifest referencing missing content -> 400 MANIFEST_BLOB_UNKNOWN', () => {
  const missing = () => ({ digest: sha256(randomBytes(32)), size: 32 });

  test('OCI manifest whose config blob is missing', async () => {
    const repo = repoName('missing-config');
    const m = await makeImage(repo);
    m.config = { ...m.config, ...missing() };
    const res = await putManifest(repo, 'bad', m);
    assertError(res, 400, 'MANIFEST_BLOB_UNKNOWN');
    await assertNothingVisible(repo, 'bad', res.manifestDigest);
  });

  test('OCI manifest with a missing layer', async () => {
    const repo = repoName('missing-layer');
    const m = await makeImage(repo, { layers: 2 });
    m.layers[1] = { ...m.layers[1], ...missing() };
    const res = await putManifest(repo, 'bad', m);
    assertError(res, 400, 'MANIFEST_BLOB_UNKNOWN');
    await assertNothingVisible(repo, 'bad', res.manifestDigest);
  });

  test('OCI manifest whose layer exists only in another repository', async () => {
    const repo = repoName('foreign-layer');
    const other = repoName('foreign-layer-src');
    const m = await makeImage(repo);
    const foreign = randomBytes(77);
    m.layers.push({ mediaType: MT.ociLayer, digest: await pushBlob(other, foreign), size: foreign.length });
    const res = await putManifest(repo, 'bad', m);
    assertError(res, 400, 'MANIFEST_BLOB_UNKNOWN');
    await assertNothingVisible(repo, 'bad', res.manifestDigest);
  });

  test('Docker schema2 manifest with a missing layer', async () => {
    const repo = repoName('missing-docker-layer');
    const m = await makeImage(repo, { flavour: 'docker' });
    m.layers.push({ mediaType: MT.dockerLayer, ...missing() });
    const res = await putManifest(repo, 'bad', m);
    assertError(res, 400, 'MANIFEST_BLOB_UNKNOWN');
    await assertNothingVisible(repo, 'bad', res.manifestDigest);
  });

  for (const flavour of ['oci', 'docker']) {
    test(`${flavour === 'oci' ? 'OCI index' : 'Docker manifest list'} naming a missing child manifest`, async () => {
      const repo = repoName(`missing-child-${flavour}`);
      const child = await pushImageByDigest(repo, { flavour });
      const ghost = { mediaType: child.mediaType, ...missing() };
      const res = await putManifest(repo, 'bad', makeIndex([child, ghost], { flavour }));
      assertError(res, 400, 'MANIFEST_BLOB_UNKNOWN');
      await assertNothingVisible(repo, 'bad', res.manifestDigest);
    });
  }
});

describe('malformed manifests -> 400 MANIFEST_INVALID', () => {
  const repo = repoName('malformed');
  before(async () => {
    await pushManifest(repo, 'good', await makeImage(repo), MT.ociManifest);
  });

  const bodies = {
    'truncated JSON': '{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {',
    'not JSON at all': 'this is not a manifest ' + randomHex(4),
    'a JSON array': `[${JSON.stringify(randomHex(4))}]`,
  };
  for (const [why, body] of Object.entries(bodies)) {
    test(why, async () => {
      const res = await putManifest(repo, 'bad', Buffer.from(body), MT.ociManifest);
      assertError(res, 400, 'MANIFEST_INVALID');
      await assertNothingVisible(repo, 'bad', res.manifestDigest);
    });
  }

  test('Content-Type OCI manifest, body mediaType Docker schema2', async () => {
    const m = await makeImage(repo);
    m.mediaType = MT.dockerManifest;
    const res = await putManifest(repo, 'bad', m, MT.ociManifest);
    assertError(res, 400, 'MANIFEST_INVALID');
    await assertNothingVisible(repo, 'bad', res.manifestDigest);
  });

  test('Content-Type OCI index, body mediaType OCI manifest', async () => {
    const m = await makeImage(repo);
    const res = await putManifest(repo, 'bad', m, MT.ociIndex);
    assertError(res, 400, 'MANIFEST_INVALID');
    await assertNothingVisible(repo, 'bad', res.manifestDigest);
  });

  test('Content-Type Docker manifest list, body mediaType Docker schema2', async () => {
    const m = await makeImage(repo, { flavour: 'docker' });
    const res = await putManifest(repo, 'bad', m, MT.dockerList);
    assertError(res, 400, 'MANIFEST_INVALID');
    await assertNothingVisible(repo, 'bad', res.manifestDigest);
  });
});

describe('manifest size limit (4 MiB)', () => {
  const LIMIT = 4 * 1024 * 1024;
  // An image manifest padded with an annotation to exactly `size` bytes.
  async function manifestOfSize(repo, size) {
    const m = await makeImage(repo, { annotations: { 'org.example.pad': '' } });
    const base = toBytes(m).length;
    m.annotations['org.example.pad'] = 'p'.repeat(size - base);
    const bytes = toBytes(m);
    assert.equal(bytes.length, size);
    return bytes;
  }

  test('a manifest of exactly 4 MiB is accepted', async () => {
    const repo = repoName('size-ok');
    const bytes = await manifestOfSize(repo, LIMIT);
    const { digest } = await pushManifest(repo, 'big', bytes, MT.ociManifest);
    const get = await getManifest(repo, digest);
    assertStatus(get, 200);
    assert.ok(get.body.equals(bytes));
  });

  test('a manifest of 4 MiB + 1 byte -> 413 (SIZE_INVALID or MANIFEST_INVALID), not stored', async () => {
    const repo = repoName('size-over');
    const bytes = await manifestOfSize(repo, LIMIT + 1);
    const res = await putManifest(repo, 'huge', bytes, MT.ociManifest);
    assertError(res, 413, ['SIZE_INVALID', 'MANIFEST_INVALID']);
    await assertNothingVisible(repo, 'huge', sha256(bytes));
  });
});

describe('invalid tags -> 400 TAG_INVALID or MANIFEST_INVALID', () => {
  const repo = repoName('bad-tags');
  let manifest;
  before(async () => {
    manifest = await makeImage(repo, { annotations: { nonce: randomHex(8) } });
  });

  const badTags = {
    'starts with "."': '.hidden',
    'starts with "-"': '-dash',
    '129 characters': 't'.repeat(129),
  };
  for (const [why, tag] of Object.entries(badTags)) {
    test(`tag ${why}`, async () => {
      const res = await putManifest(repo, tag, manifest);
      assertError(res, 400, ['TAG_INVALID', 'MANIFEST_INVALID']);
      assertError(await getManifest(repo, res.manifestDigest), 404, ['MANIFEST_UNKNOWN', 'NAME_UNKNOWN'], 'manifest stored despite invalid tag');
      const tags = await tagsList(repo);
      if (tags.status === 200) assert.ok(!(tags.json().tags || []).includes(tag), 'invalid tag is listed');
    });
  }

  test('a 128-character tag, and one starting with "_", are valid', async () => {
    for (const tag of ['T'.repeat(128), '_underscore']) {
      const { digest } = await pushManifest(repo, tag, { ...manifest, annotations: { nonce: randomHex(8) } }, MT.ociManifest);
      const get = await getManifest(repo, tag);
      assertStatus(get, 200, `tag ${tag.slice(0, 20)}`);
      assert.equal(get.headers.get('docker-content-digest'), digest);
    }
  });
});

describe('manifest PUT without a known Content-Type', () => {
  test('Content-Type missing entirely, body has mediaType -> 201 or 400 MANIFEST_INVALID, never 5xx', async () => {
    const repo = repoName('no-ct');
    const m = await makeImage(repo);
    const bytes = toBytes(m);
    const res = await request('PUT', `/v2/${repo}/manifests/t`, { body: bytes });
    if (res.status !== 201) assertError(res, 400, ['MANIFEST_INVALID', 'UNSUPPORTED']);
  });
});
