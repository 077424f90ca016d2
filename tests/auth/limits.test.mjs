// Failed logins are limited per client: after `limit` failures within the
// window (tests/auth/policy.toml: 20 in 10 s), even correct credentials get
// 429 TOOMANYREQUESTS with Retry-After, on the token endpoint and on Basic
// requests alike, until the window ends.
//
// Why: the token endpoint checks passwords, so it is where guessing
// happens; refusing before hashing makes guessing slow and cheap for us.
// The test waits the window out at the end, so files that run after it can
// log in again (run the suite with --test-concurrency=1).

import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { assert, CREDENTIALS, request, assertStatus, basicHeader } from './lib.mjs';

const LIMIT = Number(process.env.PIER_AUTH_FAILURE_LIMIT || 20);

test('failed logins beyond the limit are refused with 429 until the window ends', async () => {
  const wrong = 'Basic ' + Buffer.from(`${CREDENTIALS.sandbox.username}:wrong`).toString('base64');
  let blocked = null;
  // Failures are counted in a window that opens at a client's first failure.
  // The failures earlier tests made on purpose may have opened one that ends
  // during this burst, starting the count again: twice the limit covers that.
  for (let i = 0; i <= 2 * LIMIT && !blocked; i++) {
    const res = await request('GET', '/token?service=pier', { headers: { authorization: wrong } });
    if (res.status === 429) blocked = res;
    else assertStatus(res, 401, `failure ${i + 1}`);
  }
  assert.ok(blocked, `no 429 after ${2 * LIMIT + 1} failures`);
  assert.equal(blocked.json().errors[0].code, 'TOOMANYREQUESTS');
  const retryAfter = Number(blocked.headers.get('retry-after'));
  assert.ok(retryAfter >= 1, `Retry-After ${blocked.headers.get('retry-after')}`);

  const right = await request('GET', '/token?service=pier', { headers: { authorization: basicHeader('sandbox') } });
  assertStatus(right, 429, 'correct credentials wait too');
  const direct = await request('GET', '/v2/', { headers: { authorization: basicHeader('sandbox') } });
  assertStatus(direct, 429, 'Basic on registry requests is limited the same way');

  await sleep(retryAfter * 1000 + 500);
  const after = await request('GET', '/token?service=pier', { headers: { authorization: basicHeader('sandbox') } });
  assertStatus(after, 200, 'the window ended');
});
