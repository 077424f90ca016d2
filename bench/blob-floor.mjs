// bench/blob-floor.mjs: how fast workerd can answer a 1 MiB GET at all on
// this machine, beside the registries' blob GETs (issue 15's "blob GET hit"
// row). A Worker answering a constant 1 MiB buffer (bench/floor-worker.js) is
// the floor: no storage, no registry code. Each registry gets one 1 MiB blob,
// read three times first (pier keeps a blob in its isolate's memory from the
// second read on), then wrk loads each target on one connection, in turns
// (the order rotating each repetition). One blob and a client in C, so the
// figures are close to the servers' own (the loadgen rows read 50 blobs, not
// all of which fit pier's memory budget); one GET per target checks the digest.
// Prints one markdown table.
//
// Usage: node bench/blob-floor.mjs --wrk PATH [--duration S] [--reps N] [--pull-as NAME=USER:PASSWORD]...
//                                  floor=URL NAME=URL...
//   floor=URL        the floor Worker
//   NAME=URL         a registry (http://user:password@host:port for Basic
//                    auth); the blob goes to its bench/floor repository; a
//                    second registry is the one the first is divided by
//   --pull-as        Basic credentials of that registry's GETs instead of its URL's
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    wrk: { type: 'string' },
    duration: { type: 'string', default: '3' },
    reps: { type: 'string', default: '3' },
    'pull-as': { type: 'string', multiple: true, default: [] },
  },
});
const fail = (message) => {
  console.error(`blob-floor: ${message}`);
  process.exit(1);
};
if (!options.wrk) fail('--wrk PATH is needed');
const basic = (credentials) => `Basic ${Buffer.from(credentials).toString('base64')}`;
const pullers = new Map(options['pull-as'].map((spec) => {
  const at = spec.indexOf('=');
  return [spec.slice(0, at), basic(spec.slice(at + 1))];
}));

const targets = positionals.map((spec) => {
  const at = spec.indexOf('=');
  if (at < 1) fail(`${spec}: expected NAME=URL`);
  const url = new URL(spec.slice(at + 1));
  const name = spec.slice(0, at);
  const push = url.username ? basic(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`) : undefined;
  url.username = url.password = '';
  return { name, base: url.href.replace(/\/$/, ''), push, pull: pullers.get(name) ?? push };
});
const floor = targets.find((t) => t.name === 'floor') ?? fail('floor=URL is needed');

async function call(method, url, authorization, body) {
  const res = await fetch(url, {
    method,
    body,
    redirect: 'manual',
    headers: { ...(authorization && { authorization }), ...(body && { 'content-type': 'application/octet-stream' }) },
  });
  return { status: res.status, location: res.headers.get('location'), bytes: Buffer.from(await res.arrayBuffer()) };
}

const sha256 = (bytes) => `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;

// Pushes a fresh 1 MiB blob (POST, then PUT with the bytes) and reads it
// three times; sets target.path.
async function prepare(target) {
  if (target === floor) {
    target.path = '/';
    return;
  }
  const blob = crypto.randomBytes(1 << 20);
  const digest = sha256(blob);
  const started = await call('POST', `${target.base}/v2/bench/floor/blobs/uploads/`, target.push);
  if (started.status !== 202) fail(`${target.name}: POST answered ${started.status}`);
  const location = new URL(started.location, target.base);
  location.searchParams.set('digest', digest);
  const put = await call('PUT', location.href, target.push, blob);
  if (put.status !== 201) fail(`${target.name}: PUT answered ${put.status}`);
  target.path = `/v2/bench/floor/blobs/${digest}`;
  target.digest = digest;
  for (let read = 0; read < 3; read++) {
    await check(target);
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

async function check(target) {
  const got = await call('GET', target.base + target.path, target.pull);
  if (got.status !== 200 || got.bytes.length !== 1 << 20) fail(`${target.name}: GET answered ${got.status}, ${got.bytes.length} bytes`);
  if (target.digest && sha256(got.bytes) !== target.digest) fail(`${target.name}: GET answered other bytes`);
}

function wrk(target) {
  const args = ['-c1', '-t1', `-d${options.duration}s`, ...(target.pull ? ['-H', `authorization: ${target.pull}`] : [])];
  const out = execFileSync(options.wrk, [...args, target.base + target.path], { encoding: 'utf8' });
  const rate = /Requests\/sec:\s+([\d.]+)/.exec(out);
  if (!rate || /Non-2xx/.test(out)) fail(`${target.name}: wrk said ${out}`);
  return Number(rate[1]);
}

for (const target of targets) await prepare(target);
const rates = new Map(targets.map((t) => [t.name, []]));
const reps = Number(options.reps);
for (let rep = 0; rep < reps; rep++) {
  const order = targets.map((_, i) => targets[(i + rep) % targets.length]);
  for (const target of order) rates.get(target.name).push(wrk(target));
}
for (const target of targets) await check(target);

const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1];
const floorRate = median(rates.get('floor'));
// The second registry named is the one the first is divided by.
const peer = targets.filter((t) => t !== floor)[1];
const peerRate = peer && median(rates.get(peer.name));
console.log(`| target | GET 1 MiB req/s (median of ${reps}) | of the floor |${peer ? ` / ${peer.name} |` : ''}`);
console.log(`|---|---:|---:|${peer ? '---:|' : ''}`);
for (const target of targets) {
  const rate = median(rates.get(target.name));
  const what = target === floor ? 'floor: a Worker answering a constant 1 MiB buffer' : `${target.name}: a blob read three times before`;
  const vsPeer = peer ? ` ${(rate / peerRate).toFixed(2)}x |` : '';
  console.log(`| ${what} | ${rate.toFixed(0)} | ${((100 * rate) / floorRate).toFixed(0)}% |${vsPeer}`);
}
