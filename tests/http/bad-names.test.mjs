// Invalid repository names -> 400 NAME_INVALID on every endpoint, and unknown
// (but valid) repository names -> 404 NAME_UNKNOWN.
//
// Why: <name> must match
//   [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
// and pier also caps it at 255 characters. A registry that accepts other
// names ends up with storage keys that alias (`A` vs `a`), escape their
// prefix (`..`), or cannot be addressed by clients. Grammar violations are
// a client error (400 NAME_INVALID), not "not found": a 404 NAME_UNKNOWN would
// tell the client the name is fine but empty. After each rejected request the
// test checks that nothing became visible (e.g. under the lower-cased name).
//
// Bad inputs tried: upper-case letters; `..` inside a component; a literal
// `..` path segment (sent raw, without client-side URL normalisation); an
// empty component `a//b`; leading/trailing separators (`-x`, `x-`, `_x`,
// `.x`); three underscores; `.-` separator run; a non-ASCII letter; a name of
// 256 characters (and a 255-character name, which must be accepted).
// Endpoints: POST upload, GET/HEAD/PUT manifest, GET/HEAD blob, tags list.

import { test, describe } from 'node:test';
import {
  assert,
  MT,
  request,
  rawRequest,
  assertStatus,
  assertError,
  repoName,
  randomHex,
  randomBytes,
  sha256,
  toBytes,
  tagsList,
  startUpload,
} from './lib.mjs';

const BLOB = sha256(Buffer.from('x'));

// A manifest that would be valid if the name were; never pushed anywhere else.
function someManifest() {
  return toBytes({
    schemaVersion: 2,
    mediaType: MT.ociManifest,
    config: { mediaType: MT.ociConfig, digest: BLOB, size: 1 },
    layers: [],
    annotations: { nonce: randomHex(8) },
  });
}

// Every endpoint that takes a <name>, as [method, pathSuffix, opts].
function endpoints() {
  return [
    ['POST', '/blobs/uploads/', { headers: { 'content-length': '0' } }],
    ['GET', '/tags/list', {}],
    ['GET', '/manifests/latest', {}],
    ['HEAD', '/manifests/latest', {}],
    ['PUT', '/manifests/latest', { headers: { 'content-type': MT.ociManifest }, body: someManifest() }],
    ['GET', `/blobs/${BLOB}`, {}],
    ['HEAD', `/blobs/${BLOB}`, {}],
    ['DELETE', `/blobs/${BLOB}`, {}],
  ];
}

const id = randomHex(4);
const invalidNames = {
  'upper-case letters': `pier-test/bad-${id}/UpperCase`,
  'upper-case first component': `Pier-test/bad-${id}/x`,
  '".." inside a component': `pier-test/bad-${id}/a..b`,
  'empty component "a//b"': `pier-test/bad-${id}//b`,
  'leading "-"': `pier-test/bad-${id}/-x`,
  'trailing "-"': `pier-test/bad-${id}/x-`,
  'leading "_"': `pier-test/bad-${id}/_x`,
  'leading "."': `pier-test/bad-${id}/.x`,
  'three underscores': `pier-test/bad-${id}/a___b`,
  '".-" separator run': `pier-test/bad-${id}/a.-b`,
  'non-ASCII letter': `pier-test/bad-${id}/caf%C3%A9`,
  'over 255 characters': `pier-test/bad-${id}/` + 'n'.repeat(256 - `pier-test/bad-${id}/`.length),
};

describe('invalid repository names -> 400 NAME_INVALID', () => {
  for (const [why, name] of Object.entries(invalidNames)) {
    test(`${why}: ${name.length > 60 ? name.slice(0, 40) + '…(' + name.length + ' chars)' : name}`, async () => {
      for (const [method, suffix, opts] of endpoints()) {
        const res = await request(method, `/v2/${name}${suffix}`, { ...opts, redirect: 'manual' });
        assertError(res, 400, 'NAME_INVALID', `${method} ${suffix}`);
      }
      // Nothing became visible under the name or a normalised variant of it.
      const variants = [name.toLowerCase().replace(/\/+/g, '/'), name.toLowerCase().replace(/\.\./g, '.')];
      for (const v of variants) {
        const res = await tagsList(v);
        assert.notEqual(res.status, 200, `rejected push became visible as ${v}: ${res.describe()}`);
      }
    });
  }

  test('literal ".." path segment (sent raw) -> 400 NAME_INVALID, nothing created in the target repo', {
    skip: process.env.PIER_NORMALIZES_PATHS ? 'platform normalises dot-segments before the registry sees them' : false,
  }, async () => {
    const target = repoName('dotdot-target');
    const name = `${target.split('/').slice(0, -1).join('/')}/x/../${target.split('/').pop()}`;
    const body = someManifest();
    for (const [method, suffix, opts] of [
      ['POST', '/blobs/uploads/', { headers: { 'content-length': '0' } }],
      ['GET', '/tags/list', {}],
      ['PUT', '/manifests/latest', { headers: { 'content-type': MT.ociManifest }, body }],
    ]) {
      const res = await rawRequest(method, `/v2/${name}${suffix}`, opts);
      assertError(res, 400, 'NAME_INVALID', `${method} ${name}${suffix}`);
    }
    assertStatus(await tagsList(target), 404, 'the normalised target repository must not exist');
  });

  test('a 255-character name is valid (boundary)', async () => {
    let name = repoName('long');
    while (name.length < 255) {
      const room = 255 - name.length - 1; // characters left after a '/'
      if (room < 1) name += 'l'; // extend the last component instead
      else name += '/' + 'l'.repeat(Math.min(60, room));
    }
    assert.equal(name.length, 255);
    const session = await startUpload(name);
    assert.ok(session.location);
    const res = await request('POST', `/v2/${name}x/blobs/uploads/`, { headers: { 'content-length': '0' } });
    assertError(res, 400, 'NAME_INVALID', '256 characters');
  });
});

describe('unknown repository -> 404 NAME_UNKNOWN', () => {
  test('tags list of a valid but unknown repository -> 404 NAME_UNKNOWN', async () => {
    assertError(await tagsList(repoName('never-created')), 404, 'NAME_UNKNOWN');
  });

  test('manifest of a valid but unknown repository -> 404 (NAME_UNKNOWN or MANIFEST_UNKNOWN)', async () => {
    const res = await request('GET', `/v2/${repoName('never-created')}/manifests/latest`);
    assertError(res, 404, ['NAME_UNKNOWN', 'MANIFEST_UNKNOWN']);
  });

  test('blob of a valid but unknown repository -> 404 (NAME_UNKNOWN or BLOB_UNKNOWN)', async () => {
    const res = await request('GET', `/v2/${repoName('never-created')}/blobs/${sha256(randomBytes(8))}`);
    assertError(res, 404, ['NAME_UNKNOWN', 'BLOB_UNKNOWN']);
  });
});
