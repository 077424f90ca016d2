// Durability of the native server's data directory, watched at the system
// calls: `pier serve` runs under strace while a client pushes a small blob
// (POST + PUT), a chunked one (POST, PATCH, PATCH, PUT), one as docker
// pushes a small layer (POST, one PATCH, an empty PUT: the PATCH writes the
// object the blob becomes) and a manifest.
// Upload states and parts are not flushed one by one: a state saved under
// another boot is refused (core/tests/uploads.rs), and the parts are flushed
// together before the blob moves into place. A push
// may be acknowledged only once what it wrote is on the disk, in the order a
// power cut cannot tear: the blob's data flushed before it is moved into
// place, its directory entry flushed, and only then its record; the record,
// the repository's link and the manifest flushed before the client hears
// 201. With `--fsync false` nothing is flushed (the switch works both ways).
//
// Needs PIER_BIN and strace (scripts/install-deps.sh core installs it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { freePort } from '../lib/free-port.mjs';
import os from 'node:os';
import path from 'node:path';

const BIN = process.env.PIER_BIN;
const MiB = 1 << 20;


const sha256 = (bytes) => 'sha256:' + createHash('sha256').update(bytes).digest('hex');

/// Runs `pier serve` under strace with `extra` flags, lets `work(base)` push,
/// stops the server and returns the trace's lines.
async function traced(extra, work) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pier-durability-'));
  const port = await freePort();
  const trace = path.join(dir, 'trace');
  const pidFile = path.join(dir, 'pid');
  // strace outlives a signal sent to it; pier's own pid (the shell's, which
  // execs it) lets the test stop pier, and strace ends with it.
  const child = spawn('strace', ['-f', '-y', '-s', '16', '-o', trace,
    '-e', 'trace=fsync,fdatasync,rename,renameat,renameat2,link,linkat,write,writev,sendto,sendmsg,pwrite64',
    'sh', '-c', 'echo $$ > "$0"; exec "$@"', pidFile,
    BIN, 'serve', '--data-dir', path.join(dir, 'data'), '--listen', `127.0.0.1:${port}`, ...extra],
  { stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise((r) => child.once('exit', r));
  const base = `http://127.0.0.1:${port}`;
  try {
    let up = false;
    for (let i = 0; i < 150 && !up; i++) {
      try { up = (await fetch(`${base}/v2/`)).ok; } catch { await new Promise((r) => setTimeout(r, 100)); }
    }
    assert.ok(up, 'pier did not start under strace');
    await work(base);
  } finally {
    try { process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGTERM'); } catch { child.kill('SIGKILL'); }
    await exited;
  }
  const lines = readFileSync(trace, 'utf8').split('\n');
  rmSync(dir, { recursive: true, force: true });
  return lines;
}

async function pushWhole(base, repo, bytes) {
  const digest = sha256(bytes);
  const post = await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  assert.equal(post.status, 202);
  const target = new URL(post.headers.get('location'), base);
  target.searchParams.set('digest', digest);
  const put = await fetch(target, { method: 'PUT', body: bytes });
  assert.equal(put.status, 201, await put.text());
  return digest;
}

async function pushChunked(base, repo, bytes, chunk) {
  const digest = sha256(bytes);
  const post = await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  let location = post.headers.get('location');
  for (let start = 0; start < bytes.length; start += chunk) {
    const piece = bytes.subarray(start, Math.min(start + chunk, bytes.length));
    const res = await fetch(new URL(location, base), {
      method: 'PATCH', body: piece,
      headers: { 'content-type': 'application/octet-stream', 'content-range': `${start}-${start + piece.length - 1}` },
    });
    assert.equal(res.status, 202, await res.text());
    location = res.headers.get('location');
  }
  const put = await fetch(new URL(location, base).href + (location.includes('?') ? '&' : '?') + `digest=${digest}`, { method: 'PUT' });
  assert.equal(put.status, 201, await put.text());
  return digest;
}

async function pushAll(base) {
  const small = Buffer.alloc(MiB, 7);
  const large = Buffer.alloc(3 * MiB + 5, 9);
  const smallDigest = await pushWhole(base, 'durable/app', small);
  const largeDigest = await pushChunked(base, 'durable/app', large, 2 * MiB);
  const layer = Buffer.alloc(MiB / 2, 3);
  const layerDigest = await pushChunked(base, 'durable/app', layer, layer.length);
  const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
  const configDigest = await pushWhole(base, 'durable/app', config);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: [smallDigest, largeDigest, layerDigest].map((digest, i) => ({
      mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size: [small, large, layer][i].length })),
  }));
  const put = await fetch(`${base}/v2/durable/app/manifests/v1`, {
    method: 'PUT', body: manifest, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(put.status, 201, await put.text());
  return { blobs: [smallDigest, largeDigest, layerDigest, configDigest] };
}

// The calls of a trace, each as one line `PID syscall(args) = result` (paths
// shown by -y as <...>) placed where it returned: a call another thread
// interrupted is split by strace into `<unfinished ...>` and `<... resumed>`.
function calls(lines) {
  const pending = new Map();
  const joined = [];
  for (const line of lines) {
    const unfinished = line.match(/^(\d+) +(.*) <unfinished \.\.\.>$/);
    const resumed = line.match(/^(\d+) +<\.\.\. \w+ resumed>(.*)$/);
    if (unfinished) {
      pending.set(unfinished[1], `${unfinished[1]} ${unfinished[2]}`);
    } else if (resumed && pending.has(resumed[1])) {
      joined.push(pending.get(resumed[1]) + resumed[2]);
      pending.delete(resumed[1]);
    } else if (/^\d+ +\w+\(/.test(line)) {
      joined.push(line);
    }
  }
  return joined.map((line, index) => ({ line, index }));
}
const isFlush = (line) => /^\d+ +f(data)?sync\(\d+<[^>]*>\) += 0/.test(line);
const flushedPath = (line) => line.match(/f(?:data)?sync\(\d+<([^>]*)>/)?.[1];
// The destination of a rename or link: the last quoted path argument.
const movedTo = (line) => /^\d+ +(rename|renameat2?|link|linkat)\(/.test(line) && / = 0$/.test(line)
  ? [...line.matchAll(/"([^"]*)"/g)].pop()?.[1] : undefined;
const acknowledgements = (trace) => trace.filter(({ line }) => /(write|writev|sendto|sendmsg)\(\d+<(TCP|socket)[^>]*>.*HTTP\/1\.1 201/.test(line));

test('an acknowledged push is on the disk, data before record', { skip: !BIN && 'PIER_BIN is not set' }, async () => {
  assert.equal(spawnSync('strace', ['-V']).status, 0, 'strace is not installed');
  let pushed;
  const trace = calls(await traced([], async (base) => { pushed = await pushAll(base); }));
  const acks = acknowledgements(trace);
  assert.ok(acks.length >= 4, `every 201 is seen in the trace (saw ${acks.length})`);
  const flushedBefore = (target, pos) => trace.some(({ line, index }) => index < pos && isFlush(line) && flushedPath(line) === target);
  const moves = trace.filter(({ line }) => movedTo(line) !== undefined).map(({ line, index }) => ({ to: movedTo(line), index, line }));
  for (const digest of pushed.blobs) {
    const hex = digest.slice('sha256:'.length);
    const record = moves.find(({ to }) => to.endsWith(`/blobs/sha256/${hex}`));
    assert.ok(record, `the record of ${digest} was written`);
    const ack = acks.find(({ index }) => index > record.index);
    assert.ok(ack, `a 201 follows the record of ${digest}`);
    // The record and its directory entry are flushed before the 201.
    assert.ok(trace.some(({ line, index }) => index > record.index && index < ack.index && isFlush(line)
      && flushedPath(line) === path.dirname(record.to)), `the record's directory is flushed before the 201 (${digest})`);
    // The data the record names was flushed and moved into place before it.
    // Data objects are `data/<id>` under the data directory (itself `data`).
    const data = moves.filter(({ to, index }) => /\/data\/data\/[0-9a-f]+$/.test(to) && index < record.index).pop();
    assert.ok(data, `the data of ${digest} was moved into place before its record`);
    const sourceFlushed = trace.some(({ line, index }) => index < data.index && isFlush(line)
      && /\/(\.tmp|\.multipart)\//.test(flushedPath(line)));
    assert.ok(sourceFlushed, `the data of ${digest} was flushed before it was moved`);
    assert.ok(flushedBefore(path.dirname(data.to), record.index), `the data's directory entry is flushed before the record (${digest})`);
    // The link is written at the same time as the record (docs/gc.md, "links"): in either order.
    const link = moves.find(({ to, index }) => to.endsWith(`/_layers/sha256/${hex}`) && index > data.index);
    assert.ok(link && link.index < ack.index && flushedBefore(path.dirname(link.to), ack.index),
      `the repository's link to ${digest} is on the disk before the 201`);
  }
  // Parts are not flushed one by one: the whole file is, before it moves.
  const partWrites = trace.filter(({ line }) => /pwrite64\(\d+<[^>]*\/\.multipart\//.test(line));
  assert.ok(partWrites.length >= 2, `the chunked push wrote parts (saw ${partWrites.length})`);
  // Upload states are not flushed (a lost state loses only its session).
  const stateMoves = moves.filter(({ to }) => /\/uploads\/[^/]+\/s\//.test(to));
  assert.ok(stateMoves.length >= 3, 'the pushes saved upload states');
  for (const state of stateMoves) {
    assert.ok(!trace.some(({ line }) => isFlush(line) && flushedPath(line) === path.dirname(state.to)),
      `the directory of ${state.to} is not flushed`);
  }
  const manifestLink = moves.filter(({ to }) => /\/_manifests\//.test(to) || /\/_tags\//.test(to)).pop();
  assert.ok(manifestLink, 'the manifest push wrote its files');
  assert.ok(flushedBefore(path.dirname(manifestLink.to), acks[acks.length - 1].index),
    'the manifest is on the disk before its 201');
});

test('--fsync false flushes nothing', { skip: !BIN && 'PIER_BIN is not set' }, async () => {
  const trace = calls(await traced(['--fsync', 'false'], pushAll));
  assert.ok(acknowledgements(trace).length >= 4, 'the pushes were acknowledged');
  const flushes = trace.filter(({ line }) => isFlush(line));
  assert.deepEqual(flushes.map(({ line }) => line), [], 'no flush with --fsync false');
});
