// pier's operator endpoint beside the distribution API, on a registry without
// auth: `GET /_pier/gc/report` answers the last garbage collection's report,
// or 404 GC_REPORT_UNKNOWN while no collection has finished; other methods
// and unknown paths under /_pier/ get the usual errors, never a 500.
//
// Why: it is the only way to see what the edge Worker's cron collections did,
// and a monitoring probe must be able to tell "none yet" from a failure.
// (With auth on, only admins read it: tests/auth/admin.test.mjs.)

import { test } from 'node:test';
import { assert, request, assertStatus, assertError } from './lib.mjs';

const PATH = '/_pier/gc/report';

test('GET /_pier/gc/report: the last report, or 404 GC_REPORT_UNKNOWN before the first collection', async () => {
  const res = await request('GET', PATH);
  if (res.status === 404) {
    assertError(res, 404, ['GC_REPORT_UNKNOWN']);
    return;
  }
  assertStatus(res, 200);
  assert.equal(res.headers.get('content-type'), 'application/json');
  const report = res.json();
  assert.equal(typeof report.run, 'string');
  assert.equal(typeof report.dry_run, 'boolean');
  assert.ok(report.steps >= 1);
});

test('HEAD answers like GET, without a body', async () => {
  const [get, head] = [await request('GET', PATH), await request('HEAD', PATH)];
  assertStatus(head, get.status);
  assert.equal(head.body.length, 0);
});

test('other methods: 405 UNSUPPORTED; unknown /_pier/ paths: 404', async () => {
  for (const method of ['POST', 'PUT', 'DELETE']) {
    assertError(await request(method, PATH, { body: Buffer.from('x') }), 405, ['UNSUPPORTED'], method);
  }
  assertStatus(await request('GET', '/_pier/gc/other'), 404);
  assertStatus(await request('GET', '/_pier/'), 404);
});
