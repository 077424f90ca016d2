// Invalid digests and digest mismatches -> 400 DIGEST_INVALID, nothing stored.
//
// Why: digests are the registry's storage keys and the client's integrity
// check. A malformed digest must be rejected before it is used as a key
// (path traversal, aliasing of upper/lower-case hex), and content whose hash
// does not match the digest the client claims must never become readable —
// not under the claimed digest and not under its real one.
//
// Bad inputs tried (digest strings): non-hex `sha256:xyz`; sha256 with 63 and
// 65 hex chars; upper-case hex; missing algorithm / missing colon; unknown
// algorithm `md5:<32 hex>` (DIGEST_INVALID or UNSUPPORTED); sha512 with a
// sha256-length hex. Endpoints: blob GET/HEAD/DELETE, final upload PUT
// `?digest=`, single POST `?digest=`, manifest GET/DELETE by digest, manifest
// PUT by digest. Mismatches: final PUT of a monolithic upload, of a chunked
// upload, of a streamed upload, single POST, manifest PUT whose URL digest is
// not the hash of the body. Also: final PUT without any `digest` parameter.

import { test, describe, before } from 'node:test';
import {
  assert,
  MT,
  request,
  assertStatus,
  assertError,
  repoName,
  randomBytes,
  sha256,
  sha512,
  toBytes,
  startUpload,
  patchChunk,
  finishUpload,
  pushBlob,
  makeImage,
  resolveLocation,
  assertHeader,
  withQuery,
  getUploadStatus,
  putManifest,
} from './lib.mjs';

const hex = (n, c = 'a') => c.repeat(n);
const malformed = {
  'non-hex sha256:xyz': 'sha256:xyz',
  'sha256 with 63 hex chars': 'sha256:' + hex(63),
  'sha256 with 65 hex chars': 'sha256:' + hex(65),
  'upper-case hex': 'sha256:' + hex(64, 'A'),
  'no algorithm': ':' + hex(64),
  'sha512 with 64 hex chars': 'sha512:' + hex(64),
};
const unsupported = { 'md5 algorithm': 'md5:' + hex(32), 'unknown algorithm': 'foo:' + hex(64) };
const UNSUPPORTED_OK = ['DIGEST_INVALID', 'UNSUPPORTED'];

describe('malformed digests on blob endpoints -> 400 DIGEST_INVALID', () => {
  const repo = repoName('bad-digest');
  before(async () => {
    await pushBlob(repo, randomBytes(8)); // the repository exists
  });

  for (const [why, d] of Object.entries({ ...malformed, ...unsupported })) {
    const codes = Object.values(unsupported).includes(d) ? UNSUPPORTED_OK : ['DIGEST_INVALID'];
    test(`${why} (${d.length > 30 ? d.slice(0, 24) + '…' : d}): GET/HEAD/DELETE blob`, async () => {
      for (const method of ['GET', 'HEAD', 'DELETE']) {
        assertError(await request(method, `/v2/${repo}/blobs/${d}`), 400, codes, `${method} blob`);
      }
    });

    test(`${why}: final PUT ?digest= -> 400, nothing stored`, async () => {
      const data = randomBytes(50);
      const session = await startUpload(repo);
      const res = await finishUpload(session.location, d, data);
      assertError(res, 400, codes);
      assertStatus(await request('HEAD', `/v2/${repo}/blobs/${sha256(data)}`), 404, 'blob stored under its real digest');
    });

    test(`${why}: single POST ?digest= -> 400, nothing stored`, async () => {
      const data = randomBytes(50);
      const res = await request('POST', withQuery(`/v2/${repo}/blobs/uploads/`, { digest: d }), {
        headers: { 'content-type': MT.octet },
        body: data,
      });
      assertError(res, 400, codes);
      assertStatus(await request('HEAD', `/v2/${repo}/blobs/${sha256(data)}`), 404, 'blob stored under its real digest');
    });
  }

  test('final PUT without a digest parameter -> 400 DIGEST_INVALID', async () => {
    const data = randomBytes(50);
    const session = await startUpload(repo);
    const res = await request('PUT', session.location, { headers: { 'content-type': MT.octet }, body: data });
    assertError(res, 400, 'DIGEST_INVALID');
    assertStatus(await request('HEAD', `/v2/${repo}/blobs/${sha256(data)}`), 404);
  });
});

describe('malformed digests on manifest endpoints -> 400', () => {
  const repo = repoName('bad-digest-manifest');
  before(async () => {
    const m = await makeImage(repo);
    const res = await putManifest(repo, 'latest', m);
    assertStatus(res, 201);
  });

  // `sha256:xyz` is neither a valid tag (':' is not allowed) nor a valid digest.
  for (const [why, d] of Object.entries(malformed)) {
    if (d.startsWith(':')) continue; // would be parsed as a path oddity, not a reference
    test(`${why}: GET/DELETE manifest by digest -> 400 DIGEST_INVALID`, async () => {
      for (const method of ['GET', 'DELETE']) {
        assertError(await request(method, `/v2/${repo}/manifests/${d}`), 400, 'DIGEST_INVALID', `${method} manifest`);
      }
    });
  }

  test('PUT manifest by malformed digest -> 400 (DIGEST_INVALID), nothing stored', async () => {
    const m = await makeImage(repo);
    const res = await putManifest(repo, 'sha256:xyz', m);
    assertError(res, 400, ['DIGEST_INVALID', 'MANIFEST_INVALID', 'TAG_INVALID']);
    assertError(await request('GET', `/v2/${repo}/manifests/${res.manifestDigest}`), 404, 'MANIFEST_UNKNOWN');
  });
});

describe('digest mismatch -> 400 DIGEST_INVALID and the content is not readable', () => {
  async function assertNotStored(repo, data, claimed) {
    for (const d of [claimed, sha256(data)]) {
      assertError(await request('GET', `/v2/${repo}/blobs/${d}`), 404, 'BLOB_UNKNOWN', `blob ${d} after mismatch`);
    }
  }

  test('monolithic POST+PUT with the digest of other content', async () => {
    const repo = repoName('mismatch-mono');
    const data = randomBytes(300);
    const claimed = sha256(randomBytes(300));
    const session = await startUpload(repo);
    assertError(await finishUpload(session.location, claimed, data), 400, 'DIGEST_INVALID');
    await assertNotStored(repo, data, claimed);
  });

  test('monolithic upload claiming a sha512 digest of other content', async () => {
    const repo = repoName('mismatch-512');
    const data = randomBytes(300);
    const claimed = sha512(randomBytes(300));
    const session = await startUpload(repo);
    assertError(await finishUpload(session.location, claimed, data), 400, 'DIGEST_INVALID');
    await assertNotStored(repo, data, claimed);
  });

  test('chunked upload whose final PUT names the wrong digest', async () => {
    const repo = repoName('mismatch-chunked');
    const data = randomBytes(2000);
    const claimed = sha256(Buffer.concat([data, Buffer.from('!')]));
    const session = await startUpload(repo);
    const half = Math.max(1000, session.minChunk);
    const first = data.subarray(0, Math.min(half, data.length));
    const patch = await patchChunk(session.location, first, 0);
    assertStatus(patch, 202);
    const loc = resolveLocation(assertHeader(patch, 'location'), patch.url);
    const rest = data.subarray(first.length);
    assertError(await finishUpload(loc, claimed, rest, rest.length ? first.length : undefined), 400, 'DIGEST_INVALID');
    await assertNotStored(repo, data, claimed);
  });

  test('streamed upload whose final PUT names the wrong digest', async () => {
    const repo = repoName('mismatch-stream');
    const data = randomBytes(700);
    const claimed = sha256(data.subarray(1));
    const session = await startUpload(repo);
    const patch = await patchChunk(session.location, data, 0, { contentRange: false });
    assertStatus(patch, 202);
    const loc = resolveLocation(assertHeader(patch, 'location'), patch.url);
    assertError(await finishUpload(loc, claimed), 400, 'DIGEST_INVALID');
    await assertNotStored(repo, data, claimed);
  });

  test('single POST ?digest= with the digest of other content', async () => {
    const repo = repoName('mismatch-post');
    await pushBlob(repo, randomBytes(4));
    const data = randomBytes(100);
    const claimed = sha256(randomBytes(100));
    const res = await request('POST', withQuery(`/v2/${repo}/blobs/uploads/`, { digest: claimed }), {
      headers: { 'content-type': MT.octet },
      body: data,
    });
    assertError(res, 400, 'DIGEST_INVALID');
    await assertNotStored(repo, data, claimed);
  });

  test('manifest PUT by a digest that is not the hash of the body', async () => {
    const repo = repoName('mismatch-manifest');
    const m = await makeImage(repo);
    const bytes = toBytes(m);
    const claimed = sha256(Buffer.concat([bytes, Buffer.from(' ')]));
    const res = await putManifest(repo, claimed, bytes, MT.ociManifest);
    assertError(res, 400, 'DIGEST_INVALID');
    assertError(await request('GET', `/v2/${repo}/manifests/${claimed}`), 404, 'MANIFEST_UNKNOWN');
    assertError(await request('GET', `/v2/${repo}/manifests/${sha256(bytes)}`), 404, 'MANIFEST_UNKNOWN');
  });

  test('after a mismatched final PUT the session is gone or still at its old offset', async () => {
    const repo = repoName('mismatch-session');
    const data = randomBytes(100);
    const session = await startUpload(repo);
    const patch = await patchChunk(session.location, data, 0, { contentRange: false });
    assertStatus(patch, 202);
    const loc = resolveLocation(assertHeader(patch, 'location'), patch.url);
    assertError(await finishUpload(loc, sha256(randomBytes(5))), 400, 'DIGEST_INVALID');
    const status = await getUploadStatus(loc);
    if (status.status === 204) assert.equal(status.headers.get('range'), `0-${data.length - 1}`);
    else assertError(status, 404, 'BLOB_UPLOAD_UNKNOWN');
  });
});
