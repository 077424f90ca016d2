// Blob push: every upload flavour of the OCI distribution spec, happy paths.
//
// Why: clients differ in how they push layers — docker/containerd use a
// streamed PATCH, crane/oras use POST+PUT or single POST, resumable clients use
// chunked PATCH with Content-Range — and a registry must accept all of them,
// report progress (Range, Location, Docker-Upload-UUID), let the client cancel,
// and hand back usable Location headers (which may be relative and must be
// resolved against the request URL; upload locations may carry opaque query
// state, so each request uses the Location returned by the previous one).
// sha512 is covered because the spec allows any registered algorithm and the
// referrers/sha512 conformance tests push sha512 content.
//
// Bad inputs: none here (see bad-uploads.test.mjs / bad-digests.test.mjs),
// except that a cancelled session must afterwards be unknown.

import { test, describe } from 'node:test';
import {
  assert,
  MT,
  request,
  assertStatus,
  assertHeader,
  assertError,
  repoName,
  randomBytes,
  sha256,
  sha512,
  startUpload,
  chunkSizeFor,
  patchChunk,
  getUploadStatus,
  finishUpload,
  pushBlob,
  pushBlobChunked,
  resolveLocation,
  withQuery,
  streamBody,
} from './lib.mjs';

async function assertBlob(repo, digest, data) {
  const res = await request('GET', `/v2/${repo}/blobs/${digest}`);
  assertStatus(res, 200, `GET blob ${digest}`);
  assert.ok(res.body.equals(data), `blob ${digest} content differs (got ${res.body.length} bytes, want ${data.length})`);
  assertHeader(res, 'docker-content-digest', digest);
}

describe('monolithic upload', () => {
  test('POST -> 202 with Location; PUT ?digest= with body -> 201 with Location and Docker-Content-Digest', async () => {
    const repo = repoName('mono');
    const data = randomBytes(1000);
    const digest = sha256(data);
    const post = await request('POST', `/v2/${repo}/blobs/uploads/`, { headers: { 'content-length': '0' } });
    assertStatus(post, 202);
    const loc = assertHeader(post, 'location');
    assert.ok(/^https?:\/\//.test(loc) || loc.startsWith('/'), `Location should be an absolute URL or absolute path: ${loc}`);
    const put = await request('PUT', withQuery(resolveLocation(loc, post.url), { digest }), {
      headers: { 'content-type': MT.octet },
      body: data,
    });
    assertStatus(put, 201);
    assertHeader(put, 'docker-content-digest', digest);
    const blobLoc = resolveLocation(assertHeader(put, 'location'), put.url);
    // The returned Location must be pullable.
    const get = await request('GET', blobLoc);
    assertStatus(get, 200, 'GET of the Location returned by the final PUT');
    assert.ok(get.body.equals(data));
    await assertBlob(repo, digest, data);
  });

  test('POST response carries OCI-Chunk-Min-Length (any non-negative integer)', async () => {
    const repo = repoName('minlen');
    const post = await request('POST', `/v2/${repo}/blobs/uploads/`, { headers: { 'content-length': '0' } });
    assertStatus(post, 202);
    assertHeader(post, 'oci-chunk-min-length', /^\d+$/);
  });

  test('single POST ?digest= with body -> 201 with Location and Docker-Content-Digest', async () => {
    const repo = repoName('single-post');
    const data = randomBytes(777);
    const digest = sha256(data);
    const res = await request('POST', withQuery(`/v2/${repo}/blobs/uploads/`, { digest }), {
      headers: { 'content-type': MT.octet },
      body: data,
    });
    assertStatus(res, 201);
    assertHeader(res, 'docker-content-digest', digest);
    const get = await request('GET', resolveLocation(assertHeader(res, 'location'), res.url));
    assertStatus(get, 200);
    assert.ok(get.body.equals(data));
    await assertBlob(repo, digest, data);
  });

  test('zero-length blob can be pushed and pulled', async () => {
    const repo = repoName('empty-blob');
    const data = Buffer.alloc(0);
    const digest = await pushBlob(repo, data);
    assert.equal(digest, 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    const head = await request('HEAD', `/v2/${repo}/blobs/${digest}`);
    assertStatus(head, 200);
    assertHeader(head, 'content-length', '0');
    await assertBlob(repo, digest, data);
  });

  test('pushing the same content twice succeeds both times', async () => {
    const repo = repoName('twice');
    const data = randomBytes(300);
    const d1 = await pushBlob(repo, data);
    const d2 = await pushBlob(repo, data);
    assert.equal(d1, d2);
    await assertBlob(repo, d1, data);
  });
});

describe('chunked upload', () => {
  test('PATCH chunks with Content-Range; status GET; final PUT carrying the last chunk', async () => {
    const repo = repoName('chunked');
    const session = await startUpload(repo);
    const chunk = chunkSizeFor(session, 1000);
    const data = randomBytes(chunk * 2 + 123);
    const digest = sha256(data);

    let loc = session.location;
    // chunk 1: 0..chunk-1
    let res = await patchChunk(loc, data.subarray(0, chunk), 0);
    assertStatus(res, 202);
    assertHeader(res, 'range', `0-${chunk - 1}`);
    loc = resolveLocation(assertHeader(res, 'location'), res.url);
    // chunk 2
    res = await patchChunk(loc, data.subarray(chunk, 2 * chunk), chunk);
    assertStatus(res, 202);
    assertHeader(res, 'range', `0-${2 * chunk - 1}`);
    loc = resolveLocation(assertHeader(res, 'location'), res.url);

    // upload status
    const status = await getUploadStatus(loc);
    assertStatus(status, 204);
    assertHeader(status, 'range', `0-${2 * chunk - 1}`);
    assertHeader(status, 'docker-upload-uuid', /.+/);
    assert.equal(status.body.length, 0);
    loc = resolveLocation(assertHeader(status, 'location'), status.url);

    // blob must not be visible before the session is closed
    const early = await request('HEAD', `/v2/${repo}/blobs/${digest}`);
    assertStatus(early, 404, 'blob visible before final PUT');

    // final PUT with the last chunk
    const put = await finishUpload(loc, digest, data.subarray(2 * chunk), 2 * chunk);
    assertStatus(put, 201);
    assertHeader(put, 'docker-content-digest', digest);
    assertHeader(put, 'location');
    await assertBlob(repo, digest, data);
  });

  test('all chunks by PATCH, then final PUT with empty body', async () => {
    const repo = repoName('chunked-empty-put');
    const data = randomBytes(5000);
    const { digest, put } = await pushBlobChunked(repo, data, { chunkSize: 1500 });
    assertHeader(put, 'docker-content-digest', digest);
    await assertBlob(repo, digest, data);
  });

  test('helper: chunked upload with the last chunk in the PUT', async () => {
    const repo = repoName('chunked-put-last');
    const data = randomBytes(4100);
    const { digest } = await pushBlobChunked(repo, data, { chunkSize: 1024, putLastChunk: true });
    await assertBlob(repo, digest, data);
  });

  test('status GET right after POST -> 204 with Location and Docker-Upload-UUID', async () => {
    const repo = repoName('status-new');
    const session = await startUpload(repo);
    const status = await getUploadStatus(session.location);
    assertStatus(status, 204);
    assertHeader(status, 'location');
    assertHeader(status, 'docker-upload-uuid', /.+/);
    const range = status.headers.get('range');
    // Nothing uploaded yet: no Range, or the conventional "0-0".
    if (range !== null) assert.match(range, /^0-0$/);
  });
});

describe('streamed upload (PATCH without Content-Range)', () => {
  test('one PATCH with Content-Length and no Content-Range, then PUT -> 201', async () => {
    const repo = repoName('stream');
    const data = randomBytes(3333);
    const digest = sha256(data);
    const session = await startUpload(repo);
    const patch = await patchChunk(session.location, data, 0, { contentRange: false });
    assertStatus(patch, 202);
    assertHeader(patch, 'range', `0-${data.length - 1}`);
    const loc = resolveLocation(assertHeader(patch, 'location'), patch.url);
    const put = await finishUpload(loc, digest);
    assertStatus(put, 201);
    assertHeader(put, 'docker-content-digest', digest);
    await assertBlob(repo, digest, data);
  });

  test('two PATCHes sent with Transfer-Encoding: chunked (no Content-Length), then PUT -> 201', async () => {
    const repo = repoName('stream-te');
    const a = randomBytes(1111);
    const b = randomBytes(2222);
    const data = Buffer.concat([a, b]);
    const digest = sha256(data);
    const session = await startUpload(repo);
    let res = await request('PATCH', session.location, {
      headers: { 'content-type': MT.octet },
      body: streamBody(a.subarray(0, 500), a.subarray(500)),
    });
    assertStatus(res, 202);
    assertHeader(res, 'range', `0-${a.length - 1}`);
    let loc = resolveLocation(assertHeader(res, 'location'), res.url);
    res = await request('PATCH', loc, { headers: { 'content-type': MT.octet }, body: streamBody(b) });
    assertStatus(res, 202);
    assertHeader(res, 'range', `0-${data.length - 1}`);
    loc = resolveLocation(assertHeader(res, 'location'), res.url);
    const put = await finishUpload(loc, digest);
    assertStatus(put, 201);
    await assertBlob(repo, digest, data);
  });
});

describe('cancel upload', () => {
  test('DELETE upload -> 204; afterwards GET/PATCH/PUT on it -> 404 BLOB_UPLOAD_UNKNOWN and nothing is stored', async () => {
    const repo = repoName('cancel');
    const data = randomBytes(600);
    const digest = sha256(data);
    const session = await startUpload(repo);
    const patch = await patchChunk(session.location, data.subarray(0, 300), 0);
    assertStatus(patch, 202);
    const loc = resolveLocation(assertHeader(patch, 'location'), patch.url);

    const del = await request('DELETE', loc, { headers: { 'content-length': '0' } });
    assertStatus(del, 204);

    assertError(await getUploadStatus(loc), 404, 'BLOB_UPLOAD_UNKNOWN', 'status of cancelled upload');
    assertError(await patchChunk(loc, data.subarray(300), 300), 404, 'BLOB_UPLOAD_UNKNOWN', 'PATCH to cancelled upload');
    assertError(await finishUpload(loc, digest, data.subarray(300), 300), 404, 'BLOB_UPLOAD_UNKNOWN', 'PUT to cancelled upload');
    assertStatus(await request('HEAD', `/v2/${repo}/blobs/${digest}`), 404, 'blob of cancelled upload');
  });

  test('a completed upload session is closed: status GET -> 404 BLOB_UPLOAD_UNKNOWN', async () => {
    const repo = repoName('closed');
    const data = randomBytes(100);
    const session = await startUpload(repo);
    const put = await finishUpload(session.location, sha256(data), data);
    assertStatus(put, 201);
    assertError(await getUploadStatus(session.location), 404, 'BLOB_UPLOAD_UNKNOWN');
  });
});

describe('sha512 blobs', () => {
  test('POST then PUT ?digest=sha512:... -> 201; GET/HEAD by sha512 digest', async () => {
    const repo = repoName('sha512');
    const data = randomBytes(2048);
    const digest = sha512(data);
    const session = await startUpload(repo);
    const put = await finishUpload(session.location, digest, data);
    assertStatus(put, 201);
    assertHeader(put, 'docker-content-digest', digest);
    const get = await request('GET', `/v2/${repo}/blobs/${digest}`);
    assertStatus(get, 200);
    assert.ok(get.body.equals(data));
    assertHeader(get, 'docker-content-digest', digest);
    const head = await request('HEAD', `/v2/${repo}/blobs/${digest}`);
    assertStatus(head, 200);
    assertHeader(head, 'content-length', String(data.length));
    assertHeader(head, 'docker-content-digest', digest);
  });

  test('chunked upload with POST ?digest-algorithm=sha512 and final PUT ?digest=sha512:...', async () => {
    const repo = repoName('sha512-chunked');
    const data = randomBytes(3000);
    const { digest, put } = await pushBlobChunked(repo, data, { chunkSize: 1000, algo: 'sha512' });
    assertHeader(put, 'docker-content-digest', digest);
    await assertBlob(repo, digest, data);
  });

  test('single POST ?digest=sha512:... -> 201', async () => {
    const repo = repoName('sha512-post');
    const data = randomBytes(512);
    const digest = sha512(data);
    const res = await request('POST', withQuery(`/v2/${repo}/blobs/uploads/`, { digest }), {
      headers: { 'content-type': MT.octet },
      body: data,
    });
    assertStatus(res, 201);
    await assertBlob(repo, digest, data);
  });
});
