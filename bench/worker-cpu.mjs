// bench/worker-cpu.mjs: CPU time per request of a Worker's own isolate, per
// kind of request (issue 15: "measure CPU per request for the Worker's own
// code, not just the process tree"). The process tree's CPU also counts
// workerd's HTTP handling, Miniflare's entry Worker and the R2/KV/Cache
// simulators; this counts only the isolate that runs the Worker. For each
// Worker served by bench/edge-serve.mjs with --inspector-port, it pushes a small
// image, then for each kind of request runs V8's sampling profiler over the
// inspector (Chrome DevTools Protocol, 100 µs interval) around N sequential
// requests on one kept-alive connection, and turns the samples taken while the
// isolate worked into time (see tickWindow below), divided by N. Prints one
// markdown table. Profiling slows the isolate down a little: the figures are
// upper bounds, to compare with each other.
//
// Usage: node bench/worker-cpu.mjs [--n N] [--blob-n N] [--push-n N] [--profiles DIR] NAME=URL@INSPECTOR_PORT...
//   NAME=URL@PORT   a Worker: its label, base URL (http://user:password@host:port
//                   for Basic auth) and inspector port; the first is the one the
//                   ratio column divides
//   --n N           requests per kind (default 200)
//   --blob-n N      1 MiB blob GETs (default 100)
//   --push-n N      1 MiB pushes as docker makes them, three requests each (default 30)
//   --profiles DIR  also write each profile, NAME-KIND.cpuprofile (DevTools opens them)
//   --pull-as NAME=USER:PASSWORD  Basic credentials of that Worker's GETs instead
//                   of its URL's (a pull-only identity; repeatable)
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const modulesDir = process.env.PIER_NODE_MODULES ?? path.join(root, 'node_modules');
const { WebSocket } = await import(path.join(modulesDir, 'ws/wrapper.mjs'));

const SAMPLING_INTERVAL_US = 100;
const WARM_UP_REQUESTS = 20;
const REPOSITORY = 'bench/worker-cpu';
const MANIFEST_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, ' +
  'application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json';

const fail = (message) => {
  console.error(`worker-cpu: ${message}`);
  process.exit(1);
};

const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    n: { type: 'string', default: '200' },
    'blob-n': { type: 'string', default: '100' },
    'push-n': { type: 'string', default: '30' },
    profiles: { type: 'string' },
    'pull-as': { type: 'string', multiple: true, default: [] },
  },
});
const basic = (credentials) => `Basic ${Buffer.from(credentials).toString('base64')}`;
const pullers = new Map(options['pull-as'].map((spec) => {
  const at = spec.indexOf('=');
  if (at < 1) fail(`--pull-as ${spec}: expected NAME=USER:PASSWORD`);
  return [spec.slice(0, at), basic(spec.slice(at + 1))];
}));
const workers = positionals.map((spec) => {
  const match = /^([^=]+)=(.+)@(\d+)$/.exec(spec);
  if (!match) fail(`${spec}: expected NAME=URL@INSPECTOR_PORT`);
  const url = new URL(match[2]);
  const headers = {};
  if (url.username) {
    const credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
    headers.authorization = basic(credentials);
  }
  const pullHeaders = pullers.has(match[1]) ? { authorization: pullers.get(match[1]) } : {};
  return { name: match[1], base: url.origin, headers, pullHeaders, inspectorPort: Number(match[3]) };
});
if (workers.length === 0) fail('no Worker given (NAME=URL@INSPECTOR_PORT)');

// One connection per Worker, kept alive, as a client pulling an image has.
// node:http, not fetch: undici reads the peer's R2-streamed blob bodies ten
// times slower than curl or Go do.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

// request(worker, method, path, init): the response's status, headers and body.
function request(worker, method, target, { body, headers = {}, expect } = {}) {
  const url = new URL(target, worker.base);
  return new Promise((resolve, reject) => {
    const outgoing = http.request(url, { method, agent, headers: { ...worker.headers, ...headers } }, (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('end', () => {
        const bytes = Buffer.concat(chunks);
        if (expect !== undefined && response.statusCode !== expect) {
          fail(`${worker.name}: ${method} ${url.pathname} answered ${response.statusCode}, not ${expect}: ${bytes.toString('utf8', 0, 200)}`);
        }
        resolve({ status: response.statusCode, headers: response.headers, bytes });
      });
      response.on('error', reject);
    });
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}

const sha256 = (bytes) => `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;

async function pushBlob(worker, bytes) {
  const { headers } = await request(worker, 'POST', `/v2/${REPOSITORY}/blobs/uploads/`, { expect: 202 });
  const upload = new URL(headers.location, worker.base);
  upload.searchParams.set('digest', sha256(bytes));
  await request(worker, 'PUT', upload.pathname + upload.search, {
    body: bytes, headers: { 'content-type': 'application/octet-stream' }, expect: 201,
  });
  return sha256(bytes);
}

// seed(worker): pushes an image (config, one 1 MiB layer, OCI manifest) under a
// fresh tag; returns the paths of the requests measured.
async function seed(worker) {
  const tag = `cpu-${Date.now()}`;
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config: { Labels: { tag } } }));
  const layer = crypto.randomBytes(1 << 20);
  const configDigest = await pushBlob(worker, config);
  const layerDigest = await pushBlob(worker, layer);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigest, size: layer.length }],
  }));
  await request(worker, 'PUT', `/v2/${REPOSITORY}/manifests/${tag}`, {
    body: manifest, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }, expect: 201,
  });
  const pull = worker.pullHeaders;
  const manifestGet = { headers: { accept: MANIFEST_ACCEPT, ...pull }, expect: 200 };
  const get = (target, init) => () => request(worker, 'GET', target, init);
  return [
    { kind: 'GET /v2/', once: get('/v2/', { headers: pull, expect: 200 }), n: Number(options.n) },
    { kind: 'manifest GET by tag', once: get(`/v2/${REPOSITORY}/manifests/${tag}`, manifestGet), n: Number(options.n) },
    { kind: 'manifest GET by digest', once: get(`/v2/${REPOSITORY}/manifests/${sha256(manifest)}`, manifestGet), n: Number(options.n) },
    { kind: 'blob GET 1 MiB, read before', once: get(`/v2/${REPOSITORY}/blobs/${layerDigest}`, { headers: pull, expect: 200 }), n: Number(options['blob-n']) },
    { kind: 'push of a new 1 MiB blob as docker makes it (POST, PATCH, PUT)', once: () => pushAsDocker(worker, crypto.randomBytes(1 << 20)), n: Number(options['push-n']) },
  ];
}

// pushAsDocker(worker, bytes): POST, the whole blob in one PATCH, an empty PUT.
async function pushAsDocker(worker, bytes) {
  const started = await request(worker, 'POST', `/v2/${REPOSITORY}/blobs/uploads/`, { expect: 202 });
  const patched = await request(worker, 'PATCH', new URL(started.headers.location, worker.base).href, {
    body: bytes, headers: { 'content-type': 'application/octet-stream' }, expect: 202,
  });
  const upload = new URL(patched.headers.location, worker.base);
  upload.searchParams.set('digest', sha256(bytes));
  await request(worker, 'PUT', upload.href, { expect: 201 });
}

// inspect(port): a DevTools Protocol session on the Worker's own isolate
// (Miniflare's target "core:user:<name>"; the others are its simulators).
async function inspect(port) {
  const targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
  const target = targets.find((t) => t.id.startsWith('core:user:'));
  if (!target) fail(`no user Worker among the inspector's targets on port ${port}: ${targets.map((t) => t.id).join(', ')}`);
  const socket = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  let lastId = 0;
  const pending = new Map();
  socket.on('close', () => {
    for (const waiter of pending.values()) waiter.reject(new Error(`${waiter.method}: the inspector closed the connection`));
    pending.clear();
  });
  socket.on('message', (data) => {
    const message = JSON.parse(data);
    const waiter = pending.get(message.id);
    if (!waiter) return;
    pending.delete(message.id);
    if (message.error) waiter.reject(new Error(`${waiter.method}: ${message.error.message}`));
    else waiter.resolve(message.result);
  });
  const call = (method, params = {}) => new Promise((resolve, reject) => {
    const id = ++lastId;
    pending.set(id, { method, resolve, reject });
    socket.send(JSON.stringify({ id, method, params }));
  });
  return { call, close: () => socket.close() };
}

// The sampler's own intervals: V8 samples a Worker's isolate only while its
// thread holds the isolate's lock, and workerd lets it go at every await (R2,
// KV, the network) and runs the simulators' isolates meanwhile. So a profile's
// time deltas are the sampler's tick where the isolate ran through, and
// multiples of it across a wait; the time of a wait lands on the next sample.
// Each sample taken while the isolate worked thus stands for one tick (a tick
// lands in a stretch of work with the probability length/tick), and the tick
// is the typical delta between back-to-back samples: the median of the deltas
// within 0.5..2.5 times the requested interval, pooled over every profile of
// the run (a Worker with short stretches has few of its own).
const tickWindow = (delta) => delta >= SAMPLING_INTERVAL_US / 2 && delta <= SAMPLING_INTERVAL_US * 2.5;

// workSamples(profile): the samples taken while the isolate worked (all but
// "(idle)": JavaScript, wasm, garbage collection, the runtime's own calls).
function workSamples(profile) {
  const idleNodes = new Set(profile.nodes.filter((node) => node.callFrame.functionName === '(idle)').map((node) => node.id));
  return profile.samples.filter((node) => !idleNodes.has(node)).length;
}

const tickDeltas = [];

async function measure(worker) {
  const kinds = await seed(worker);
  for (const { once } of kinds) {
    for (let i = 0; i < WARM_UP_REQUESTS; i++) await once();
  }
  const session = await inspect(worker.inspectorPort);
  await session.call('Profiler.enable');
  await session.call('Profiler.setSamplingInterval', { interval: SAMPLING_INTERVAL_US });
  const perKind = new Map();
  for (const { kind, once, n } of kinds) {
    await session.call('Profiler.start');
    for (let i = 0; i < n; i++) await once();
    const { profile } = await session.call('Profiler.stop');
    perKind.set(kind, { n, samples: workSamples(profile) });
    tickDeltas.push(...profile.timeDeltas.filter(tickWindow));
    if (options.profiles) {
      fs.mkdirSync(options.profiles, { recursive: true });
      const file = `${worker.name}-${kind.replace(/[^a-z0-9]+/gi, '-').replace(/-$/, '')}.cpuprofile`;
      fs.writeFileSync(path.join(options.profiles, file), JSON.stringify(profile));
    }
  }
  await session.call('Profiler.disable');
  session.close();
  return perKind;
}

const results = [];
for (const worker of workers) results.push(await measure(worker));
agent.destroy();
if (tickDeltas.length < 50) fail(`only ${tickDeltas.length} back-to-back samples: too few to know the sampler's tick`);
tickDeltas.sort((a, b) => a - b);
const tickMicros = tickDeltas[Math.floor(tickDeltas.length / 2)];

const [first, ...others] = workers;
const header = ['request', 'n', ...workers.map((w) => `${w.name} ms/request`), ...others.map((w) => `${first.name} / ${w.name}`)];
console.log(`| ${header.join(' | ')} |`);
console.log(`|---|${header.slice(1).map(() => '---:').join('|')}|`);
for (const [kind, { n }] of results[0]) {
  const figures = results.map((perKind) => (perKind.get(kind).samples * tickMicros) / 1000 / perKind.get(kind).n);
  const ratios = figures.slice(1).map((figure) => `${(figures[0] / figure).toFixed(2)}x`);
  console.log(`| ${[kind, n, ...figures.map((f) => f.toFixed(3)), ...ratios].join(' | ')} |`);
}
console.log('');
console.log(`Sampler tick: ${tickMicros} µs measured (${SAMPLING_INTERVAL_US} µs requested), from ${tickDeltas.length} back-to-back samples.`);
