// Every endpoint x every role x allowed/denied, per namespace of the policy
// (tests/auth/policy.toml), twice: with Basic credentials on each request,
// and with tokens from the token endpoint as clients use them.
//
// Why: who may push to prod/ is the question that matters most, and a
// policy is only as good as the one endpoint that forgets to check it. So
// each role tries every kind of request in each namespace: pulls (manifest
// and blob GET/HEAD, tags, referrers), pushes (POST, PATCH, PUT of a blob,
// manifest PUT), deletes (tag, manifest, blob), a mount from the namespace,
// and the catalog. Allowed requests must work; refused ones must be 401 with
// a challenge (anonymous) or 403 DENIED (known callers), and must change
// nothing (checked by an admin afterwards).

import { describe, test, before } from 'node:test';
import {
  assert, MT, RUN, ROLES, NAMESPACES, Caller, allowed, assertRefused, assertStatus, pushImage, repoScope, catalog,
  withQuery, randomBytes, sha256, resolveLocation,
} from './lib.mjs';

const ACCEPT = { accept: MT.ociManifest };

for (const mode of ['basic', 'token']) {
  describe(`matrix with ${mode} credentials`, () => {
    // Setup and checks are done by the admin with tokens (fast in either mode).
    const admin = new Caller('admin', 'token');
    const repos = Object.fromEntries(NAMESPACES.map((ns) => [ns, `${ns}/matrix-${RUN}-${mode}`]));
    const images = {};

    before(async () => {
      for (const ns of NAMESPACES) images[ns] = await pushImage(admin, repos[ns], 'v1');
    });

    for (const ns of NAMESPACES) {
      describe(`${ns}/`, () => {
        for (const role of ROLES) {
          const caller = new Caller(role, mode);

          test(`${role} ${allowed(ns, 'pull', role) ? 'may' : 'may not'} pull`, async () => {
            const repo = repos[ns];
            const image = images[ns];
            const scopes = [repoScope(repo)];
            const requests = [
              ['GET', `/v2/${repo}/manifests/v1`, 200],
              ['HEAD', `/v2/${repo}/manifests/v1`, 200],
              ['GET', `/v2/${repo}/manifests/${image.manifest}`, 200],
              ['GET', `/v2/${repo}/blobs/${image.layer}`, 200],
              ['HEAD', `/v2/${repo}/blobs/${image.config}`, 200],
              ['GET', `/v2/${repo}/tags/list`, 200],
              ['GET', `/v2/${repo}/referrers/${image.manifest}`, 200],
            ];
            for (const [method, path, status] of requests) {
              const res = await caller.request(method, path, scopes, { headers: ACCEPT });
              const what = `${role} ${method} ${path}`;
              if (allowed(ns, 'pull', role)) assertStatus(res, status, what);
              else assertRefused(res, role, what);
            }
          });

          test(`${role} ${allowed(ns, 'push', role) ? 'may' : 'may not'} push`, async () => {
            const repo = repos[ns];
            const scopes = [repoScope(repo)];
            const data = randomBytes(100);
            const digest = sha256(data);
            const tag = `push-${role}`;
            const manifest = Buffer.from(images[ns].manifestBytes);
            if (allowed(ns, 'push', role)) {
              const started = await caller.request('POST', `/v2/${repo}/blobs/uploads/`, scopes);
              assertStatus(started, 202, `${role} POST`);
              const location = resolveLocation(started.headers.get('location'), started.url);
              const patched = await caller.request('PATCH', location, scopes, {
                headers: { 'content-type': MT.octet, 'content-range': `0-${data.length - 1}` },
                body: data,
              });
              assertStatus(patched, 202, `${role} PATCH`);
              const next = resolveLocation(patched.headers.get('location'), patched.url);
              const finished = await caller.request('PUT', withQuery(next, { digest }), scopes);
              assertStatus(finished, 201, `${role} PUT`);
              const put = await caller.request('PUT', `/v2/${repo}/manifests/${tag}`, scopes, {
                headers: { 'content-type': MT.ociManifest },
                body: manifest,
              });
              assertStatus(put, 201, `${role} manifest PUT`);
            } else {
              assertRefused(await caller.request('POST', `/v2/${repo}/blobs/uploads/`, scopes), role, `${role} POST`);
              assertRefused(
                await caller.request('POST', withQuery(`/v2/${repo}/blobs/uploads/`, { digest }), scopes, { body: data }),
                role,
                `${role} single POST`,
              );
              // An upload someone allowed started: its session is no way in.
              const started = await admin.request('POST', `/v2/${repo}/blobs/uploads/`, [repoScope(repo)]);
              const location = resolveLocation(started.headers.get('location'), started.url);
              const patched = await caller.request('PATCH', location, scopes, {
                headers: { 'content-type': MT.octet, 'content-range': `0-${data.length - 1}` },
                body: data,
              });
              assertRefused(patched, role, `${role} PATCH of another's upload`);
              assertRefused(await caller.request('PUT', withQuery(location, { digest }), scopes), role, `${role} PUT`);
              const put = await caller.request('PUT', `/v2/${repo}/manifests/${tag}`, scopes, {
                headers: { 'content-type': MT.ociManifest },
                body: manifest,
              });
              assertRefused(put, role, `${role} manifest PUT`);
              const check = await admin.request('GET', `/v2/${repo}/manifests/${tag}`, [repoScope(repo)], { headers: ACCEPT });
              assertStatus(check, 404, 'a refused manifest PUT leaves no tag');
              const blob = await admin.request('HEAD', `/v2/${repo}/blobs/${digest}`, [repoScope(repo)]);
              assertStatus(blob, 404, 'a refused upload leaves no blob');
            }
          });

          test(`${role} ${allowed(ns, 'delete', role) ? 'may' : 'may not'} delete`, async () => {
            const repo = repos[ns];
            const scopes = [repoScope(repo)];
            const adminScopes = [repoScope(repo)];
            // Targets of its own, so that deletes by one role do not affect another.
            const byTag = await pushImage(admin, repo, `tag-${role}`);
            const byDigest = await pushImage(admin, repo, `digest-${role}`);
            const requests = [
              [`/v2/${repo}/manifests/tag-${role}`, `/v2/${repo}/manifests/tag-${role}`],
              [`/v2/${repo}/manifests/${byDigest.manifest}`, `/v2/${repo}/manifests/digest-${role}`],
              [`/v2/${repo}/blobs/${byTag.layer}`, `/v2/${repo}/blobs/${byTag.layer}`],
            ];
            for (const [target, probe] of requests) {
              const res = await caller.request('DELETE', target, scopes);
              const after = await admin.request('HEAD', probe, adminScopes, { headers: ACCEPT });
              if (allowed(ns, 'delete', role)) {
                assertStatus(res, 202, `${role} DELETE ${target}`);
                assertStatus(after, 404, `gone after ${role} DELETE ${target}`);
              } else {
                assertRefused(res, role, `${role} DELETE ${target}`);
                assertStatus(after, 200, `still there after a refused DELETE ${target}`);
              }
            }
          });

          test(`${role} ${allowed(ns, 'pull', role) ? 'may' : 'may not'} mount from ${ns}/`, async () => {
            const target = `sandbox/mount-${RUN}-${mode}-${ns}-${role}`;
            const source = repos[ns];
            const layer = images[ns].layer;
            const res = await caller.request(
              'POST',
              withQuery(`/v2/${target}/blobs/uploads/`, { mount: layer, from: source }),
              [repoScope(target), `repository:${source}:pull`],
            );
            if (role === 'anonymous') return assertRefused(res, role, 'anonymous mount into sandbox/');
            if (allowed(ns, 'pull', role)) {
              assertStatus(res, 201, `${role} mounts from ${source}`);
            } else {
              assertStatus(res, 202, `${role} gets an upload, not the blob of ${source}`);
              const check = await admin.request('HEAD', `/v2/${target}/blobs/${layer}`, [repoScope(target)]);
              assertStatus(check, 404, 'nothing was mounted');
            }
          });
        }
      });
    }

    describe('_catalog', () => {
      for (const role of ROLES) {
        test(`${role} sees exactly the matrix repositories it may pull`, async () => {
          const caller = new Caller(role, mode);
          const listed = await catalog(caller);
          if (role === 'anonymous') {
            // docs/auth.md: the catalog needs valid credentials; an anonymous token is none.
            assertRefused(listed, role, 'the catalog needs a login');
            return;
          }
          assert.ok(Array.isArray(listed), `catalog for ${role}: ${listed.describe?.()}`);
          const ours = Object.values(repos);
          const expected = NAMESPACES.filter((ns) => allowed(ns, 'pull', role)).map((ns) => repos[ns]).sort();
          assert.deepEqual(listed.filter((name) => ours.includes(name)), expected);
        });
      }
    });
  });
}
