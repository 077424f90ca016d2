// Blob pull, cross-repository mount and blob deletion.
//
// Why: pulls are the only mandatory part of the spec, and clients rely on the
// exact headers (Content-Length for progress, Docker-Content-Digest for
// verification) and on HTTP Range for resumable pulls. Blobs are scoped to a
// repository: a blob pushed to repo A must not be readable through repo B
// unless it is mounted there (this is an access-control boundary, not just
// bookkeeping). Mount fallback (202 + upload session) is what clients expect
// when the source repo lacks the blob. Deleting a blob in one repository must
// not remove it from another.
//
// Bad inputs tried: unsatisfiable Range (start beyond the end; last < first),
// blob digest unknown in the repo, blob present only in another repo, mount
// from a repo lacking the blob and from a repo that does not exist, DELETE of
// an already deleted blob.

import { test, describe, before } from 'node:test';
import {
  assert,
  request,
  assertStatus,
  assertHeader,
  assertError,
  repoName,
  randomBytes,
  sha256,
  pushBlob,
  resolveLocation,
  withQuery,
  finishUpload,
} from './lib.mjs';

describe('GET/HEAD blob', () => {
  const repo = repoName('pull');
  const data = randomBytes(100);
  let digest;
  before(async () => {
    digest = await pushBlob(repo, data);
  });

  test('GET -> 200 with body, Content-Length, Docker-Content-Digest, Content-Type', async () => {
    const res = await request('GET', `/v2/${repo}/blobs/${digest}`);
    assertStatus(res, 200);
    assert.ok(res.body.equals(data));
    assertHeader(res, 'content-length', String(data.length));
    assertHeader(res, 'docker-content-digest', digest);
    assertHeader(res, 'content-type', /.+/);
  });

  test('HEAD -> 200 with Content-Length, Docker-Content-Digest, Content-Type and no body', async () => {
    const res = await request('HEAD', `/v2/${repo}/blobs/${digest}`);
    assertStatus(res, 200);
    assert.equal(res.body.length, 0);
    assertHeader(res, 'content-length', String(data.length));
    assertHeader(res, 'docker-content-digest', digest);
    assertHeader(res, 'content-type', /.+/);
  });

  const ranges = [
    ['bytes=2-5', 2, 5],
    ['bytes=10-', 10, 99],
    ['bytes=-7', 93, 99],
    ['bytes=0-0', 0, 0],
    ['bytes=90-1000', 90, 99], // end past the blob is clamped (RFC 9110 14.1.2)
  ];
  for (const [range, first, last] of ranges) {
    test(`GET with Range: ${range} -> 206, Content-Range bytes ${first}-${last}/100`, async () => {
      const res = await request('GET', `/v2/${repo}/blobs/${digest}`, { headers: { range } });
      assertStatus(res, 206);
      assertHeader(res, 'content-range', `bytes ${first}-${last}/${data.length}`);
      assertHeader(res, 'content-length', String(last - first + 1));
      assert.ok(res.body.equals(data.subarray(first, last + 1)), 'partial body differs');
    });
  }

  for (const range of ['bytes=100-200', 'bytes=500-600', 'bytes=50-10']) {
    test(`GET with unsatisfiable Range: ${range} -> 416`, async () => {
      const res = await request('GET', `/v2/${repo}/blobs/${digest}`, { headers: { range } });
      assertStatus(res, 416);
      const cr = res.headers.get('content-range');
      if (cr !== null && range !== 'bytes=50-10') assert.equal(cr, `bytes */${data.length}`);
    });
  }

  test('unknown digest in an existing repo -> 404 BLOB_UNKNOWN (GET and HEAD)', async () => {
    const missing = sha256(randomBytes(32));
    assertError(await request('GET', `/v2/${repo}/blobs/${missing}`), 404, 'BLOB_UNKNOWN');
    assertError(await request('HEAD', `/v2/${repo}/blobs/${missing}`), 404, 'BLOB_UNKNOWN');
  });

  test('blob pushed to another repo is not readable here -> 404 BLOB_UNKNOWN', async () => {
    const other = repoName('pull-other');
    await pushBlob(other, randomBytes(8)); // make sure `other` exists
    assertError(await request('GET', `/v2/${other}/blobs/${digest}`), 404, 'BLOB_UNKNOWN');
    assertError(await request('HEAD', `/v2/${other}/blobs/${digest}`), 404, 'BLOB_UNKNOWN');
  });

  test('blob in a repository that does not exist -> 404 (BLOB_UNKNOWN or NAME_UNKNOWN)', async () => {
    const nowhere = repoName('never-pushed');
    assertError(await request('GET', `/v2/${nowhere}/blobs/${digest}`), 404, ['BLOB_UNKNOWN', 'NAME_UNKNOWN']);
  });
});

describe('cross-repository mount', () => {
  test('POST ?mount=<digest>&from=<repo> -> 201 with Location and Docker-Content-Digest; blob readable in target', async () => {
    const src = repoName('mount-src');
    const dst = repoName('mount-dst');
    const data = randomBytes(400);
    const digest = await pushBlob(src, data);
    const res = await request('POST', withQuery(`/v2/${dst}/blobs/uploads/`, { mount: digest, from: src }), {
      headers: { 'content-length': '0' },
    });
    assertStatus(res, 201);
    assertHeader(res, 'docker-content-digest', digest);
    const loc = resolveLocation(assertHeader(res, 'location'), res.url);
    const viaLoc = await request('GET', loc);
    assertStatus(viaLoc, 200, 'GET Location of mounted blob');
    assert.ok(viaLoc.body.equals(data));
    const get = await request('GET', `/v2/${dst}/blobs/${digest}`);
    assertStatus(get, 200);
    assert.ok(get.body.equals(data));
  });

  test('mount from a repo that lacks the blob -> 202 upload session, which can be completed', async () => {
    const src = repoName('mount-empty-src');
    const dst = repoName('mount-fallback');
    await pushBlob(src, randomBytes(10)); // src exists, but not with our blob
    const elsewhere = repoName('mount-elsewhere');
    const data = randomBytes(256);
    const digest = await pushBlob(elsewhere, data); // the blob exists in the registry, just not in src

    const res = await request('POST', withQuery(`/v2/${dst}/blobs/uploads/`, { mount: digest, from: src }), {
      headers: { 'content-length': '0' },
    });
    assertStatus(res, 202);
    const loc = resolveLocation(assertHeader(res, 'location'), res.url);
    // Not mounted: blob still unknown in dst.
    assertError(await request('GET', `/v2/${dst}/blobs/${digest}`), 404, 'BLOB_UNKNOWN');
    // The session is a normal upload session.
    const put = await finishUpload(loc, digest, data);
    assertStatus(put, 201);
    const get = await request('GET', `/v2/${dst}/blobs/${digest}`);
    assertStatus(get, 200);
    assert.ok(get.body.equals(data));
  });

  test('mount from a repository that does not exist -> 202 upload session', async () => {
    const dst = repoName('mount-nosrc');
    const digest = sha256(randomBytes(20));
    const res = await request('POST', withQuery(`/v2/${dst}/blobs/uploads/`, { mount: digest, from: repoName('ghost') }), {
      headers: { 'content-length': '0' },
    });
    assertStatus(res, 202);
    assertHeader(res, 'location');
  });
});

describe('blob DELETE', () => {
  test('DELETE -> 202; then GET/HEAD -> 404 BLOB_UNKNOWN; second DELETE -> 404', async () => {
    const repo = repoName('blob-del');
    const data = randomBytes(64);
    const digest = await pushBlob(repo, data);
    const del = await request('DELETE', `/v2/${repo}/blobs/${digest}`);
    assertStatus(del, 202);
    assertError(await request('GET', `/v2/${repo}/blobs/${digest}`), 404, 'BLOB_UNKNOWN');
    assertError(await request('HEAD', `/v2/${repo}/blobs/${digest}`), 404, 'BLOB_UNKNOWN');
    assertError(await request('DELETE', `/v2/${repo}/blobs/${digest}`), 404, 'BLOB_UNKNOWN');
  });

  test('deleting a mounted blob in one repo leaves it readable in the source repo', async () => {
    const src = repoName('del-src');
    const dst = repoName('del-dst');
    const data = randomBytes(99);
    const digest = await pushBlob(src, data);
    const mount = await request('POST', withQuery(`/v2/${dst}/blobs/uploads/`, { mount: digest, from: src }), {
      headers: { 'content-length': '0' },
    });
    assertStatus(mount, 201);
    assertStatus(await request('DELETE', `/v2/${dst}/blobs/${digest}`), 202);
    assertError(await request('GET', `/v2/${dst}/blobs/${digest}`), 404, 'BLOB_UNKNOWN');
    const still = await request('GET', `/v2/${src}/blobs/${digest}`);
    assertStatus(still, 200, 'blob must survive in the source repository');
    assert.ok(still.body.equals(data));
  });
});
