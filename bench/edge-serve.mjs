// bench/edge-serve.mjs: serves one Worker under Miniflare, workerd driven
// directly, for the edge benchmarks (issue 15). `wrangler dev` puts a proxy
// chain in front of workerd that caps every Worker near the same few hundred
// requests per second on this machine, so a benchmark under it measures the
// proxy; production has none. R2, KV and the Cache API are simulated on disk
// under the persist directory.
//
// Usage: node bench/edge-serve.mjs --script PATH --port N --persist DIR [options]
//   --script PATH          the Worker's ES module, bundled; every .wasm file
//                          beside it is given as a compiled module (wasm-bindgen's
//                          output imports ./index_bg.wasm)
//   --port N               listen on 127.0.0.1:N
//   --persist DIR          R2, KV and Cache API state
//   --config FILE          take bindings, vars, queues, compatibility date and
//                          flags from a wrangler config (its top level, or the
//                          environment --env names); the options below add to it
//   --env NAME             the config's environment
//   --r2 BINDING[=BUCKET]  an R2 bucket binding (repeatable)
//   --kv BINDING           a KV namespace binding (repeatable)
//   --compat-date DATE     compatibility date
//   --compat-flag FLAG     compatibility flag (repeatable)
//   --var NAME=VALUE       a var, passed as the string VALUE (JSON stays text,
//                          as in wrangler's [vars]); repeatable, last one wins
//   --inspector-port N     the V8 inspector of the Worker (bench/worker-cpu.mjs)
//   --storage-latency MS   delay every R2 and KV operation by MS milliseconds
//                          before it starts: a location far from the bucket,
//                          which the simulators (on this machine's disk) are not.
//                          The Cache API, the location's own, is not delayed.
// Prints "edge-serve: ready on http://127.0.0.1:N" once it answers; SIGTERM or
// SIGINT disposes of workerd and exits 0.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const modulesDir = process.env.PIER_NODE_MODULES ?? path.join(root, 'node_modules');

const usage = (message) => {
  console.error(`edge-serve: ${message} (usage: see the head of bench/edge-serve.mjs)`);
  process.exit(2);
};

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      script: { type: 'string' },
      port: { type: 'string' },
      persist: { type: 'string' },
      config: { type: 'string' },
      env: { type: 'string' },
      r2: { type: 'string', multiple: true, default: [] },
      kv: { type: 'string', multiple: true, default: [] },
      'compat-date': { type: 'string' },
      'compat-flag': { type: 'string', multiple: true, default: [] },
      var: { type: 'string', multiple: true, default: [] },
      'inspector-port': { type: 'string' },
      'storage-latency': { type: 'string' },
    },
  }));
} catch (error) {
  usage(error.message);
}
for (const required of ['script', 'port', 'persist']) {
  if (!args[required]) usage(`--${required} is required`);
}
const port = Number(args.port);
if (!Number.isInteger(port) || port <= 0) usage(`--port ${args.port} is not a port`);
const script = path.resolve(args.script);
if (!fs.existsSync(script)) usage(`no such script: ${script}`);
const persist = path.resolve(args.persist);
fs.mkdirSync(persist, { recursive: true });

const { Miniflare, Log, LogLevel, convertV4MiniflareOptions } = await import(path.join(modulesDir, 'miniflare/dist/src/index.js'));

// The config's worker options (wrangler resolves bindings, vars, queues and
// dates exactly as `wrangler dev` would), or nothing but defaults.
let fromConfig = { bindings: {}, r2Buckets: {}, kvNamespaces: {}, compatibilityFlags: [] };
if (args.config) {
  const { unstable_getMiniflareWorkerOptions } = await import(path.join(modulesDir, 'wrangler/wrangler-dist/cli.js'));
  fromConfig = unstable_getMiniflareWorkerOptions(path.resolve(args.config), args.env).workerOptions;
}

const pairs = (list, option) => list.map((item) => {
  const at = item.indexOf('=');
  if (at <= 0) usage(`--${option} ${item}: expected NAME=VALUE`);
  return [item.slice(0, at), item.slice(at + 1)];
});

const latencyMs = args['storage-latency'] === undefined ? 0 : Number(args['storage-latency']);
if (!Number.isFinite(latencyMs) || latencyMs < 0) usage(`--storage-latency ${args['storage-latency']} is not a number of milliseconds`);

// Listed, not discovered: Miniflare 5 cannot follow imports by wrangler's
// module rules, and a bundle (pier's glue, `wrangler deploy --dry-run`'s
// output) imports nothing else but its wasm.
const wasmModules = (dir) => fs.readdirSync(dir).filter((name) => name.endsWith('.wasm'))
  .map((name) => ({ type: 'CompiledWasm', path: path.join(dir, name) }));
let modules = [{ type: 'ESModule', path: script }, ...wasmModules(path.dirname(script))];

// The module list above replaces the config's module rules.
const { modulesRules: _rulesReplaced, ...configured } = fromConfig;
const r2Bindings = [...Object.keys(configured.r2Buckets ?? {}), ...args.r2.map((spec) => spec.split('=')[0])];
const kvBindings = [...Object.keys(configured.kvNamespaces ?? {}), ...args.kv];
if (latencyMs > 0) modules = farFromStorage(modules, [...r2Bindings, ...kvBindings]);
const compatibilityDate = args['compat-date'] ?? configured.compatibilityDate;
if (!compatibilityDate) usage('no compatibility date: pass --compat-date or a --config that has one');
const options = {
  ...configured,
  host: '127.0.0.1',
  port,
  scriptPath: modules[0].path,
  modules,
  modulesRoot: path.dirname(modules[0].path),
  compatibilityDate,
  compatibilityFlags: [...new Set([...(configured.compatibilityFlags ?? []), ...args['compat-flag']])],
  r2Buckets: {
    ...configured.r2Buckets,
    ...Object.fromEntries(args.r2.map((spec) => {
      const [binding, bucket] = spec.split('=');
      return [binding, { id: bucket || binding }];
    })),
  },
  kvNamespaces: { ...configured.kvNamespaces, ...Object.fromEntries(args.kv.map((binding) => [binding, { id: binding }])) },
  bindings: { ...configured.bindings, ...Object.fromEntries(pairs(args.var, 'var')) },
  // No cron runs by itself under Miniflare; none is wanted during a benchmark.
  cronTriggers: [],
  defaultPersistRoot: persist,
  r2Persist: path.join(persist, 'r2'),
  kvPersist: path.join(persist, 'kv'),
  cachePersist: path.join(persist, 'cache'),
  // Offline: the placeholder request.cf, not Cloudflare's.
  cf: false,
  log: new Log(LogLevel.WARN),
};
if (args['inspector-port']) options.inspectorPort = Number(args['inspector-port']);

/**
 * The Worker behind an entry module that hands it, for the bindings named,
 * objects whose every asynchronous method waits `latencyMs` first (and so do
 * the multipart uploads they return). Copies the Worker's modules beside the
 * entry, in the persist directory, so that `./index.js` resolves.
 */
function farFromStorage(workerModules, bindings) {
  const dir = path.join(persist, 'far-from-storage');
  fs.mkdirSync(dir, { recursive: true });
  const copied = workerModules.map((module) => {
    const to = path.join(dir, path.basename(module.path));
    fs.copyFileSync(module.path, to);
    return { ...module, path: to };
  });
  const entry = path.join(dir, 'far-entry.mjs');
  fs.writeFileSync(entry, `// Written by bench/edge-serve.mjs --storage-latency: see there.
import { WorkerEntrypoint } from 'cloudflare:workers';
import Worker from './${path.basename(script)}';

const LATENCY_MS = ${latencyMs};
const FAR = new Set(${JSON.stringify(bindings)});
const later = () => new Promise((resolve) => setTimeout(resolve, LATENCY_MS));

function far(target) {
  return new Proxy(target, {
    get(object, name) {
      const value = Reflect.get(object, name);
      if (typeof value !== 'function' || name === 'constructor') return value;
      if (name === 'resumeMultipartUpload') return (...args) => far(value.apply(object, args));
      return async (...args) => {
        await later();
        const result = await value.apply(object, args);
        return name === 'createMultipartUpload' ? far(result) : result;
      };
    },
  });
}

// One far view per bindings object, so a Worker that keeps what it read
// from its bindings (pier does) still sees the same object on every request.
const views = new WeakMap();
function farEnv(env) {
  let view = views.get(env);
  if (!view) {
    const wrapped = new Map();
    view = new Proxy(env, {
      get(object, name) {
        const value = Reflect.get(object, name);
        if (!FAR.has(name) || value == null) return value;
        if (!wrapped.has(name)) wrapped.set(name, far(value));
        return wrapped.get(name);
      },
    });
    views.set(env, view);
  }
  return view;
}

const inner = (self) => typeof Worker === 'function' ? new Worker(self.ctx, farEnv(self.env)) : null;
export default class extends WorkerEntrypoint {
  fetch(request) {
    const worker = inner(this);
    return worker ? worker.fetch(request) : Worker.fetch(request, farEnv(this.env), this.ctx);
  }
  scheduled(controller) {
    const worker = inner(this);
    return worker ? worker.scheduled(controller) : Worker.scheduled?.(controller, farEnv(this.env), this.ctx);
  }
  queue(batch) {
    const worker = inner(this);
    return worker ? worker.queue(batch) : Worker.queue?.(batch, farEnv(this.env), this.ctx);
  }
}
`);
  return [{ type: 'ESModule', path: entry }, ...copied];
}

const miniflare = new Miniflare(convertV4MiniflareOptions(options));
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await miniflare.dispose();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
const url = await miniflare.ready;
console.log(`edge-serve: ready on ${url.origin}`);
