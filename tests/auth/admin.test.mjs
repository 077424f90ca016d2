// The operator endpoint `GET /_pier/gc/report` (the last garbage collection's
// report) under auth: only admins (`admins` in the [auth] table) may read it,
// with Basic credentials or with any token of theirs; everyone else is
// refused as on the registry's own endpoints (401 with a Bearer challenge
// without credentials, 403 DENIED for known callers).
//
// Why: the report names repositories and manifests across every namespace,
// so it must not leak to callers the policy keeps out of them; on the edge
// Worker it is the only window on what the cron collections did.
//
// Env: PIER_GC_REPORT=present when the deployment has finished a collection
// (tests/auth/run.sh makes sure it has); without it a 404 GC_REPORT_UNKNOWN
// is accepted too.

import { test } from 'node:test';
import { assert, CREDENTIALS, ROLES, request, assertStatus, assertRefused, basicHeader, fetchToken } from './lib.mjs';

const PATH = '/_pier/gc/report';
const REPORT_EXPECTED = process.env.PIER_GC_REPORT === 'present';

function assertReport(res, what) {
  if (!REPORT_EXPECTED && res.status === 404) {
    assert.equal(res.json().errors[0].code, 'GC_REPORT_UNKNOWN', what);
    return;
  }
  assertStatus(res, 200, what);
  assert.equal(res.headers.get('content-type'), 'application/json', what);
  assert.equal(res.headers.get('cache-control'), 'no-store', what);
  const report = res.json();
  assert.equal(typeof report.run, 'string', what);
  assert.ok(report.finished_ms >= report.started_ms && report.steps >= 1, `${what}: ${JSON.stringify(report)}`);
  for (const count of ['blobs_examined', 'blobs_deleted', 'manifests_deleted', 'uploads_expired']) {
    assert.ok(Number.isInteger(report[count]), `${what}: ${count}`);
  }
}

test('the admin reads the GC report with Basic credentials and with a token', async () => {
  assertReport(await request('GET', PATH, { headers: { authorization: basicHeader('admin') } }), 'Basic');
  const token = await fetchToken('admin');
  assertReport(await request('GET', PATH, { headers: { authorization: `Bearer ${token}` } }), 'token');
});

test('nobody else reads it, whatever they may do in the namespaces', async () => {
  for (const role of ROLES.filter((r) => r !== 'admin')) {
    const basic = role === 'anonymous' ? {} : { authorization: basicHeader(role) };
    const res = await request('GET', PATH, { headers: basic });
    assertRefused(res, role, `${role} with Basic`);
    if (role === 'anonymous') assert.doesNotMatch(res.headers.get('www-authenticate'), /scope=/, 'no scope to ask for');
    const token = await fetchToken(role);
    assertRefused(await request('GET', PATH, { headers: { authorization: `Bearer ${token}` } }), role, `${role} with a token`);
  }
});

test('wrong credentials get 401, not the report', async () => {
  const wrong = 'Basic ' + Buffer.from(`${CREDENTIALS.admin.username}:wrong`).toString('base64');
  assertStatus(await request('GET', PATH, { headers: { authorization: wrong } }), 401);
});
