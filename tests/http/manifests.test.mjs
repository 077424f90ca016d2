// Manifests: push/pull of the four manifest kinds clients actually send, tag
// listing and pagination, multi-tag push, manifest and tag deletion.
//
// Why: the registry must store manifests byte-for-byte (their digest is the
// image identity), echo the Content-Type they were pushed with, and resolve
// tags and digests identically for GET and HEAD. OCI image manifest and index
// are what buildkit/oras/crane push; Docker schema2 manifest and manifest list
// are still what `docker push` and many mirrors produce. Manifests are sent
// pretty-printed with a 3-space indent and trailing newline so any
// re-serialisation by the registry shows up as a digest/body mismatch.
// Tags list order, `n`/`last` and the `Link: <...>; rel="next"` header are what
// paginating clients (skopeo, regclient) rely on.
//
// Bad inputs tried here: unknown tag / unknown digest in an existing repository
// (404 MANIFEST_UNKNOWN), re-deleting a deleted manifest. The rest of the
// invalid manifest cases live in bad-manifests.test.mjs.

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
  pushManifest,
  getManifest,
  makeImage,
  makeIndex,
  pushImageByDigest,
  resolveLocation,
  tagsList,
  nextLink,
} from './lib.mjs';

async function assertManifest(repo, ref, { digest, bytes, mediaType }) {
  const get = await getManifest(repo, ref);
  assertStatus(get, 200, `GET manifest ${ref}`);
  assert.equal(mediaTypeOf(get), mediaType, `Content-Type of GET ${ref}`);
  assertHeader(get, 'docker-content-digest', digest);
  assert.ok(get.body.equals(bytes), `GET ${ref}: body is not byte-identical to what was pushed`);
  assertHeader(get, 'content-length', String(bytes.length));

  const head = await getManifest(repo, ref, { method: 'HEAD' });
  assertStatus(head, 200, `HEAD manifest ${ref}`);
  assert.equal(mediaTypeOf(head), mediaType, `Content-Type of HEAD ${ref}`);
  assertHeader(head, 'docker-content-digest', digest);
  assertHeader(head, 'content-length', String(bytes.length));
  assert.equal(head.body.length, 0, 'HEAD must not return a body');
}

// Build one manifest of each kind in `repo`. Returns { body, mediaType }.
const kinds = {
  'OCI image manifest': async (repo) => {
    const m = await makeImage(repo, { flavour: 'oci', layers: 2, annotations: { 'org.example.nonce': randomHex(8) } });
    return { body: m, mediaType: MT.ociManifest };
  },
  'OCI image index': async (repo) => {
    const a = await pushImageByDigest(repo, { flavour: 'oci' });
    const b = await pushImageByDigest(repo, { flavour: 'oci' });
    return { body: makeIndex([a, b], { flavour: 'oci' }), mediaType: MT.ociIndex };
  },
  'Docker schema2 manifest': async (repo) => {
    const m = await makeImage(repo, { flavour: 'docker', layers: 2 });
    return { body: m, mediaType: MT.dockerManifest };
  },
  'Docker manifest list': async (repo) => {
    const a = await pushImageByDigest(repo, { flavour: 'docker' });
    const b = await pushImageByDigest(repo, { flavour: 'docker' });
    return { body: makeIndex([a, b], { flavour: 'docker' }), mediaType: MT.dockerList };
  },
};

for (const [kind, build] of Object.entries(kinds)) {
  describe(`${kind}`, () => {
    const repo = repoName(kind);
    let pushed; // { digest, bytes, mediaType, res }
    before(async () => {
      const { body, mediaType } = await build(repo);
      const res = await putManifest(repo, 'v1', body, mediaType);
      pushed = { res, digest: res.manifestDigest, bytes: res.manifestBytes, mediaType };
    });

    test('PUT by tag -> 201 with Location and Docker-Content-Digest', async () => {
      const { res, digest } = pushed;
      assertStatus(res, 201);
      assertHeader(res, 'docker-content-digest', digest);
      const loc = resolveLocation(assertHeader(res, 'location'), res.url);
      const viaLoc = await request('GET', loc, { headers: { accept: pushed.mediaType } });
      assertStatus(viaLoc, 200, 'GET of the Location returned by manifest PUT');
      assert.ok(viaLoc.body.equals(pushed.bytes));
    });

    test('GET/HEAD by tag: Content-Type, Docker-Content-Digest, Content-Length, identical bytes', async () => {
      assertStatus(pushed.res, 201);
      await assertManifest(repo, 'v1', pushed);
    });

    test('GET/HEAD by digest: same', async () => {
      assertStatus(pushed.res, 201);
      await assertManifest(repo, pushed.digest, pushed);
    });

    test('Accept: only the stored media type -> 200 with that Content-Type', async () => {
      assertStatus(pushed.res, 201);
      const res = await getManifest(repo, 'v1', { accept: pushed.mediaType });
      assertStatus(res, 200);
      assert.equal(mediaTypeOf(res), pushed.mediaType);
      assert.ok(res.body.equals(pushed.bytes));
    });

    test('Accept: list with q-values, stored type last -> 200 with the stored type', async () => {
      assertStatus(pushed.res, 201);
      const others = [MT.ociManifest, MT.ociIndex, MT.dockerManifest, MT.dockerList].filter((t) => t !== pushed.mediaType);
      const accept = [...others.map((t, i) => `${t};q=0.${9 - i}`), `${pushed.mediaType};q=0.5`].join(', ');
      const res = await getManifest(repo, pushed.digest, { accept });
      assertStatus(res, 200);
      assert.equal(mediaTypeOf(res), pushed.mediaType);
      assert.ok(res.body.equals(pushed.bytes));
    });

    test('Accept: application/json, <stored type> -> 200 with the stored type', async () => {
      assertStatus(pushed.res, 201);
      const res = await getManifest(repo, 'v1', { accept: `application/json, ${pushed.mediaType}` });
      assertStatus(res, 200);
      assert.equal(mediaTypeOf(res), pushed.mediaType);
    });

    test('Accept: */* -> 200, the stored manifest unchanged (pier: no format conversion)', async () => {
      assertStatus(pushed.res, 201);
      const res = await getManifest(repo, pushed.digest, { accept: '*/*' });
      assertStatus(res, 200);
      assert.equal(mediaTypeOf(res), pushed.mediaType);
      assert.ok(res.body.equals(pushed.bytes));
    });
  });
}

describe('push by digest and multi-tag push', () => {
  test('PUT by digest -> 201; GET by digest works; no tag is created', async () => {
    const repo = repoName('by-digest');
    const m = await makeImage(repo);
    const bytes = toBytes(m);
    const digest = sha256(bytes);
    const { res } = await pushManifest(repo, digest, bytes, MT.ociManifest);
    assertHeader(res, 'location');
    await assertManifest(repo, digest, { digest, bytes, mediaType: MT.ociManifest });
    const tags = await tagsList(repo);
    if (tags.status === 200) assert.deepEqual(tags.json().tags ?? [], []);
    else assertError(tags, 404, 'NAME_UNKNOWN');
  });

  test('PUT /manifests/<digest>?tag=a&tag=b -> 201, both tags resolve, OCI-Tag lists them', async () => {
    const repo = repoName('multi-tag');
    const m = await makeImage(repo);
    const bytes = toBytes(m);
    const digest = sha256(bytes);
    const res = await putManifest(repo, digest, bytes, MT.ociManifest, { query: { tag: ['alpha', 'beta'] } });
    assertStatus(res, 201);
    assertHeader(res, 'docker-content-digest', digest);
    const ociTag = (res.headers.get('oci-tag') || '').split(',').map((s) => s.trim()).filter(Boolean);
    assert.deepEqual(ociTag.sort(), ['alpha', 'beta'], `OCI-Tag header should list both tags: ${res.describe()}`);
    for (const tag of ['alpha', 'beta']) {
      const get = await getManifest(repo, tag);
      assertStatus(get, 200, `tag ${tag}`);
      assertHeader(get, 'docker-content-digest', digest);
    }
    const list = await tagsList(repo);
    assertStatus(list, 200);
    assert.deepEqual(list.json().tags, ['alpha', 'beta']);
  });

  test('re-pointing a tag: GET tag returns the new manifest, the old one stays reachable by digest', async () => {
    const repo = repoName('retag');
    const old = await pushManifest(repo, 'latest', await makeImage(repo), MT.ociManifest);
    const neu = await pushManifest(repo, 'latest', await makeImage(repo), MT.ociManifest);
    const get = await getManifest(repo, 'latest');
    assertStatus(get, 200);
    assertHeader(get, 'docker-content-digest', neu.digest);
    const byOld = await getManifest(repo, old.digest);
    assertStatus(byOld, 200);
    assert.ok(byOld.body.equals(old.bytes));
  });
});

describe('tags list', () => {
  const repo = repoName('tags');
  // Lower-case, digits, '.', '-' and '_' only: ASCII order and case-insensitive
  // lexical order agree on these, so either allowed sort satisfies the test.
  const tags = ['v1.0', 'latest', '0.1', 'b', 'a', 'v1.0-rc1', 'a_b', 'zeta', '1', 'v2'];
  const sorted = [...tags].sort();
  before(async () => {
    const m = await makeImage(repo);
    const bytes = toBytes(m);
    for (const t of tags) await pushManifest(repo, t, bytes, MT.ociManifest);
  });

  test('GET tags/list -> 200 JSON {name, tags} with all tags in lexical order', async () => {
    const res = await tagsList(repo);
    assertStatus(res, 200);
    assert.equal(mediaTypeOf(res), 'application/json');
    const body = res.json();
    assert.equal(body.name, repo);
    assert.deepEqual(body.tags, sorted);
  });

  test('?n=3 -> first 3 tags and Link rel="next"; following Link pages through all tags', async () => {
    let res = await tagsList(repo, { n: 3 });
    assertStatus(res, 200);
    assert.deepEqual(res.json().tags, sorted.slice(0, 3));
    const seen = [...res.json().tags];
    let pages = 1;
    let next = nextLink(res);
    assert.ok(next, `expected Link: <...>; rel="next" in ${res.describe()}`);
    while (next && pages < 20) {
      res = await request('GET', next);
      assertStatus(res, 200, `following ${next}`);
      const page = res.json().tags;
      assert.ok(page.length <= 3, 'page larger than n');
      seen.push(...page);
      next = nextLink(res);
      pages++;
    }
    assert.deepEqual(seen, sorted);
  });

  test('?n=2&last=<tag> -> the 2 tags following <tag>', async () => {
    const res = await tagsList(repo, { n: 2, last: sorted[3] });
    assertStatus(res, 200);
    assert.deepEqual(res.json().tags, sorted.slice(4, 6));
    assert.ok(nextLink(res), 'more tags remain, Link rel="next" expected');
  });

  test('?last=<tag> without n -> all tags after <tag>', async () => {
    const res = await tagsList(repo, { last: sorted[6] });
    assertStatus(res, 200);
    assert.deepEqual(res.json().tags, sorted.slice(7));
  });

  test('?n=<count> covering the rest -> no Link header', async () => {
    const res = await tagsList(repo, { n: 100 });
    assertStatus(res, 200);
    assert.deepEqual(res.json().tags, sorted);
    assert.equal(nextLink(res), null, 'no Link expected when everything fits');
  });

  test('?n=0 -> empty list and no Link header', async () => {
    const res = await tagsList(repo, { n: 0 });
    assertStatus(res, 200);
    assert.deepEqual(res.json().tags, []);
    assert.equal(res.headers.get('link'), null);
  });
});

describe('deletion', () => {
  test('DELETE manifest by digest -> 202; then by digest and by tag -> 404 MANIFEST_UNKNOWN; tag gone from list', async () => {
    const repo = repoName('del-manifest');
    const keep = await pushManifest(repo, 'keep', await makeImage(repo), MT.ociManifest);
    const gone = await pushManifest(repo, 'gone', await makeImage(repo), MT.ociManifest);
    const del = await request('DELETE', `/v2/${repo}/manifests/${gone.digest}`);
    assertStatus(del, 202);
    assertError(await getManifest(repo, gone.digest), 404, 'MANIFEST_UNKNOWN');
    assertError(await getManifest(repo, gone.digest, { method: 'HEAD' }), 404, 'MANIFEST_UNKNOWN');
    assertError(await getManifest(repo, 'gone'), 404, 'MANIFEST_UNKNOWN');
    const list = await tagsList(repo);
    assertStatus(list, 200);
    assert.deepEqual(list.json().tags, ['keep']);
    assertStatus(await getManifest(repo, keep.digest), 200, 'other manifest must survive');
    assertError(await request('DELETE', `/v2/${repo}/manifests/${gone.digest}`), 404, 'MANIFEST_UNKNOWN');
  });

  test('DELETE tag -> 202; tag gone, manifest still reachable by digest and by its other tag', async () => {
    const repo = repoName('del-tag');
    const m = await makeImage(repo);
    const a = await pushManifest(repo, 'one', m, MT.ociManifest);
    await pushManifest(repo, 'two', m, MT.ociManifest);
    const del = await request('DELETE', `/v2/${repo}/manifests/one`);
    assertStatus(del, 202);
    assertError(await getManifest(repo, 'one'), 404, 'MANIFEST_UNKNOWN');
    const byDigest = await getManifest(repo, a.digest);
    assertStatus(byDigest, 200);
    assert.ok(byDigest.body.equals(a.bytes));
    assertStatus(await getManifest(repo, 'two'), 200);
    const list = await tagsList(repo);
    assertStatus(list, 200);
    assert.deepEqual(list.json().tags, ['two']);
  });

  test('DELETE of an unknown tag -> 404 MANIFEST_UNKNOWN', async () => {
    const repo = repoName('del-unknown');
    await pushManifest(repo, 'exists', await makeImage(repo), MT.ociManifest);
    assertError(await request('DELETE', `/v2/${repo}/manifests/nope`), 404, 'MANIFEST_UNKNOWN');
  });
});

describe('not found', () => {
  const repo = repoName('nf');
  before(async () => {
    await pushManifest(repo, 'present', await makeImage(repo), MT.ociManifest);
  });

  test('GET/HEAD of an unknown tag -> 404 MANIFEST_UNKNOWN', async () => {
    assertError(await getManifest(repo, 'absent'), 404, 'MANIFEST_UNKNOWN');
    assertError(await getManifest(repo, 'absent', { method: 'HEAD' }), 404, 'MANIFEST_UNKNOWN');
  });

  test('GET of an unknown digest -> 404 MANIFEST_UNKNOWN', async () => {
    assertError(await getManifest(repo, sha256(randomBytes(16))), 404, 'MANIFEST_UNKNOWN');
  });

  test('GET of a blob digest through the manifests endpoint -> 404 MANIFEST_UNKNOWN', async () => {
    const layerDigest = (await makeImage(repo)).layers[0].digest; // a blob, not a manifest
    assertError(await getManifest(repo, layerDigest), 404, 'MANIFEST_UNKNOWN');
  });
});
