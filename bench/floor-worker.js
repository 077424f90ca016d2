// bench/floor-worker.js: a Worker that answers every request with the same
// 1 MiB buffer, the floor of a 1 MiB GET under workerd on this machine
// (bench/blob-floor.mjs): no storage and no registry code.
const ONE_MIB = new Uint8Array(1 << 20).map((_, i) => (i * 31) & 255);

export default {
  async fetch() {
    return new Response(ONE_MIB, { headers: { 'content-type': 'application/octet-stream' } });
  },
};
