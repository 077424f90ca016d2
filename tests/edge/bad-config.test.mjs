// A Worker whose configuration is wrong refuses to serve rather than serve
// with a guess: every request (the token endpoint and pulls included) gets a
// 500 in the registry's error format whose message names the var at fault,
// and the Worker logs it. An auth configuration that cannot be read must
// never leave the registry open.
//
// scripts/test-edge.sh starts the test Worker once per broken var and runs
// this file with PIER_EDGE_BAD_VAR naming it (PIER_AUTH with an unknown key,
// PIER_GC with a misspelt one).
//
// Env: PIER_URL (the Worker), PIER_EDGE_BAD_VAR (the var that is wrong).
import { test } from 'node:test';
import { assert, assertError, randomBytes, request, sha256 } from '../http/lib.mjs';

const BAD_VAR = process.env.PIER_EDGE_BAD_VAR;
if (!BAD_VAR) throw new Error('set PIER_EDGE_BAD_VAR to the var the Worker was started with wrong');

test(`every request answers 500 naming ${BAD_VAR}`, async () => {
  const data = randomBytes(32);
  const attempts = [
    ['GET', '/v2/'],
    ['GET', '/token?service=pier&scope=repository:public/app:pull'],
    ['GET', '/v2/public/app/manifests/latest'],
    ['POST', `/v2/public/app/blobs/uploads/?digest=${sha256(data)}`, data],
  ];
  for (const [method, path, body] of attempts) {
    const res = await request(method, path, { body });
    assertError(res, 500, ['INTERNAL_ERROR'], `${method} ${path}`);
    assert.match(res.json().errors[0].message, new RegExp(`\\b${BAD_VAR}\\b`), `${method} ${path}`);
  }
});
