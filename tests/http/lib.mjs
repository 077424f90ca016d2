// Shared helpers for the black-box HTTP suite (tests/http/*.test.mjs).
//
// Everything here talks to the registry only through HTTP (global fetch, plus
// node:http/node:https for the one case fetch cannot express: a literal `..`
// path segment). No npm dependencies. Works on Node 20 and 22.
//
// Environment:
//   PIER_URL         base URL of the registry under test (default http://127.0.0.1:5000)
//   PIER_AUTH        optional full Authorization header value, sent to the registry origin only
//   PIER_TIMEOUT_MS  per-request timeout (default 60000)
//
// Every test works in its own freshly generated repository name (see repoName),
// and uploads random content, so the suite can run in parallel and repeatedly
// against one long-lived server without tests seeing each other's data.

import assert from 'node:assert/strict';
import { createHash, randomBytes as cryptoRandomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';

export const BASE = (process.env.PIER_URL || 'http://127.0.0.1:5000').replace(/\/+$/, '');
const BASE_ORIGIN = new URL(BASE).origin;
const AUTH = process.env.PIER_AUTH || '';
const TIMEOUT_MS = Number(process.env.PIER_TIMEOUT_MS || 60000);

// ---------------------------------------------------------------- media types

export const MT = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociEmpty: 'application/vnd.oci.empty.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  octet: 'application/octet-stream',
};

// What a modern client (containerd, crane, oras) sends when pulling manifests.
export const ACCEPT_ALL_MANIFESTS = [MT.ociManifest, MT.ociIndex, MT.dockerManifest, MT.dockerList].join(', ');

// ---------------------------------------------------------------- digests / data

export function sha256(buf) {
  return 'sha256:' + createHash('sha256').update(buf).digest('hex');
}

export function sha512(buf) {
  return 'sha512:' + createHash('sha512').update(buf).digest('hex');
}

export function digestOf(buf, algo = 'sha256') {
  if (algo === 'sha256') return sha256(buf);
  if (algo === 'sha512') return sha512(buf);
  throw new Error(`unsupported algorithm ${algo}`);
}

export function randomBytes(n) {
  return cryptoRandomBytes(n);
}

export function randomHex(nBytes = 6) {
  return cryptoRandomBytes(nBytes).toString('hex');
}

// The `{}` blob used as config of artifacts (OCI image-spec "empty descriptor").
export const EMPTY_JSON = Buffer.from('{}');
export const EMPTY_DESCRIPTOR = Object.freeze({
  mediaType: MT.ociEmpty,
  digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
  size: 2,
});

// ---------------------------------------------------------------- names

const RUN_ID = randomHex(4);

// A fresh, grammar-valid repository name. All names of one test process share
// a prefix `pier-test/<run>`; the suffix is random, so no two calls collide.
export function repoName(label = 'repo') {
  const clean = String(label).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '') || 'repo';
  return `pier-test/${RUN_ID}-${randomHex(4)}/${clean}`;
}

// ---------------------------------------------------------------- HTTP

export function absolute(target) {
  if (/^https?:\/\//i.test(target)) return target;
  if (!target.startsWith('/')) target = '/' + target;
  return BASE + target;
}

// Resolve a Location header (absolute URL, absolute path, or relative path)
// against the URL of the request that returned it, as RFC 9110 says.
export function resolveLocation(location, requestUrl = BASE + '/') {
  assert.ok(location, 'expected a Location header');
  return new URL(location, requestUrl).toString();
}

// Append query parameters to a URL without re-encoding what is already there
// (upload locations may carry opaque state in their query string).
export function withQuery(u, params) {
  const parts = [];
  for (const [k, v] of Object.entries(params)) {
    for (const one of Array.isArray(v) ? v : [v]) parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(one)}`);
  }
  if (!parts.length) return u;
  const hashIdx = u.indexOf('#');
  if (hashIdx >= 0) u = u.slice(0, hashIdx);
  return u + (u.includes('?') ? (u.endsWith('?') || u.endsWith('&') ? '' : '&') : '?') + parts.join('&');
}

// Perform one request and read the whole body.
// opts: { headers, body (Buffer|string|ReadableStream|undefined), redirect ('follow'|'manual') }
// Returns { status, headers, body: Buffer, url, method, text(), json(), describe() }.
export async function request(method, target, opts = {}) {
  const url = absolute(target);
  const headers = new Headers(opts.headers || {});
  if (AUTH && new URL(url).origin === BASE_ORIGIN && !headers.has('authorization')) headers.set('authorization', AUTH);
  const init = {
    method,
    headers,
    redirect: opts.redirect || 'follow',
    signal: AbortSignal.timeout(opts.timeout || TIMEOUT_MS),
  };
  if (opts.body !== undefined && opts.body !== null) {
    init.body = opts.body;
    if (typeof ReadableStream !== 'undefined' && opts.body instanceof ReadableStream) init.duplex = 'half';
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch (err) {
    const cause = err && err.cause ? ` (cause: ${err.cause.code || err.cause.message || err.cause})` : '';
    throw new Error(`${method} ${url} failed: ${err.message}${cause}`);
  }
  let body;
  let bodyError = null;
  try {
    body = Buffer.from(await res.arrayBuffer());
  } catch (err) {
    // e.g. the server announced a Content-Length and closed early; keep the
    // status and headers so the test can still assert on them.
    body = Buffer.alloc(0);
    bodyError = err;
  }
  const out = wrapResponse(method, url, res.status, res.headers, body);
  out.bodyError = bodyError;
  return out;
}

function wrapResponse(method, url, status, headers, body) {
  return {
    method,
    url,
    status,
    headers,
    body,
    text() {
      return body.toString('utf8');
    },
    json() {
      try {
        return JSON.parse(body.toString('utf8'));
      } catch (e) {
        throw new Error(`${method} ${url}: body is not JSON (${e.message}): ${snippet(body)}`);
      }
    },
    describe() {
      const err = this.bodyError ? ` (body read failed: ${this.bodyError.cause?.message || this.bodyError.message})` : '';
      return `${method} ${url} -> ${status}; headers ${JSON.stringify(Object.fromEntries(headers))}; body ${snippet(body)}${err}`;
    },
  };
}

function snippet(buf) {
  const s = buf.toString('utf8');
  return JSON.stringify(s.length > 400 ? s.slice(0, 400) + '…' : s);
}

// Send a request with a path exactly as given (no URL normalisation, so `..`
// and `//` segments reach the server verbatim). Used only for dot-segment tests.
export function rawRequest(method, rawPath, opts = {}) {
  const base = new URL(BASE);
  const lib = base.protocol === 'https:' ? https : http;
  const basePath = base.pathname.replace(/\/+$/, '');
  const headers = { ...(opts.headers || {}) };
  if (AUTH && !Object.keys(headers).some((h) => h.toLowerCase() === 'authorization')) headers.authorization = AUTH;
  const body = opts.body === undefined ? null : Buffer.from(opts.body);
  if (body && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-length')) headers['content-length'] = String(body.length);
  return new Promise((resolve, reject) => {
    const req = lib.request(
      {
        method,
        host: base.hostname,
        port: base.port || (base.protocol === 'https:' ? 443 : 80),
        path: basePath + rawPath,
        headers,
        timeout: TIMEOUT_MS,
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const h = new Headers();
          for (const [k, v] of Object.entries(res.headers)) h.set(k, Array.isArray(v) ? v.join(', ') : String(v));
          resolve(wrapResponse(method, `${base.origin}${basePath}${rawPath}`, res.statusCode, h, Buffer.concat(chunks)));
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

// A request body that fetch sends with `Transfer-Encoding: chunked` and no
// Content-Length (the parts are emitted as separate stream chunks).
export function streamBody(...parts) {
  const list = parts.map((p) => new Uint8Array(Buffer.from(p)));
  return new ReadableStream({
    pull(controller) {
      if (list.length) controller.enqueue(list.shift());
      else controller.close();
    },
  });
}

// ---------------------------------------------------------------- assertions

export function mediaTypeOf(res) {
  const ct = res.headers.get('content-type');
  return ct ? ct.split(';')[0].trim().toLowerCase() : null;
}

export function assertStatus(res, expected, msg = '') {
  const list = Array.isArray(expected) ? expected : [expected];
  assert.ok(list.includes(res.status), `${msg ? msg + ': ' : ''}expected status ${list.join(' or ')}, got ${res.describe()}`);
}

export function assertHeader(res, name, expected) {
  const v = res.headers.get(name);
  assert.ok(v !== null, `expected header ${name} in ${res.describe()}`);
  if (expected instanceof RegExp) assert.match(v, expected, `header ${name} of ${res.method} ${res.url}`);
  else if (expected !== undefined) assert.equal(v, String(expected), `header ${name} of ${res.method} ${res.url}`);
  return v;
}

// Parse an OCI error body and return its codes, checking the envelope shape:
// {"errors":[{"code":"UPPER_CASE","message":"...","detail":...}]}.
export function errorCodes(res) {
  const doc = res.json();
  assert.ok(doc && Array.isArray(doc.errors) && doc.errors.length > 0, `expected {"errors":[...]} in ${res.describe()}`);
  for (const e of doc.errors) {
    assert.equal(typeof e.code, 'string', `error code must be a string in ${res.describe()}`);
    assert.match(e.code, /^[A-Z_]+$/, `error code must be upper case and underscores in ${res.describe()}`);
    if ('message' in e) assert.equal(typeof e.message, 'string', `error message must be a string in ${res.describe()}`);
  }
  return doc.errors.map((e) => e.code);
}

// Assert status and (unless the response is to HEAD or has no body) that the
// JSON error body contains at least one of the allowed codes.
export function assertError(res, status, codes, msg = '') {
  assertStatus(res, status, msg);
  if (res.method === 'HEAD') {
    assert.equal(res.body.length, 0, `HEAD must not have a body: ${res.describe()}`);
    return [];
  }
  const allowed = Array.isArray(codes) ? codes : [codes];
  const got = errorCodes(res);
  assert.ok(
    got.some((c) => allowed.includes(c)),
    `${msg ? msg + ': ' : ''}expected error code ${allowed.join(' or ')}, got ${JSON.stringify(got)} in ${res.describe()}`,
  );
  return got;
}

// ---------------------------------------------------------------- blob uploads

// POST /v2/<name>/blobs/uploads/ (optionally with query params) and return the
// upload session: { res, location (absolute URL), minChunk (0 if no header) }.
export async function startUpload(repo, query = {}) {
  const res = await request('POST', withQuery(`/v2/${repo}/blobs/uploads/`, query), { headers: { 'content-length': '0' } });
  assertStatus(res, 202, `start upload in ${repo}`);
  const location = resolveLocation(assertHeader(res, 'location'), res.url);
  const min = res.headers.get('oci-chunk-min-length');
  return { res, location, minChunk: min && /^\d+$/.test(min) ? Number(min) : 0 };
}

// Chunk size to use for a session: at least `wanted` and at least the
// registry's advertised OCI-Chunk-Min-Length (capped at 64 MiB for sanity).
export function chunkSizeFor(session, wanted) {
  return Math.max(wanted, Math.min(session.minChunk || 0, 64 * 1024 * 1024));
}

export async function patchChunk(location, data, start, { contentRange = true } = {}) {
  const headers = { 'content-type': MT.octet };
  if (contentRange) headers['content-range'] = `${start}-${start + data.length - 1}`;
  return request('PATCH', location, { headers, body: data });
}

export async function getUploadStatus(location) {
  return request('GET', location);
}

// Final PUT of an upload session. `data` may be empty (all bytes already
// PATCHed) or the last chunk (then Content-Range is sent when `start` is given).
export async function finishUpload(location, digest, data = Buffer.alloc(0), start = undefined) {
  const headers = { 'content-type': MT.octet };
  if (data.length && start !== undefined) headers['content-range'] = `${start}-${start + data.length - 1}`;
  return request('PUT', withQuery(location, { digest }), { headers, body: data });
}

// Monolithic POST + PUT. Returns the digest; asserts 201.
export async function pushBlob(repo, data, { algo = 'sha256' } = {}) {
  const digest = digestOf(data, algo);
  const session = await startUpload(repo);
  const res = await finishUpload(session.location, digest, data);
  assertStatus(res, 201, `push blob ${digest} to ${repo}`);
  return digest;
}

// Chunked upload: POST, PATCH chunks (Content-Range + Content-Length), final
// PUT (optionally carrying the last chunk). Honours OCI-Chunk-Min-Length.
// Returns { digest, put (final response), session, chunkSize }.
export async function pushBlobChunked(repo, data, { chunkSize = 1024, algo = 'sha256', putLastChunk = false } = {}) {
  const digest = digestOf(data, algo);
  const session = await startUpload(repo, algo === 'sha256' ? {} : { 'digest-algorithm': algo });
  const size = chunkSizeFor(session, chunkSize);
  let location = session.location;
  let offset = 0;
  while (offset < data.length) {
    const chunk = data.subarray(offset, Math.min(offset + size, data.length));
    const isLast = offset + chunk.length === data.length;
    if (isLast && putLastChunk) break;
    const res = await patchChunk(location, chunk, offset);
    assertStatus(res, 202, `PATCH chunk at ${offset}`);
    assertHeader(res, 'range', `0-${offset + chunk.length - 1}`);
    location = resolveLocation(assertHeader(res, 'location'), res.url);
    offset += chunk.length;
  }
  const rest = data.subarray(offset);
  const put = await finishUpload(location, digest, rest, rest.length ? offset : undefined);
  assertStatus(put, 201, `final PUT of chunked upload ${digest}`);
  return { digest, put, session, chunkSize: size };
}

// ---------------------------------------------------------------- manifests

export function toBytes(manifest) {
  if (Buffer.isBuffer(manifest)) return manifest;
  if (typeof manifest === 'string') return Buffer.from(manifest);
  // Non-canonical formatting on purpose: registries must keep the exact bytes.
  return Buffer.from(JSON.stringify(manifest, null, 3) + '\n');
}

export async function putManifest(repo, reference, manifest, mediaType, { query = {}, headers = {} } = {}) {
  const body = toBytes(manifest);
  const ct = mediaType || JSON.parse(body.toString()).mediaType;
  const res = await request('PUT', withQuery(`/v2/${repo}/manifests/${reference}`, query), {
    headers: { 'content-type': ct, ...headers },
    body,
  });
  return Object.assign(res, { manifestBytes: body, manifestDigest: sha256(body) });
}

// PUT and assert 201 + Docker-Content-Digest. Returns { digest, bytes, res }.
export async function pushManifest(repo, reference, manifest, mediaType) {
  const res = await putManifest(repo, reference, manifest, mediaType);
  assertStatus(res, 201, `push manifest ${repo}:${reference}`);
  assertHeader(res, 'docker-content-digest', res.manifestDigest);
  return { digest: res.manifestDigest, bytes: res.manifestBytes, size: res.manifestBytes.length, res };
}

export async function getManifest(repo, reference, { method = 'GET', accept = ACCEPT_ALL_MANIFESTS } = {}) {
  const headers = {};
  if (accept) headers.accept = accept;
  return request(method, `/v2/${repo}/manifests/${reference}`, { headers });
}

// Upload a random config + layer and return an image manifest object of the
// given flavour ('oci' or 'docker'), plus the blobs it references.
export async function makeImage(repo, { flavour = 'oci', layers = 1, annotations, extra = {} } = {}) {
  const docker = flavour === 'docker';
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, nonce: randomHex(8) }),
  );
  const configDigest = await pushBlob(repo, config);
  const layerDescs = [];
  for (let i = 0; i < layers; i++) {
    const data = randomBytes(200 + i);
    const d = await pushBlob(repo, data);
    layerDescs.push({ mediaType: docker ? MT.dockerLayer : MT.ociLayer, digest: d, size: data.length });
  }
  const manifest = {
    schemaVersion: 2,
    mediaType: docker ? MT.dockerManifest : MT.ociManifest,
    config: { mediaType: docker ? MT.dockerConfig : MT.ociConfig, digest: configDigest, size: config.length },
    layers: layerDescs,
    ...extra,
  };
  if (annotations) manifest.annotations = annotations;
  return manifest;
}

// Push an image manifest by digest and return its descriptor.
export async function pushImageByDigest(repo, opts = {}) {
  const m = await makeImage(repo, opts);
  const bytes = toBytes(m);
  const digest = sha256(bytes);
  const { size } = await pushManifest(repo, digest, bytes, m.mediaType);
  return { mediaType: m.mediaType, digest, size, manifest: m, bytes };
}

// An index / manifest list over the given child descriptors.
export function makeIndex(children, { flavour = 'oci', extra = {} } = {}) {
  const docker = flavour === 'docker';
  return {
    schemaVersion: 2,
    mediaType: docker ? MT.dockerList : MT.ociIndex,
    manifests: children.map((c, i) => ({
      mediaType: c.mediaType,
      digest: c.digest,
      size: c.size,
      platform: { architecture: i % 2 ? 'arm64' : 'amd64', os: 'linux' },
    })),
    ...extra,
  };
}

// Follow a `Link: <url>; rel="next"` header; returns absolute URL or null.
export function nextLink(res) {
  const link = res.headers.get('link');
  if (!link) return null;
  for (const part of link.split(/,(?=\s*<)/)) {
    const m = part.match(/^\s*<([^>]*)>\s*(.*)$/);
    if (m && /(^|;)\s*rel="?next"?\s*(;|$)/i.test(m[2])) return new URL(m[1], res.url).toString();
  }
  return null;
}

export async function tagsList(repo, query = {}) {
  return request('GET', withQuery(`/v2/${repo}/tags/list`, query));
}

export { assert };
