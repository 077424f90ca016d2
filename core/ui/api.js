// How the UI talks to pier: only this origin's public endpoints (the
// distribution API, the token endpoint and /_pier/), with pier's own token
// flow. Signing in posts the password to the token endpoint once, as
// `docker login` does, and keeps the refresh token it answers in
// sessionStorage (gone with the tab); each repository then gets an access
// token for its scope from that refresh token. Anonymous visitors send no
// credentials and see what anonymous pulls may see.

const SESSION_KEY = "pier.session";
const TOKENS_KEY = "pier.tokens";
const MANIFEST_TYPES = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");

/** An answer pier refused, with its status and the spec's error code. */
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The Bearer challenge's parameters (`realm`, `service`, `scope`). */
function parseChallenge(header) {
  const params = {};
  if (!header || !/^bearer\s/i.test(header)) return null;
  for (const [, key, value] of header.matchAll(/(\w+)="([^"]*)"/g)) params[key] = value;
  return params;
}

let registryAuth = null;

/** Whether the registry asks for credentials: `{open: true}` or the token endpoint and service. */
export async function discover() {
  if (registryAuth) return registryAuth;
  const response = await fetch("/v2/", { credentials: "omit" });
  const challenge = parseChallenge(response.headers.get("www-authenticate"));
  if (response.ok || !challenge) {
    registryAuth = { open: true };
  } else {
    // The realm may name another host; the UI talks to its own origin only.
    const realm = new URL(challenge.realm || "/token", location.href);
    registryAuth = { open: false, tokenPath: realm.origin === location.origin ? realm.pathname : "/token", service: challenge.service || "" };
  }
  return registryAuth;
}

export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
  } catch {
    return null;
  }
}

function cachedTokens() {
  try {
    return JSON.parse(sessionStorage.getItem(TOKENS_KEY) || "{}");
  } catch {
    return {};
  }
}

async function tokenRequest(form) {
  const auth = await discover();
  form.set("service", auth.service);
  form.set("client_id", "pier-ui");
  const response = await fetch(auth.tokenPath, { method: "POST", body: form, credentials: "omit" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = (body.errors && body.errors[0]) || {};
    throw new ApiError(response.status, error.code || "", error.message || `token endpoint answered ${response.status}`);
  }
  return body;
}

/** Signs in: a refresh token (and the caller's name) kept for this tab. */
export async function signIn(username, password) {
  const form = new URLSearchParams({ grant_type: "password", username, password, access_type: "offline" });
  const answer = await tokenRequest(form);
  sessionStorage.removeItem(TOKENS_KEY);
  const kept = { user: username, refresh: answer.refresh_token || null, token: answer.token, expires: expiry(answer) };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(kept));
  return kept;
}

export function signOut() {
  sessionStorage.removeItem(SESSION_KEY);
  sessionStorage.removeItem(TOKENS_KEY);
}

function expiry(answer) {
  // A little early, so a token is never sent just as it lapses.
  return Date.now() + Math.max(10, (answer.expires_in || 60) - 10) * 1000;
}

/** An access token for `scope` ("" for none: the identity alone), or null when anonymous. */
async function tokenFor(scope) {
  const current = session();
  if (!current) return null;
  const tokens = cachedTokens();
  const held = tokens[scope];
  if (held && held.expires > Date.now()) return held.token;
  if (!current.refresh) {
    if (current.expires > Date.now()) return current.token;
    signOut();
    throw new ApiError(401, "UNAUTHORIZED", "the session has ended: sign in again");
  }
  const form = new URLSearchParams({ grant_type: "refresh_token", refresh_token: current.refresh });
  if (scope) form.set("scope", scope);
  const answer = await tokenRequest(form);
  tokens[scope] = { token: answer.token, expires: expiry(answer) };
  sessionStorage.setItem(TOKENS_KEY, JSON.stringify(tokens));
  return answer.token;
}

/** The scope a repository's pages ask for: everything, of which the token endpoint grants what the policy allows. */
function repositoryScope(name) {
  return `repository:${name}:pull,push,delete`;
}

/** A request to pier with the caller's token for `scope`; throws ApiError on refusals. */
async function call(path, { scope = "", method = "GET", accept = "application/json" } = {}) {
  const auth = await discover();
  const headers = { Accept: accept };
  const token = auth.open ? null : await tokenFor(scope);
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { method, headers, credentials: "omit" });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const error = (body.errors && body.errors[0]) || {};
    throw new ApiError(response.status, error.code || "", error.message || `${method} ${path}: ${response.status}`);
  }
  return response;
}

/** The `last` of a `Link: <...>; rel="next"` header, or null. */
function nextLast(response) {
  const link = response.headers.get("link");
  const target = link && /<([^>]+)>;\s*rel="next"/.exec(link);
  return target ? new URL(target[1], location.href).searchParams.get("last") : null;
}

const path = (name) => name.split("/").map(encodeURIComponent).join("/");

export async function repositories({ q = "", last = "", n = 50 } = {}) {
  const params = new URLSearchParams({ n: String(n) });
  if (q) params.set("q", q);
  if (last) params.set("last", last);
  const response = await call(`/_pier/repositories?${params}`);
  return { ...(await response.json()), next: nextLast(response) };
}

export async function tags(name, last = "") {
  const params = new URLSearchParams();
  if (last) params.set("last", last);
  const response = await call(`/_pier/repositories/${path(name)}/tags?${params}`, { scope: repositoryScope(name) });
  return { ...(await response.json()), next: nextLast(response) };
}

// References go into paths as they are: tags and digests are URL-safe, and
// pier would read an escaped colon as part of a tag.
export async function manifest(name, reference) {
  const response = await call(`/v2/${path(name)}/manifests/${reference}`, {
    scope: repositoryScope(name),
    accept: MANIFEST_TYPES,
  });
  return { json: await response.json(), digest: response.headers.get("docker-content-digest") };
}

/** Whether a manifest exists (a cosign `.sig` tag, say). */
export async function hasManifest(name, reference) {
  try {
    await call(`/v2/${path(name)}/manifests/${reference}`, {
      scope: repositoryScope(name),
      method: "HEAD",
      accept: MANIFEST_TYPES,
    });
    return true;
  } catch (error) {
    if (error.status === 404) return false;
    throw error;
  }
}

export async function blobJson(name, digest) {
  const response = await call(`/v2/${path(name)}/blobs/${digest}`, { scope: repositoryScope(name), accept: "*/*" });
  return response.json();
}

export async function referrers(name, digest) {
  const response = await call(`/v2/${path(name)}/referrers/${digest}`, {
    scope: repositoryScope(name),
    accept: "application/vnd.oci.image.index.v1+json",
  });
  return (await response.json()).manifests || [];
}

export async function deleteTag(name, tag) {
  await call(`/v2/${path(name)}/manifests/${tag}`, { scope: repositoryScope(name), method: "DELETE" });
}

/** The last GC report, null before the first collection; ApiError 403 for non-admins. */
export async function gcReport() {
  try {
    return await (await call("/_pier/gc/report")).json();
  } catch (error) {
    if (error.code === "GC_REPORT_UNKNOWN") return null;
    throw error;
  }
}

/** Deliveries waiting and given up (each says `dead`); null when no webhook or rule is configured. */
export async function events() {
  try {
    return await (await call("/_pier/events?limit=100&dead=true")).json();
  } catch (error) {
    if (error.status === 404) return null;
    throw error;
  }
}

/** Whether the caller may read the operator endpoints (an admin, or any caller of an open registry). */
export async function isAdmin() {
  try {
    await gcReport();
    return true;
  } catch (error) {
    if (error.status === 401 || error.status === 403) return false;
    throw error;
  }
}
