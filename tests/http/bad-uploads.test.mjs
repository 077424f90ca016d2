// Broken chunked uploads and unknown upload sessions.
//
// Why: chunks MUST arrive in order (each one starting at the previous
// end-of-range + 1); a registry that silently accepts a gap or an overlap
// stores corrupt content or loses bytes, and a resuming client can only
// recover if a rejected chunk leaves the session exactly where it was (the
// client then asks for the offset with GET and continues). Upload session ids
// are capabilities: unknown ids, ids from another repository and ids of
// finished sessions must all be 404 BLOB_UPLOAD_UNKNOWN.
//
// Bad inputs tried: chunk starting after the current offset (gap); chunk
// overlapping already-uploaded bytes; re-sending the first chunk; first chunk
// not starting at 0; final PUT whose Content-Range is out of order;
// Content-Range whose length disagrees with the body; malformed Content-Range
// (`bytes 0-9/10`, `abc`); Content-Range without Content-Length (body sent
// with Transfer-Encoding: chunked); random upload ids for GET/PATCH/PUT/DELETE;
// a session id used under a different repository name; a finished or
// cancelled session's POST Location and bare id; a POST's id with one digit
// changed (its time, its random part, its repository check); an old Location of
// the session and `state` hints that are garbage, negative or past any
// number (pier's Location names the session's newest state); two chunks
// racing from the same offset. After a session's first chunk (which pier
// keeps in the object the blob may become, so that a final PUT adding
// nothing stores it without a copy): two first chunks racing from offset 0,
// a final PUT with the loser's digest, a wrong digest, the first chunk's
// digest with extra bytes, another algorithm's digest, a second chunk first,
// and final PUTs racing each other or a cancel.

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
  resolveLocation,
  streamBody,
} from './lib.mjs';

const RANGE_CODES = ['BLOB_UPLOAD_INVALID', 'RANGE_INVALID'];

// Assert a 416, with an OCI error body if the response has one.
function assert416(res, msg) {
  assertStatus(res, 416, msg);
  if (res.body.length && (res.headers.get('content-type') || '').includes('json')) assertError(res, 416, RANGE_CODES, msg);
}

// Start a session and upload one chunk; returns { data, chunk, loc, repo }.
async function sessionWithOneChunk(label) {
  const repo = repoName(label);
  const session = await startUpload(repo);
  const chunk = chunkSizeFor(session, 100);
  const data = randomBytes(chunk * 3);
  const res = await patchChunk(session.location, data.subarray(0, chunk), 0);
  assertStatus(res, 202);
  assertHeader(res, 'range', `0-${chunk - 1}`);
  return { repo, data, chunk, loc: resolveLocation(assertHeader(res, 'location'), res.url) };
}

// The session still reports `0-<end>` and can be completed correctly.
async function assertOffsetThenComplete({ repo, data, chunk, loc }, end) {
  const status = await getUploadStatus(loc);
  assertStatus(status, 204, 'upload status after rejected chunk');
  assertHeader(status, 'range', `0-${end}`);
  let cur = resolveLocation(assertHeader(status, 'location'), status.url);
  let offset = end + 1;
  while (offset < data.length) {
    const part = data.subarray(offset, offset + chunk);
    const res = await patchChunk(cur, part, offset);
    assertStatus(res, 202, `continuing at ${offset}`);
    cur = resolveLocation(assertHeader(res, 'location'), res.url);
    offset += part.length;
  }
  const digest = sha256(data);
  assertStatus(await finishUpload(cur, digest), 201, 'completing after a rejected chunk');
  const get = await request('GET', `/v2/${repo}/blobs/${digest}`);
  assertStatus(get, 200);
  assert.ok(get.body.equals(data), 'content corrupted by the rejected chunk');
}

describe('out-of-order chunks -> 416, offset unchanged', () => {
  test('gap: Content-Range starts after the current offset', async () => {
    const s = await sessionWithOneChunk('ooo-gap');
    const start = s.chunk + 10;
    assert416(await patchChunk(s.loc, s.data.subarray(start, start + s.chunk), start), 'gap');
    await assertOffsetThenComplete(s, s.chunk - 1);
  });

  test('overlap: Content-Range starts inside already uploaded bytes', async () => {
    const s = await sessionWithOneChunk('ooo-overlap');
    const start = Math.floor(s.chunk / 2);
    assert416(await patchChunk(s.loc, s.data.subarray(start, start + s.chunk), start), 'overlap');
    await assertOffsetThenComplete(s, s.chunk - 1);
  });

  test('re-sending the first chunk (0-<n>) again', async () => {
    const s = await sessionWithOneChunk('ooo-resend');
    assert416(await patchChunk(s.loc, s.data.subarray(0, s.chunk), 0), 'resend');
    await assertOffsetThenComplete(s, s.chunk - 1);
  });

  test('first chunk not starting at 0', async () => {
    const repo = repoName('ooo-first');
    const session = await startUpload(repo);
    const data = randomBytes(chunkSizeFor(session, 100));
    assert416(await patchChunk(session.location, data.subarray(5), 5), 'first chunk at 5');
    const status = await getUploadStatus(session.location);
    assertStatus(status, 204);
    const range = status.headers.get('range');
    if (range !== null) assert.equal(range, '0-0');
  });

  test('final PUT carrying an out-of-order last chunk', async () => {
    const s = await sessionWithOneChunk('ooo-put');
    const start = s.chunk * 2; // skips the middle chunk
    const res = await finishUpload(s.loc, sha256(s.data), s.data.subarray(start), start);
    assert416(res, 'out-of-order final PUT');
    await assertOffsetThenComplete(s, s.chunk - 1);
  });
});

describe('malformed chunk headers', () => {
  test('Content-Range length disagrees with the body length -> 400 or 416', async () => {
    const s = await sessionWithOneChunk('cr-len');
    const res = await request('PATCH', s.loc, {
      headers: { 'content-type': MT.octet, 'content-range': `${s.chunk}-${s.chunk + 99}` },
      body: s.data.subarray(s.chunk, s.chunk + 50),
    });
    assertError(res, [400, 416], ['BLOB_UPLOAD_INVALID', 'SIZE_INVALID', 'RANGE_INVALID']);
    await assertOffsetThenComplete(s, s.chunk - 1);
  });

  for (const cr of ['bytes 0-9/10', 'abc', '5', '-1-3']) {
    test(`malformed Content-Range "${cr}" -> 400 or 416`, async () => {
      const repo = repoName('cr-bad');
      const session = await startUpload(repo);
      const res = await request('PATCH', session.location, {
        headers: { 'content-type': MT.octet, 'content-range': cr },
        body: randomBytes(10),
      });
      assertStatus(res, [400, 416]);
      if (res.body.length) assertError(res, [400, 416], ['BLOB_UPLOAD_INVALID', 'SIZE_INVALID', 'RANGE_INVALID']);
    });
  }

  test('PATCH with Content-Range but without Content-Length (chunked transfer) -> 400 or 411', async () => {
    const repo = repoName('cr-no-cl');
    const session = await startUpload(repo);
    const res = await request('PATCH', session.location, {
      headers: { 'content-type': MT.octet, 'content-range': '0-9' },
      body: streamBody(randomBytes(4), randomBytes(6)),
    });
    assertStatus(res, [400, 411]);
    const status = await getUploadStatus(session.location);
    assertStatus(status, 204, 'session should survive a rejected chunk');
    const range = status.headers.get('range');
    if (range !== null) assert.equal(range, '0-0', 'nothing may have been appended');
  });
});

describe('unknown upload sessions -> 404 BLOB_UPLOAD_UNKNOWN', () => {
  const fakeId = () => `${randomBytes(4).toString('hex')}-0000-4000-8000-${randomBytes(6).toString('hex')}`;

  test('GET/PATCH/PUT/DELETE of a random upload id in an existing repository', async () => {
    const repo = repoName('no-session');
    await pushBlob(repo, randomBytes(4));
    const loc = `/v2/${repo}/blobs/uploads/${fakeId()}`;
    const data = randomBytes(10);
    assertError(await request('GET', loc), 404, 'BLOB_UPLOAD_UNKNOWN', 'GET');
    assertError(await patchChunk(loc, data, 0), 404, 'BLOB_UPLOAD_UNKNOWN', 'PATCH');
    assertError(await finishUpload(loc, sha256(data), data), 404, 'BLOB_UPLOAD_UNKNOWN', 'PUT');
    assertError(await request('DELETE', loc), 404, 'BLOB_UPLOAD_UNKNOWN', 'DELETE');
    assertStatus(await request('HEAD', `/v2/${repo}/blobs/${sha256(data)}`), 404);
  });

  test('a session id used under a different repository name', async () => {
    const a = repoName('session-a');
    const b = repoName('session-b');
    await pushBlob(b, randomBytes(4));
    const session = await startUpload(a);
    const u = new URL(session.location);
    const idx = u.pathname.indexOf('/blobs/uploads/');
    assert.ok(idx > 0, `unexpected upload location ${session.location}`);
    const v2 = u.pathname.indexOf('/v2/');
    u.pathname = u.pathname.slice(0, v2) + `/v2/${b}` + u.pathname.slice(idx);
    const data = randomBytes(10);
    assertError(await request('GET', u.toString()), 404, 'BLOB_UPLOAD_UNKNOWN', 'GET via other repo');
    assertError(await finishUpload(u.toString(), sha256(data), data), 404, 'BLOB_UPLOAD_UNKNOWN', 'PUT via other repo');
    assertStatus(await request('HEAD', `/v2/${b}/blobs/${sha256(data)}`), 404);
    assertStatus(await request('HEAD', `/v2/${a}/blobs/${sha256(data)}`), 404);
  });
});

describe('ended sessions and ids the registry did not issue -> 404 BLOB_UPLOAD_UNKNOWN', () => {
  // pier's POST saves nothing (the id says when and for which repository it
  // was issued); these are the ids that must not be taken for such a session.
  const refusedEverywhere = async (loc, what) => {
    const data = randomBytes(10);
    assertError(await request('GET', loc), 404, 'BLOB_UPLOAD_UNKNOWN', `GET ${what}`);
    assertError(await patchChunk(loc, data, 0), 404, 'BLOB_UPLOAD_UNKNOWN', `PATCH ${what}`);
    assertError(await finishUpload(loc, sha256(data), data), 404, 'BLOB_UPLOAD_UNKNOWN', `PUT ${what}`);
    assertError(await request('DELETE', loc), 404, 'BLOB_UPLOAD_UNKNOWN', `DELETE ${what}`);
    return data;
  };

  test('a finished session, by the POST\'s Location or its bare id', async () => {
    const repo = repoName('ended-put');
    const blob = randomBytes(100);
    const session = await startUpload(repo);
    assertStatus(await finishUpload(session.location, sha256(blob), blob), 201);
    for (const loc of [session.location, session.location.replace(/\?.*$/, '')]) {
      const data = await refusedEverywhere(loc, loc);
      assertStatus(await request('HEAD', `/v2/${repo}/blobs/${sha256(data)}`), 404);
    }
    const pulled = await request('GET', `/v2/${repo}/blobs/${sha256(blob)}`);
    assert.ok(pulled.body.equals(blob), 'the blob is whole');
  });

  test('a cancelled session, by the POST\'s Location', async () => {
    const repo = repoName('ended-delete');
    const session = await startUpload(repo);
    assertStatus(await request('DELETE', session.location), 204);
    const data = await refusedEverywhere(session.location, 'after DELETE');
    assertStatus(await request('HEAD', `/v2/${repo}/blobs/${sha256(data)}`), 404);
  });

  test('a POST\'s id with any of its digits changed', async () => {
    const repo = repoName('changed-id');
    const session = await startUpload(repo);
    const url = new URL(session.location);
    const id = url.pathname.split('/').pop();
    for (const at of [0, 8, Math.floor(id.length / 2), id.length - 1]) {
      const digit = id[at] === '0' ? '1' : '0';
      const changed = new URL(url);
      changed.pathname = url.pathname.replace(/[^/]+$/, id.slice(0, at) + digit + id.slice(at + 1));
      await refusedEverywhere(changed.toString(), `digit ${at} changed`);
    }
    assertStatus(await request('GET', session.location), 204, 'the POST\'s own id stays open');
  });
});

describe('upload Locations and racing chunks', () => {
  test('an old Location, or a state hint that is garbage, negative or huge, reaches the session as it stands', async () => {
    const repo = repoName('old-location');
    const data = randomBytes(3000);
    const session = await startUpload(repo);
    const first = await patchChunk(session.location, data.subarray(0, 1000), 0);
    assertStatus(first, 202);
    const latest = resolveLocation(assertHeader(first, 'location'), first.url);
    // The POST's Location, as a client that never follows Location sends it.
    assertStatus(await patchChunk(session.location, data.subarray(1000, 2000), 1000), 202);
    const bare = latest.replace(/\?.*$/, '');
    for (const hint of ['', '?state=abc', '?state=-1', '?state=99999999999999999999999', '?state=18446744073709551615', '?state=0']) {
      const status = await getUploadStatus(bare + hint);
      assertStatus(status, 204, `status with ${hint || 'no hint'}`);
      assert.equal(status.headers.get('range'), '0-1999', `offset with ${hint || 'no hint'}`);
    }
    assertStatus(await finishUpload(latest, sha256(data), data.subarray(2000), 2000), 201);
    const pulled = await request('GET', `/v2/${repo}/blobs/${sha256(data)}`);
    assertStatus(pulled, 200);
    assert.ok(pulled.body.equals(data), 'the blob is whole');
  });

  test('two chunks racing from the same offset: one is taken, the other refused, and the blob holds only the winner\'s bytes', async () => {
    const repo = repoName('racing-chunks');
    for (let round = 0; round < 5; round++) {
      const prefix = randomBytes(100);
      const session = await startUpload(repo);
      const started = await patchChunk(session.location, prefix, 0);
      assertStatus(started, 202);
      const location = resolveLocation(assertHeader(started, 'location'), started.url);
      const bodies = [randomBytes(1000), randomBytes(1000)];
      const answers = await Promise.all(bodies.map((body) => patchChunk(location, body, 100)));
      const won = answers.map((answer) => answer.status === 202);
      assert.equal(won.filter(Boolean).length, 1, `exactly one chunk is taken: ${answers.map((a) => a.status)}`);
      const loser = answers[won.indexOf(false)];
      assert.ok([409, 416].includes(loser.status), `the other is refused: ${loser.describe()}`);
      const winner = answers[won.indexOf(true)];
      const blob = Buffer.concat([prefix, bodies[won.indexOf(true)]]);
      const next = resolveLocation(assertHeader(winner, 'location'), winner.url);
      assert.equal((await getUploadStatus(next)).headers.get('range'), '0-1099');
      assertStatus(await finishUpload(next, sha256(blob)), 201, `round ${round}`);
      const pulled = await request('GET', `/v2/${repo}/blobs/${sha256(blob)}`);
      assert.ok(pulled.body.equals(blob), `round ${round}: the winner's bytes, whole`);
    }
  });
});

describe('after a session\'s first chunk (kept in the object the blob may become)', () => {
  async function firstChunk(label, data) {
    const repo = repoName(label);
    const session = await startUpload(repo);
    const patched = await patchChunk(session.location, data, 0);
    assertStatus(patched, 202, 'the first chunk');
    return { repo, location: resolveLocation(assertHeader(patched, 'location'), patched.url) };
  }

  async function assertBlobIs(repo, digest, data, msg) {
    const pulled = await request('GET', `/v2/${repo}/blobs/${digest}`);
    assertStatus(pulled, 200, msg);
    assert.ok(pulled.body.equals(data), `${msg}: the blob's bytes`);
  }

  async function assertNoBlob(repo, digest, msg) {
    assertError(await request('GET', `/v2/${repo}/blobs/${digest}`), 404, ['BLOB_UNKNOWN'], msg);
  }

  test('two first chunks racing from offset 0: the loser\'s digest is refused, the winner\'s stores its bytes', async () => {
    for (let round = 0; round < 6; round++) {
      const repo = repoName('racing-first');
      const session = await startUpload(repo);
      const bodies = [randomBytes(1000), randomBytes(1000)];
      const answers = await Promise.all(bodies.map((body) => patchChunk(session.location, body, 0)));
      const won = answers.map((answer) => answer.status === 202);
      assert.equal(won.filter(Boolean).length, 1, `round ${round}: exactly one chunk is taken: ${answers.map((a) => a.status)}`);
      assert.ok([409, 416].includes(answers[won.indexOf(false)].status), `round ${round}: the other is refused`);
      const winner = answers[won.indexOf(true)];
      const next = resolveLocation(assertHeader(winner, 'location'), winner.url);
      const [winning, losing] = [bodies[won.indexOf(true)], bodies[won.indexOf(false)]];
      if (round % 2 === 0) {
        assertError(await finishUpload(next, sha256(losing)), 400, ['DIGEST_INVALID'], `round ${round}: the loser's digest`);
        await assertNoBlob(repo, sha256(losing), `round ${round}: the loser's bytes`);
        await assertNoBlob(repo, sha256(winning), `round ${round}: nothing under the winner's digest either`);
      } else {
        assertStatus(await finishUpload(next, sha256(winning)), 201, `round ${round}: the winner's digest`);
        await assertBlobIs(repo, sha256(winning), winning, `round ${round}`);
      }
    }
  });

  test('a final PUT with a wrong digest, extra bytes, another algorithm, or after a second chunk', async () => {
    const first = randomBytes(700);
    const more = randomBytes(300);
    const both = Buffer.concat([first, more]);
    const wrong = sha256(Buffer.from('not these bytes'));
    // [what, the PUT's digest, its body, a second PATCH first, what is stored or null]
    const cases = [
      ['wrong digest', wrong, Buffer.alloc(0), false, null],
      ['the first chunk\'s digest, extra bytes', sha256(first), more, false, null],
      ['the digest of both, the rest in the PUT', sha256(both), more, false, both],
      ['sha512 of the chunk', sha512(first), Buffer.alloc(0), false, first],
      ['the digest of both after a second PATCH', sha256(both), Buffer.alloc(0), true, both],
      ['the first chunk\'s digest after a second PATCH', sha256(first), Buffer.alloc(0), true, null],
    ];
    for (const [what, digest, body, secondPatch, stored] of cases) {
      const { repo, location } = await firstChunk('first-then', first);
      let next = location;
      if (secondPatch) {
        const patched = await patchChunk(location, more, first.length);
        assertStatus(patched, 202, `${what}: the second chunk`);
        next = resolveLocation(assertHeader(patched, 'location'), patched.url);
      }
      const put = await finishUpload(next, digest, body, body.length ? first.length : undefined);
      if (stored) {
        assertStatus(put, 201, what);
        await assertBlobIs(repo, digest, stored, what);
      } else {
        assertError(put, 400, ['DIGEST_INVALID'], what);
        await assertNoBlob(repo, digest, what);
        assertError(await getUploadStatus(next), 404, ['BLOB_UPLOAD_UNKNOWN'], `${what}: the session ended`);
      }
    }
  });

  test('final PUTs racing each other, a wrong digest, or a cancel: an answered PUT\'s blob stays whole', async () => {
    for (const racer of ['put', 'wrong', 'cancel']) {
      for (let round = 0; round < 4; round++) {
        const what = `${racer}, round ${round}`;
        const data = randomBytes(2000);
        const digest = sha256(data);
        const { repo, location } = await firstChunk('racing-put', data);
        const racing = {
          put: () => finishUpload(location, digest),
          wrong: () => finishUpload(location, sha256(Buffer.from('wrong'))),
          cancel: () => request('DELETE', location),
        }[racer];
        const [put, other] = await Promise.all([finishUpload(location, digest), racing()]);
        assert.ok([201, 404, 409].includes(put.status), `${what}: ${put.describe()}`);
        assert.ok([201, 204, 400, 404, 409].includes(other.status), `${what}: ${other.describe()}`);
        if (put.status === 201 || (racer === 'put' && other.status === 201)) {
          await assertBlobIs(repo, digest, data, what);
        }
      }
    }
  });
});
