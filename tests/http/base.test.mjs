// Base API: the /v2/ version check and routing of unknown paths.
//
// Why: `GET /v2/` is the first call every client makes (docker, containerd,
// crane, oras) to decide that the host speaks the distribution API; a wrong
// status or missing header breaks everything else. Unknown routes must be a
// plain 404, never a 2xx/5xx or a redirect into some other handler.
//
// Bad inputs tried: paths outside /v2/, unknown sub-resources of a valid
// repository, an unknown API version prefix (/v3/).

import { test, describe } from 'node:test';
import { assert, request, assertStatus, assertHeader, repoName, pushBlob, randomBytes } from './lib.mjs';

describe('/v2/ version check', () => {
  test('GET /v2/ -> 200 with Docker-Distribution-API-Version: registry/2.0', async () => {
    const res = await request('GET', '/v2/');
    assertStatus(res, 200);
    assertHeader(res, 'docker-distribution-api-version', 'registry/2.0');
  });

  test('HEAD /v2/ -> 200, empty body', async () => {
    const res = await request('HEAD', '/v2/');
    assertStatus(res, 200);
    assert.equal(res.body.length, 0);
  });
});

describe('unknown routes -> 404', () => {
  // A repository that exists, so a 404 can only come from routing.
  const repo = repoName('routes');
  let ready;
  const setup = () => (ready ??= pushBlob(repo, randomBytes(16)));

  for (const path of ['/nope', '/v3/', '/v2x/', '/v2/_nothing_here_/', '/v2/_catalog/extra/segment']) {
    test(`GET ${path} -> 404`, async () => {
      const res = await request('GET', path, { redirect: 'manual' });
      assertStatus(res, 404);
    });
  }

  for (const sub of ['nonsense', 'blobs', 'manifests', 'tags', 'tags/other']) {
    test(`GET /v2/<existing repo>/${sub} -> 404`, async () => {
      await setup();
      const res = await request('GET', `/v2/${repo}/${sub}`, { redirect: 'manual' });
      assertStatus(res, 404);
    });
  }

  test('POST /v2/<repo>/nonsense -> 404', async () => {
    await setup();
    const res = await request('POST', `/v2/${repo}/nonsense`, { redirect: 'manual', body: 'x' });
    assertStatus(res, 404);
  });
});
