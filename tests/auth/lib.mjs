// Helpers of the auth suite (tests/auth/*.test.mjs): roles and their
// credentials, the policy they are expected to get, the two ways of
// presenting credentials (Basic on every request, or tokens from the token
// endpoint as clients do), and assertions for refusals.
//
// Environment (besides tests/http/lib.mjs's PIER_URL and PIER_TIMEOUT_MS):
//   PIER_AUTH_CREDENTIALS  path of a JSON file {role: {username, password}} for
//                          the roles sandbox, ci, promoter, production, admin
//                          (tests/auth/make-config.sh writes one)

import { readFileSync } from 'node:fs';
import {
  assert, BASE, MT, request, sha256, randomBytes, randomHex, resolveLocation, toBytes, withQuery, assertStatus,
} from '../http/lib.mjs';

export { assert, BASE, MT, request, sha256, randomBytes, randomHex, resolveLocation, toBytes, withQuery, assertStatus };

const CREDENTIALS_FILE = process.env.PIER_AUTH_CREDENTIALS;
if (!CREDENTIALS_FILE) throw new Error('set PIER_AUTH_CREDENTIALS to a credentials JSON file (see tests/auth/README.md)');
export const CREDENTIALS = JSON.parse(readFileSync(CREDENTIALS_FILE, 'utf8'));

export const RUN = randomHex(4);
export const ROLES = ['anonymous', 'sandbox', 'ci', 'promoter', 'production', 'admin'];
const EVERYONE = ROLES;
const AUTHENTICATED = ROLES.filter((r) => r !== 'anonymous');

// Who may do what per namespace: tests/auth/policy.toml in table form.
export const POLICY = {
  sandbox: { pull: AUTHENTICATED, push: AUTHENTICATED, delete: AUTHENTICATED },
  ci: { pull: EVERYONE, push: ['ci', 'admin'], delete: ['ci', 'admin'] },
  prod: { pull: ['promoter', 'production', 'admin'], push: ['promoter', 'admin'], delete: ['admin'] },
  public: { pull: EVERYONE, push: ['promoter', 'admin'], delete: ['admin'] },
  other: { pull: ['admin'], push: ['admin'], delete: ['admin'] },
};
export const NAMESPACES = Object.keys(POLICY);

export function allowed(namespace, action, role) {
  return POLICY[namespace][action].includes(role);
}

export function basicHeader(role) {
  const { username, password } = CREDENTIALS[role];
  return 'Basic ' + Buffer.from(`${username}:${password}`).toString('base64');
}

// GET /token for `role` (anonymous: no credentials) with these scopes.
export async function fetchToken(role, scopes = []) {
  const query = { service: 'pier' };
  if (scopes.length) query.scope = scopes;
  const headers = role === 'anonymous' ? {} : { authorization: basicHeader(role) };
  const res = await request('GET', withQuery('/token', query), { headers });
  assertStatus(res, 200, `token for ${role}`);
  return res.json().token;
}

// A role presenting credentials one way: `basic` sends Basic on every
// request (no header at all for anonymous); `token` gets a token per
// repository, asking for every action there, and sends it as Bearer.
export class Caller {
  constructor(role, mode) {
    this.role = role;
    this.mode = mode;
    this.tokens = new Map();
  }

  async authorization(scopes) {
    if (this.mode === 'basic') return this.role === 'anonymous' ? null : basicHeader(this.role);
    const key = scopes.join(' ');
    if (!this.tokens.has(key)) this.tokens.set(key, await fetchToken(this.role, scopes));
    return `Bearer ${this.tokens.get(key)}`;
  }

  // A request needing `scopes` (what a client would ask a token for).
  async request(method, path, scopes, opts = {}) {
    const authorization = await this.authorization(scopes);
    const headers = { ...(opts.headers || {}) };
    if (authorization) headers.authorization = authorization;
    return request(method, path, { ...opts, headers });
  }
}

export function repoScope(repo) {
  return `repository:${repo}:pull,push,delete`;
}

// A refused request: 401 with a Bearer challenge for anonymous callers,
// 403 DENIED for everyone else (they are known; the policy says no).
export function assertRefused(res, role, what) {
  if (role === 'anonymous') {
    assertStatus(res, 401, what);
    assert.match(res.headers.get('www-authenticate') || '', /^Bearer realm="[^"]+",service="pier"/, `${what}: challenge`);
    if (res.method !== 'HEAD') assert.equal(res.json().errors[0].code, 'UNAUTHORIZED', what);
  } else {
    assertStatus(res, 403, what);
    if (res.method !== 'HEAD') assert.equal(res.json().errors[0].code, 'DENIED', what);
  }
}

// Pushes a random image (config, one layer, manifest under `tag`) as `caller`
// and returns its digests.
export async function pushImage(caller, repo, tag) {
  const scopes = [repoScope(repo)];
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', nonce: randomHex(8) }));
  const layer = randomBytes(256);
  const blobs = [];
  for (const data of [config, layer]) {
    const digest = sha256(data);
    const res = await caller.request('POST', withQuery(`/v2/${repo}/blobs/uploads/`, { digest }), scopes, { body: data });
    assertStatus(res, 201, `push blob to ${repo}`);
    blobs.push({ digest, size: data.length });
  }
  const manifest = toBytes({
    schemaVersion: 2,
    mediaType: MT.ociManifest,
    config: { mediaType: MT.ociConfig, ...blobs[0] },
    layers: [{ mediaType: MT.ociLayer, ...blobs[1] }],
  });
  const res = await caller.request('PUT', `/v2/${repo}/manifests/${tag}`, scopes, {
    headers: { 'content-type': MT.ociManifest },
    body: manifest,
  });
  assertStatus(res, 201, `push manifest ${repo}:${tag}`);
  return { manifest: sha256(manifest), manifestBytes: manifest, config: blobs[0].digest, layer: blobs[1].digest };
}

// Every repository in the catalog, following Link headers.
export async function catalog(caller) {
  const names = [];
  let next = '/v2/_catalog?n=500';
  while (next) {
    const res = await caller.request('GET', next, ['registry:catalog:*']);
    if (res.status !== 200) return res;
    names.push(...res.json().repositories);
    const link = res.headers.get('link');
    next = link ? new URL(link.match(/<([^>]+)>/)[1], res.url).toString() : null;
  }
  return names;
}
