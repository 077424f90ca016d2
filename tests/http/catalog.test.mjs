// Repository catalog: GET /v2/_catalog with `n`, `last` and `Link`.
//
// Why: `_catalog` is not part of the OCI spec but every Docker-compatible
// registry serves it and mirroring tools (skopeo sync, regsync, crane catalog)
// page through it with `n`/`last` and the `Link: <...>; rel="next"` header.
// The catalog is shared by all tests and grows across runs, so the test only
// looks at a window of three sibling repositories under a random prefix: with
// `last=<prefix>/cat` the next entries in lexical order are exactly ours.
//
// Bad inputs: none (pagination edge: `n=0`, `last` that names no repository).

import { test, describe, before } from 'node:test';
import { assert, MT, request, assertStatus, repoName, mediaTypeOf, pushManifest, makeImage, nextLink, withQuery } from './lib.mjs';

describe('_catalog', () => {
  const prefix = repoName('catalog');
  const names = [`${prefix}/cat-a`, `${prefix}/cat-b`, `${prefix}/cat-c`];
  before(async () => {
    for (const n of names) await pushManifest(n, 'latest', await makeImage(n), MT.ociManifest);
  });

  test('GET /v2/_catalog -> 200 JSON {"repositories": [...]}', async () => {
    const res = await request('GET', '/v2/_catalog?n=5');
    assertStatus(res, 200);
    assert.equal(mediaTypeOf(res), 'application/json');
    const body = res.json();
    assert.ok(Array.isArray(body.repositories));
    assert.ok(body.repositories.length <= 5);
    const sorted = [...body.repositories].sort();
    assert.deepEqual(body.repositories, sorted, 'catalog must be in lexical order');
  });

  test('?n=3&last=<before ours> -> exactly our three repositories, in order', async () => {
    const res = await request('GET', withQuery('/v2/_catalog', { n: 3, last: `${prefix}/cat` }));
    assertStatus(res, 200);
    assert.deepEqual(res.json().repositories, names);
  });

  test('?n=1&last=<a> -> [<b>] with Link rel="next"; following it -> [<c>]', async () => {
    const res = await request('GET', withQuery('/v2/_catalog', { n: 1, last: names[0] }));
    assertStatus(res, 200);
    assert.deepEqual(res.json().repositories, [names[1]]);
    const next = nextLink(res);
    assert.ok(next, `expected Link: <...>; rel="next" in ${res.describe()}`);
    const res2 = await request('GET', next);
    assertStatus(res2, 200);
    assert.deepEqual(res2.json().repositories, [names[2]]);
  });

  test('?n=0 -> empty list', async () => {
    const res = await request('GET', '/v2/_catalog?n=0');
    assertStatus(res, 200);
    assert.deepEqual(res.json().repositories, []);
  });
});
