// Login load for tests/security/parts/auth.sh: what a password guesser or a
// crowd of clients with valid Basic credentials does to a registry.
//
//   node login-load.mjs burst URL N AUTHORIZATION [CLIENT_IP]
//     N requests of GET URL with that Authorization header, all at once
//     (one connection each); prints "STATUS COUNT" per status.
//   node login-load.mjs health BASE M AUTHORIZATION
//     M logins (GET BASE/token with that header) at once and, while any is
//     still in flight, GET BASE/healthz one after another; prints
//     "logins=M ok=K first=F healthz=H": F health checks answered before
//     the first login finished (while every login was still hashing), H
//     while any was. A server whose request threads hash passwords answers
//     next to none before the first hash ends (every thread is in one); one
//     that hashes elsewhere answers throughout.
// CLIENT_IP: sent as CF-Connecting-IP (the edge Worker's client address).
import http from 'node:http';

const [mode, url, count, authorization, clientIp] = process.argv.slice(2);

function get(target, headers) {
  return new Promise((resolve) => {
    const req = http.get(target, { headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', () => resolve(0));
  });
}

const headers = { authorization };
if (clientIp) headers['cf-connecting-ip'] = clientIp;

if (mode === 'burst') {
  const statuses = await Promise.all(Array.from({ length: Number(count) }, () => get(url, headers)));
  const counts = {};
  for (const status of statuses) counts[status] = (counts[status] || 0) + 1;
  for (const [status, n] of Object.entries(counts)) console.log(`${status} ${n}`);
} else if (mode === 'health') {
  const base = url.replace(/\/$/, '');
  let inFlight = Number(count);
  let ok = 0;
  let first = null;
  const logins = Array.from({ length: inFlight }, () =>
    get(`${base}/token?service=pier`, headers).then((status) => {
      if (status === 200) ok++;
      inFlight--;
      if (first === null) first = healthz;
    }),
  );
  const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let healthz = 0;
  while (inFlight > 0) {
    const status = await new Promise((resolve) => {
      http
        .get(`${base}/healthz`, { agent: keepAlive }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode));
        })
        .on('error', () => resolve(0));
    });
    if (status === 200 && inFlight > 0) healthz++;
  }
  await Promise.all(logins);
  keepAlive.destroy();
  console.log(`logins=${count} ok=${ok} first=${first} healthz=${healthz}`);
} else {
  console.error('usage: login-load.mjs burst URL N AUTHORIZATION [CLIENT_IP] | health BASE M AUTHORIZATION');
  process.exit(2);
}
