// Crash safety of the native server: `kill -9` in the middle of a 256 MiB
// chunked push, then restart on the same data directory. Everything pushed
// before must be intact, the partial blob must not be visible, and the push
// must finish, both by resuming the interrupted session from the offset the
// server reports and by starting again from scratch. Then the push docker
// makes of a small layer (POST, one PATCH, an empty PUT), whose PATCH keeps
// the bytes in the object the blob becomes: `kill -9` halfway through that
// PATCH, and again between the PATCH and the PUT.
//
// Needs PIER_BIN (path to the `pier` binary). Starts its own server on a free
// port with a temporary data directory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { freePort } from '../lib/free-port.mjs';
import os from 'node:os';
import path from 'node:path';

const BIN = process.env.PIER_BIN;
const MiB = 1 << 20;
const TOTAL = 256 * MiB;
const CHUNK = 16 * MiB;


// tests/http/lib.mjs reads PIER_URL once, when first imported: every test
// here serves its registry on that one port (each kills its server before
// the next test starts one).
let client;
async function registryClient() {
  if (!client) {
    const port = await freePort();
    process.env.PIER_URL = `http://127.0.0.1:${port}`;
    client = { port, lib: await import('../http/lib.mjs') };
  }
  return client;
}

// Kills `server` (if it still runs) and waits for it to exit, so that the
// next test can listen on its port.
async function stopServer(server) {
  if (server.exitCode === null && server.signalCode === null) {
    const exited = new Promise((r) => server.once('exit', r));
    server.kill('SIGKILL');
    await exited;
  }
}

async function startServer(dataDir, port) {
  const child = spawn(BIN, ['serve', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'inherit'] });
  for (let i = 0; i < 100; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v2/`);
      if (res.ok) return child;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error('pier did not start');
}

// Deterministic content (xorshift32, seeded per chunk), generated chunk by
// chunk so the test holds little.
function chunkAt(index) {
  const words = new Uint32Array(CHUNK / 4);
  let x = (index + 1) * 2654435761 >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    words[i] = x;
  }
  return Buffer.from(words.buffer);
}

// Sends `method location` with `headers` (Content-Length the whole body's)
// but only the first `sent` bytes of `body`, then kills `server` (kill -9)
// while the request is open, and waits for it to exit.
async function killMidBody(server, port, method, location, headers, body, sent) {
  const url = new URL(location);
  await new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
      socket.write(`${method} ${url.pathname}${url.search} HTTP/1.1\r\nHost: 127.0.0.1\r\n${lines}\r\n`);
      socket.write(body.subarray(0, sent), () => setTimeout(() => {
        server.kill('SIGKILL');
        socket.destroy();
        resolve();
      }, 200));
    });
    socket.on('error', () => {});
  });
  await new Promise((r) => server.once('exit', r));
}

test('kill -9 during a 256 MiB chunked push loses nothing and leaves nothing visible', { skip: !BIN && 'PIER_BIN not set', timeout: 600_000 }, async () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'pier-crash-'));
  const { port, lib } = await registryClient();
  let server = await startServer(dataDir, port);
  try {
    // An image pushed before the crash.
    const repo = lib.repoName('crash');
    const image = await lib.makeImage(repo, { layers: 2 });
    const before = await lib.pushManifest(repo, 'before', image, lib.MT.ociManifest);

    const whole = createHash('sha256');
    for (let i = 0; i < TOTAL / CHUNK; i++) whole.update(chunkAt(i));
    const digest = `sha256:${whole.digest('hex')}`;

    const session = await lib.startUpload(repo);
    let location = session.location;
    const committedChunks = 6;
    for (let i = 0; i < committedChunks; i++) {
      const res = await lib.patchChunk(location, chunkAt(i), i * CHUNK);
      lib.assertStatus(res, 202);
      location = lib.resolveLocation(res.headers.get('location'), location);
    }
    // Start the next chunk, send half of it, and kill the server mid-body.
    const partial = chunkAt(committedChunks);
    const headers = {
      'Content-Type': 'application/octet-stream',
      'Content-Length': CHUNK,
      'Content-Range': `${committedChunks * CHUNK}-${(committedChunks + 1) * CHUNK - 1}`,
    };
    await killMidBody(server, port, 'PATCH', location, headers, partial, CHUNK / 2);

    server = await startServer(dataDir, port);

    // What was pushed before is intact.
    const got = await lib.getManifest(repo, 'before');
    lib.assertStatus(got, 200);
    assert.equal(got.headers.get('docker-content-digest'), before.digest);
    for (const layer of image.layers) {
      const blob = await lib.request('GET', `/v2/${repo}/blobs/${layer.digest}`);
      lib.assertStatus(blob, 200);
      assert.equal(lib.digestOf(blob.body), layer.digest);
    }
    // The partial blob is not visible.
    lib.assertStatus(await lib.request('HEAD', `/v2/${repo}/blobs/${digest}`), 404);

    // The session survived with the progress of the completed chunks.
    const status = await lib.getUploadStatus(location);
    lib.assertStatus(status, 204);
    assert.equal(status.headers.get('range'), `0-${committedChunks * CHUNK - 1}`, 'resume point is the last committed chunk');
    for (let i = committedChunks; i < TOTAL / CHUNK; i++) {
      const res = await lib.patchChunk(location, chunkAt(i), i * CHUNK);
      lib.assertStatus(res, 202);
      location = lib.resolveLocation(res.headers.get('location'), location);
    }
    lib.assertStatus(await lib.finishUpload(location, digest), 201);

    // The resumed blob reads back whole and right.
    const res = await fetch(`${process.env.PIER_URL}/v2/${repo}/blobs/${digest}`);
    assert.equal(res.status, 200);
    const check = createHash('sha256');
    let length = 0;
    for await (const piece of res.body) {
      check.update(piece);
      length += piece.length;
    }
    assert.equal(length, TOTAL);
    assert.equal(`sha256:${check.digest('hex')}`, digest);

    // Starting the push again from scratch (as most clients do) works too.
    const other = lib.repoName('crash-retry');
    let again = (await lib.startUpload(other)).location;
    for (let i = 0; i < TOTAL / CHUNK; i++) {
      const r = await lib.patchChunk(again, chunkAt(i), i * CHUNK);
      lib.assertStatus(r, 202);
      again = lib.resolveLocation(r.headers.get('location'), again);
    }
    lib.assertStatus(await lib.finishUpload(again, digest), 201);
    lib.assertStatus(await lib.request('HEAD', `/v2/${other}/blobs/${digest}`), 200);
  } finally {
    await stopServer(server);
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('kill -9 during and after the one PATCH of a small layer: the push finishes, right', { skip: !BIN && 'PIER_BIN not set', timeout: 120_000 }, async () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'pier-crash-small-'));
  const { port, lib } = await registryClient();
  let server = await startServer(dataDir, port);
  try {
    const repo = lib.repoName('crash-small');
    const layer = chunkAt(99).subarray(0, 300 * 1024);
    const digest = lib.sha256(layer);
    const session = await lib.startUpload(repo);
    const headers = { 'Content-Type': 'application/octet-stream', 'Content-Length': layer.length };
    await killMidBody(server, port, 'PATCH', session.location, headers, layer, layer.length / 2);
    server = await startServer(dataDir, port);
    const status = await lib.getUploadStatus(session.location);
    lib.assertStatus(status, 204, 'the session outlives a PATCH killed halfway');
    assert.equal(status.headers.get('range'), '0-0', 'and holds none of its bytes');

    const patched = await lib.patchChunk(session.location, layer, 0);
    lib.assertStatus(patched, 202, 'the PATCH sent again');
    const location = lib.resolveLocation(patched.headers.get('location'), session.location);
    server.kill('SIGKILL');
    await new Promise((r) => server.once('exit', r));
    server = await startServer(dataDir, port);
    lib.assertStatus(await lib.request('HEAD', `/v2/${repo}/blobs/${digest}`), 404, 'not visible before the PUT');
    const resumed = await lib.getUploadStatus(location);
    lib.assertStatus(resumed, 204, 'the session outlives a kill after its PATCH');
    assert.equal(resumed.headers.get('range'), `0-${layer.length - 1}`);
    lib.assertStatus(await lib.finishUpload(location, digest), 201);
    const pulled = await lib.request('GET', `/v2/${repo}/blobs/${digest}`);
    lib.assertStatus(pulled, 200);
    assert.ok(pulled.body.equals(layer), 'the layer reads back whole and right');
  } finally {
    await stopServer(server);
    rmSync(dataDir, { recursive: true, force: true });
  }
});
