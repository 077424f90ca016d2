// Fills an open pier with N repositories quickly for bench/ui.sh: one tiny
// image per repository, its config and layer pushed once and mounted into
// every other repository (three requests a repository), 32 at a time over
// keep-alive connections, instead of one client process per repository.
//
// Usage: node bench/ui-seed.mjs URL N

import { createHash } from "node:crypto";

const [base, count] = [process.argv[2], Number(process.argv[3])];
const sha = (bytes) => "sha256:" + createHash("sha256").update(bytes).digest("hex");
const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } }));
const layer = Buffer.from("pier ui benchmark layer\n");
const manifest = Buffer.from(JSON.stringify({
  schemaVersion: 2,
  mediaType: "application/vnd.oci.image.manifest.v1+json",
  config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: sha(config), size: config.length },
  layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: sha(layer), size: layer.length }],
}));
const name = (i) => `bench/team-${String(i % 100).padStart(2, "0")}/app-${String(i).padStart(5, "0")}`;

async function ok(response, what) {
  if (!response.ok) throw new Error(`${what}: ${response.status} ${await response.text()}`);
  await response.arrayBuffer();
}

async function push(i) {
  const repo = name(i);
  for (const blob of [config, layer]) {
    const query = i === 0 ? `digest=${sha(blob)}` : `mount=${sha(blob)}&from=${name(0)}`;
    const init = i === 0 ? { method: "POST", body: blob, headers: { "Content-Type": "application/octet-stream" } } : { method: "POST" };
    await ok(await fetch(`${base}/v2/${repo}/blobs/uploads/?${query}`, init), `blob into ${repo}`);
  }
  await ok(await fetch(`${base}/v2/${repo}/manifests/v1`, {
    method: "PUT",
    body: manifest,
    headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" },
  }), `manifest of ${repo}`);
}

await push(0);
let next = 1;
await Promise.all(Array.from({ length: 32 }, async () => {
  while (next < count) await push(next++);
}));
console.log(`${count} repositories`);
