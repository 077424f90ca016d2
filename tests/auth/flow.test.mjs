// The token flow as clients see it: the challenge of `/v2/`, the token
// endpoint's answers (GET with Basic or anonymous, several scopes, the
// OAuth2 POST form with refresh tokens, OIDC ID tokens as passwords), and
// what happens with tokens that are forged, foreign or missing a scope.
//
// Why: docker, podman, containerd, crane, oras and skopeo all log in by
// following the challenge of a 401 to the realm, asking for the scopes it
// names, and retrying with the token; refusals must tell them whether a new
// token could help (401) or not (403).

import { test, describe } from 'node:test';
import { createSign } from 'node:crypto';
import {
  assert, CREDENTIALS, ROLES, RUN, request, withQuery, assertStatus, basicHeader, fetchToken, Caller, pushImage,
} from './lib.mjs';

function decodeJwt(token) {
  const [header, payload, signature] = token.split('.');
  const part = (p) => JSON.parse(Buffer.from(p, 'base64url').toString());
  return { header: part(header), payload: part(payload), signature };
}

function challengeOf(res) {
  const value = res.headers.get('www-authenticate') || '';
  const params = Object.fromEntries([...value.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
  return { scheme: value.split(' ')[0], ...params };
}

describe('challenges', () => {
  test('/v2/ without credentials: 401 with a Bearer challenge whose realm issues tokens', async () => {
    const res = await request('GET', '/v2/');
    assertStatus(res, 401);
    assert.equal(res.json().errors[0].code, 'UNAUTHORIZED');
    const challenge = challengeOf(res);
    assert.equal(challenge.scheme, 'Bearer');
    assert.equal(challenge.service, 'pier');
    assert.equal(challenge.scope, undefined, 'the version check needs no scope');
    assert.equal(new URL(challenge.realm).pathname, '/token');
    const token = await request('GET', withQuery(challenge.realm, { service: challenge.service }));
    assertStatus(token, 200, 'the realm answers');
  });

  test('/v2/ with any valid credentials: 200', async () => {
    for (const role of ROLES.filter((r) => r !== 'anonymous')) {
      assertStatus(await request('GET', '/v2/', { headers: { authorization: basicHeader(role) } }), 200, role);
      const token = await fetchToken(role);
      assertStatus(await request('GET', '/v2/', { headers: { authorization: `Bearer ${token}` } }), 200, role);
    }
  });

  test('a push names pull and push; a mount also names the source', async () => {
    const res = await request('POST', '/v2/ci/app/blobs/uploads/?mount=sha256:' + 'a'.repeat(64) + '&from=prod/app');
    assert.equal(challengeOf(res).scope, 'repository:ci/app:pull,push repository:prod/app:pull');
  });
});

describe('token endpoint', () => {
  test('answers token, access_token, expires_in and issued_at', async () => {
    const res = await request('GET', withQuery('/token', { service: 'pier', scope: `repository:ci/flow-${RUN}:pull,push` }), {
      headers: { authorization: basicHeader('ci') },
    });
    assertStatus(res, 200);
    const body = res.json();
    assert.equal(body.token, body.access_token);
    assert.ok(Number.isInteger(body.expires_in) && body.expires_in > 0, JSON.stringify(body));
    assert.ok(Math.abs(Date.parse(body.issued_at) - Date.now()) < 120_000, `issued_at ${body.issued_at}`);
    const { header, payload } = decodeJwt(body.token);
    assert.ok(['ES256', 'EdDSA'].includes(header.alg), JSON.stringify(header));
    assert.ok(header.kid, 'tokens name their key');
    assert.equal(payload.aud, 'pier');
    assert.equal(payload.sub, 'ci-bot');
    assert.equal(payload.exp - payload.iat, body.expires_in);
    assert.deepEqual(payload.access, [{ type: 'repository', name: `ci/flow-${RUN}`, actions: ['pull', 'push'] }]);
  });

  test('grants of several scopes, in separate parameters or one, only what the policy allows', async () => {
    const token = await fetchToken('ci', [
      'repository:ci/a:pull,push repository:prod/a:pull,push',
      'repository:public/a:pull,push,delete',
      'registry:catalog:*',
    ]);
    assert.deepEqual(decodeJwt(token).payload.access, [
      { type: 'repository', name: 'ci/a', actions: ['pull', 'push'] },
      { type: 'repository', name: 'public/a', actions: ['pull'] },
      { type: 'registry', name: 'catalog', actions: ['*'] },
    ]);
  });

  test('anonymous tokens carry what anyone may do', async () => {
    const token = await fetchToken('anonymous', ['repository:public/a:pull,push', 'repository:sandbox/a:pull']);
    const { payload } = decodeJwt(token);
    assert.equal(payload.sub, undefined);
    assert.deepEqual(payload.access, [{ type: 'repository', name: 'public/a', actions: ['pull'] }]);
  });

  test('bad credentials: 401 with a Basic challenge', async () => {
    const wrong = [
      [CREDENTIALS.sandbox.username, 'not-the-password'],
      ['nobody', 'anything'],
      [CREDENTIALS.ci.username, 'pier_not-the-token'],
    ];
    for (const [username, password] of wrong) {
      const authorization = 'Basic ' + Buffer.from(`${username}:${password}`).toString('base64');
      const res = await request('GET', '/token?service=pier', { headers: { authorization } });
      assertStatus(res, 401, username);
      assert.equal(res.json().errors[0].code, 'UNAUTHORIZED');
      assert.match(res.headers.get('www-authenticate') || '', /^Basic realm="pier"/);
    }
  });

  test('tokens for another service are not issued', async () => {
    assertStatus(await request('GET', '/token?service=elsewhere'), 400);
  });

  test('the OAuth2 form: a password grant with offline access gives a refresh token', async () => {
    const { username, password } = CREDENTIALS.sandbox;
    const repo = `sandbox/refresh-${RUN}`;
    const form = new URLSearchParams({
      grant_type: 'password', username, password, service: 'pier', client_id: 'pier-tests', access_type: 'offline',
      scope: `repository:${repo}:pull`,
    });
    const first = await request('POST', '/token', {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form.toString(),
    });
    assertStatus(first, 200);
    const { refresh_token: refresh, access_token: access } = first.json();
    assert.ok(refresh && access);
    const refreshed = await request('POST', '/token', {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refresh, service: 'pier', scope: `repository:${repo}:pull,push` }).toString(),
    });
    assertStatus(refreshed, 200);
    assert.deepEqual(decodeJwt(refreshed.json().access_token).payload.access, [
      { type: 'repository', name: repo, actions: ['pull', 'push'] },
    ]);
    const misuse = await request('GET', '/v2/', { headers: { authorization: `Bearer ${refresh}` } });
    assertStatus(misuse, 401, 'a refresh token is no access token');
    const wrong = await request('POST', '/token', {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `grant_type=password&username=${username}&password=wrong`,
    });
    assertStatus(wrong, 401);
  });
});

describe('unusable tokens', () => {
  const repo = `sandbox/tokens-${RUN}`;
  const path = `/v2/${repo}/tags/list`;

  test('a token with an altered payload: 401 invalid_token, naming the scope to ask for', async () => {
    const token = await fetchToken('sandbox', [`repository:${repo}:pull`]);
    const [header, payload, signature] = token.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    claims.access.push({ type: 'repository', name: 'prod/app', actions: ['push'] });
    const forged = [header, Buffer.from(JSON.stringify(claims)).toString('base64url'), signature].join('.');
    const res = await request('GET', path, { headers: { authorization: `Bearer ${forged}` } });
    assertStatus(res, 401);
    const challenge = challengeOf(res);
    assert.equal(challenge.error, 'invalid_token');
    assert.equal(challenge.scope, `repository:${repo}:pull`);
  });

  test('an unsigned (alg none) token: 401 invalid_token', async () => {
    const token = await fetchToken('sandbox', [`repository:${repo}:pull`]);
    const { header, payload } = decodeJwt(token);
    const encode = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const unsigned = `${encode({ ...header, alg: 'none' })}.${encode(payload)}.`;
    const res = await request('GET', path, { headers: { authorization: `Bearer ${unsigned}` } });
    assertStatus(res, 401);
    assert.equal(challengeOf(res).error, 'invalid_token');
  });

  test('a scope the token lacks but its holder may get: 401 insufficient_scope', async () => {
    const token = await fetchToken('sandbox', [`repository:${repo}:pull`]);
    const res = await request('POST', `/v2/${repo}/blobs/uploads/`, { headers: { authorization: `Bearer ${token}` } });
    assertStatus(res, 401);
    const challenge = challengeOf(res);
    assert.equal(challenge.error, 'insufficient_scope');
    assert.equal(challenge.scope, `repository:${repo}:pull,push`);
  });

  test('a scope the policy refuses to its holder: 403 DENIED', async () => {
    const token = await fetchToken('sandbox', [`repository:${repo}:pull`, 'repository:prod/app:push']);
    const res = await request('POST', '/v2/prod/app/blobs/uploads/', { headers: { authorization: `Bearer ${token}` } });
    assertStatus(res, 403);
    assert.equal(res.json().errors[0].code, 'DENIED');
  });

  test('the token endpoint takes credentials, not tokens', async () => {
    const token = await fetchToken('sandbox');
    assertStatus(await request('GET', '/token', { headers: { authorization: `Bearer ${token}` } }), 401);
  });
});

// A CI job's ID token from the issuer make-config.sh trusts, signed with its key.
function idToken(claims) {
  const { oidc } = CREDENTIALS;
  const now = Math.floor(Date.now() / 1000);
  const encode = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = `${encode({ alg: 'ES256', typ: 'JWT', kid: oidc.private_jwk.kid })}.${encode({
    iss: oidc.issuer, aud: oidc.audience, iat: now, nbf: now, exp: now + 300, ...claims,
  })}`;
  const signer = createSign('SHA256');
  signer.update(input);
  const signature = signer.sign({ key: oidc.private_jwk, format: 'jwk', dsaEncoding: 'ieee-p1363' });
  return `${input}.${signature.toString('base64url')}`;
}

describe('OIDC ID tokens as passwords', { skip: !CREDENTIALS.oidc && 'no oidc issuer in the credentials' }, () => {
  const oidcBasic = (token) => 'Basic ' + Buffer.from(`oidc:${token}`).toString('base64');

  test('the release workflow on main logs in as the promoter and may push to prod/', async () => {
    const token = idToken({ sub: 'repo:acme/release:ref:refs/heads/main', repository: 'acme/release', ref: 'refs/heads/main' });
    const repo = `prod/oidc-${RUN}`;
    const res = await request('GET', withQuery('/token', { service: 'pier', scope: `repository:${repo}:pull,push` }), {
      headers: { authorization: oidcBasic(token) },
    });
    assertStatus(res, 200);
    const access = res.json().token;
    assert.equal(decodeJwt(access).payload.sub, 'promoter');
    const pushed = await request('POST', `/v2/${repo}/blobs/uploads/`, { headers: { authorization: `Bearer ${access}` } });
    assertStatus(pushed, 202);
  });

  test('other workflows of the organisation are CI: ci/ yes, prod/ no', async () => {
    const token = idToken({ sub: 'repo:acme/app:ref:refs/heads/feature', repository: 'acme/app', ref: 'refs/heads/feature' });
    const res = await request('GET', '/v2/prod/app/tags/list', { headers: { authorization: oidcBasic(token) } });
    assertStatus(res, 403);
    const repo = `ci/oidc-${RUN}`;
    await pushImage(new Caller('admin', 'token'), repo, 'v1');
    const listed = await request('GET', `/v2/${repo}/tags/list`, { headers: { authorization: oidcBasic(token) } });
    assertStatus(listed, 200);
    const push = await request('POST', `/v2/${repo}/blobs/uploads/`, { headers: { authorization: oidcBasic(token) } });
    assertStatus(push, 202);
  });

  test('tokens of other organisations, audiences or expired ones are refused', async () => {
    const cases = [
      idToken({ sub: 'x', repository: 'evil/app', ref: 'refs/heads/main' }),
      idToken({ sub: 'x', repository: 'acme/app', aud: 'another-registry' }),
      idToken({ sub: 'x', repository: 'acme/app', exp: Math.floor(Date.now() / 1000) - 3600 }),
    ];
    for (const token of cases) {
      const res = await request('GET', '/token?service=pier', { headers: { authorization: oidcBasic(token) } });
      assertStatus(res, 401, decodeJwt(token).payload.repository);
    }
  });
});
