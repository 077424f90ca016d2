// bench/token-latency.mjs: what a login costs at pier's token endpoint, on
// any deployment set up by tests/auth/make-config.sh (native or the Worker).
//
// For each kind of caller it sends N sequential `GET /token` requests (one
// connection, keep-alive) and prints the median and 90th-percentile latency;
// given the server's process group it also reads the CPU time (user + system,
// from /proc) the group's processes spent over those requests, per request.
// A password login minus a robot-token login is the CPU of one password
// check (Argon2id with the parameters of the user's hash), since everything
// else the two requests do is the same.
//
// Usage: PIER_URL=http://127.0.0.1:8787 PIER_AUTH_CREDENTIALS=cfg/credentials.json \
//          node bench/token-latency.mjs [--n 40] [--pgid PGID] [--only workerd]
//   --n N        requests per kind (default 40), after 3 unmeasured warm-up requests
//   --pgid PGID  process group of the server, for CPU time (e.g. the group of
//                scripts/edge-dev.sh); without it only latency is measured
//   --only NAME  count only processes of that name in the group (workerd: the
//                Worker's runtime, not wrangler's node process)
// Output: one line per kind; a last line with the password check's CPU.

import { readFileSync, readdirSync } from 'node:fs';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? args[at + 1] : fallback;
};
const N = Number(option('n', 40));
const PGID = option('pgid', null);
const ONLY = option('only', null);
const BASE = (process.env.PIER_URL || 'http://127.0.0.1:5000').replace(/\/+$/, '');
const CREDENTIALS = JSON.parse(readFileSync(process.env.PIER_AUTH_CREDENTIALS, 'utf8'));
const TICKS_PER_SECOND = 100; // USER_HZ on Linux

// CPU seconds used so far by the processes of the group (or those named ONLY).
function groupCpuSeconds() {
  let ticks = 0;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let stat;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After the name: state(0) ppid(1) pgrp(2) ... utime(11) stime(12).
    if (fields[2] !== PGID || (ONLY && name !== ONLY)) continue;
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / TICKS_PER_SECOND;
}

function basic(role) {
  const { username, password } = CREDENTIALS[role];
  return 'Basic ' + Buffer.from(`${username}:${password}`).toString('base64');
}

async function login(authorization) {
  const headers = authorization ? { authorization } : {};
  const res = await fetch(`${BASE}/token?service=pier&scope=repository:sandbox/bench:pull`, { headers });
  if (res.status !== 200) throw new Error(`GET /token: ${res.status} ${await res.text()}`);
  await res.arrayBuffer();
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function measure(label, authorization) {
  for (let i = 0; i < 3; i++) await login(authorization);
  const cpuBefore = PGID ? groupCpuSeconds() : 0;
  const times = [];
  for (let i = 0; i < N; i++) {
    const started = performance.now();
    await login(authorization);
    times.push(performance.now() - started);
  }
  const cpuMs = PGID ? ((groupCpuSeconds() - cpuBefore) * 1000) / N : null;
  times.sort((a, b) => a - b);
  const line = `${label}: median ${percentile(times, 50).toFixed(1)} ms, p90 ${percentile(times, 90).toFixed(1)} ms` +
    (cpuMs === null ? '' : `, CPU ${cpuMs.toFixed(1)} ms per request`) + ` (${N} requests)`;
  console.log(line);
  return cpuMs;
}

await measure('token, anonymous', null);
const robot = await measure('token, robot token (Basic)', basic('ci'));
const password = await measure('token, user password (Basic, Argon2id)', basic('sandbox'));
if (PGID) {
  console.log(`password check: about ${(password - robot).toFixed(1)} ms of CPU (password login minus robot login)`);
}
