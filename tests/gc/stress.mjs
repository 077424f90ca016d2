// GC stress: several clients push images that share base layers (skipping
// layers a HEAD finds, as docker does) and delete others, while `pier serve`
// collects every second with a short grace window. Afterwards every manifest
// the registry holds must have every blob it references (all pulled and
// hashed), and every manifest a client pushed and did not delete must still
// be there. Clients also pull their own images while the collection runs.
// Prints one counts line; exits non-zero on any failure.
//
// Environment: PIER_URL, GC_STRESS_SECS (default 60), GC_STRESS_CLIENTS (default 4).

import { randomInt } from 'node:crypto';
import {
  BASE, MT, request, sha256, randomBytes, pushBlob, putManifest, toBytes, tagsList, ACCEPT_ALL_MANIFESTS,
} from '../http/lib.mjs';

const SECONDS = Number(process.env.GC_STRESS_SECS || 60);
const CLIENTS = Number(process.env.GC_STRESS_CLIENTS || 4);
const REPOS = ['stress/shared-a', 'stress/shared-b', 'stress/solo'];
// Shared base layers: the same bytes for every client, so they dedupe, go
// unreferenced when the images using them are deleted, and come back.
// A few are common; many are rare, so they sit unreferenced past the grace
// window and get swept, then come back through a HEAD that may race the sweep.
const BASES = Array.from({ length: 40 }, (_, i) => Buffer.from(`base layer ${i} `.repeat(2000 + i)));
const pickBase = () => BASES[randomInt(10) < 7 ? randomInt(4) : randomInt(BASES.length)];

const counts = { pushes: 0, retried: 0, skippedUploads: 0, deletes: 0, pulls: 0, failures: 0 };
const live = new Map(); // `${repo}@${digest}` -> { repo, digest, tag }

function fail(message) {
  counts.failures++;
  console.error(`FAIL ${message}`);
}

async function ensureBlob(repo, data) {
  const digest = sha256(data);
  const head = await request('HEAD', `/v2/${repo}/blobs/${digest}`);
  if (head.status === 200) {
    counts.skippedUploads++;
    return digest;
  }
  for (;;) {
    try {
      return await pushBlob(repo, data);
    } catch (e) {
      // 503: the blob is being collected right now; retry after the sweep.
      if (!String(e.message).includes('503')) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

async function pushImage(repo, client, n) {
  const bases = [pickBase(), pickBase()];
  for (let attempt = 0; attempt < 20; attempt++) {
    const layers = [];
    for (const data of [...bases, randomBytes(2048 + randomInt(4096))]) {
      layers.push({ mediaType: MT.ociLayer, digest: await ensureBlob(repo, data), size: data.length });
    }
    const config = Buffer.from(JSON.stringify({ client, n, attempt }));
    const configDigest = await ensureBlob(repo, config);
    const manifest = {
      schemaVersion: 2,
      mediaType: MT.ociManifest,
      config: { mediaType: MT.ociConfig, digest: configDigest, size: config.length },
      layers,
    };
    const tag = `c${client}-${n}`;
    const res = await putManifest(repo, tag, manifest);
    if (res.status === 201) {
      counts.pushes++;
      live.set(`${repo}@${res.manifestDigest}`, { repo, digest: res.manifestDigest, tag });
      return;
    }
    const body = await res.text();
    // Refused because GC took a blob the HEAD had found: push again, as a client would.
    if (res.status === 503 || body.includes('MANIFEST_BLOB_UNKNOWN')) {
      counts.retried++;
      continue;
    }
    fail(`push ${repo}:${tag}: ${res.status} ${body}`);
    return;
  }
  fail(`push to ${repo} refused 20 times`);
}

async function deleteOne(client) {
  const mine = [...live.values()].filter((m) => m.tag.startsWith(`c${client}-`));
  if (mine.length === 0) return;
  const victim = mine[randomInt(mine.length)];
  const res = await request('DELETE', `/v2/${victim.repo}/manifests/${victim.digest}`);
  if (res.status !== 202) return fail(`delete ${victim.repo}@${victim.digest}: ${res.status}`);
  live.delete(`${victim.repo}@${victim.digest}`);
  counts.deletes++;
}

// Pulls one of the client's own images (no one else deletes them) while the
// collection runs: every blob must come back whole. Shared base layers are
// collected and uploaded again all the time, so this pulls through cached
// records of blobs that have since been deleted and stored anew.
async function pullOne(client) {
  const mine = [...live.values()].filter((m) => m.tag.startsWith(`c${client}-`));
  if (mine.length === 0) return;
  const image = mine[randomInt(mine.length)];
  const m = await request('GET', `/v2/${image.repo}/manifests/${image.digest}`, { headers: { accept: ACCEPT_ALL_MANIFESTS } });
  if (m.status !== 200) return fail(`pull ${image.repo}@${image.digest}: ${m.status}`);
  const manifest = m.json();
  for (const d of [manifest.config, ...manifest.layers]) {
    const b = await request('GET', `/v2/${image.repo}/blobs/${d.digest}`);
    if (b.status !== 200 || sha256(b.body) !== d.digest) fail(`pull ${image.repo}@${image.digest} blob ${d.digest}: ${b.status}`);
  }
  counts.pulls++;
}

async function client(id, until) {
  let n = 0;
  while (Date.now() < until) {
    await pushImage(REPOS[randomInt(REPOS.length)], id, n++);
    // Delete a bit less than is pushed: the registry grows slowly.
    if (randomInt(10) < 7) await deleteOne(id);
    await pullOne(id);
  }
}

async function pullAll() {
  let manifests = 0;
  let blobs = 0;
  const catalog = (await request("GET", "/v2/_catalog")).json();
  for (const repo of catalog.repositories) {
    const res = await tagsList(repo);
    const tags = res.json().tags || [];
    for (const tag of tags) {
      const m = await request('GET', `/v2/${repo}/manifests/${tag}`, { headers: { accept: ACCEPT_ALL_MANIFESTS } });
      if (m.status !== 200) {
        fail(`GET ${repo}:${tag}: ${m.status}`);
        continue;
      }
      const manifest = m.json();
      manifests++;
      for (const d of [manifest.config, ...manifest.layers]) {
        const b = await request('GET', `/v2/${repo}/blobs/${d.digest}`);
        const bytes = b.body;
        if (b.status !== 200 || sha256(bytes) !== d.digest) fail(`${repo}:${tag} blob ${d.digest}: ${b.status}`);
        blobs++;
      }
    }
  }
  for (const m of live.values()) {
    const res = await request('HEAD', `/v2/${m.repo}/manifests/${m.digest}`, { headers: { accept: ACCEPT_ALL_MANIFESTS } });
    if (res.status !== 200) fail(`pushed and never deleted, yet gone: ${m.repo}@${m.digest} (${res.status})`);
  }
  return { manifests, blobs };
}

const until = Date.now() + SECONDS * 1000;
await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i, until)));
const pulled = await pullAll();
console.log(
  `gc-stress: ${BASE} ${SECONDS}s ${CLIENTS} clients: pushes=${counts.pushes} retried=${counts.retried} ` +
    `skipped_uploads=${counts.skippedUploads} deletes=${counts.deletes} pulls=${counts.pulls} live=${live.size} ` +
    `manifests_pulled=${pulled.manifests} blobs_pulled=${pulled.blobs} failures=${counts.failures}`,
);
process.exit(counts.failures === 0 ? 0 : 1);
