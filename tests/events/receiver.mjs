// A webhook receiver for tests/events: every POST becomes one JSON line in
// FILE (the path, the attempt number per event id, the status answered, the
// Authorization header, the event). On paths under /flaky the first FAILS
// attempts of each event answer 500, so pier has to retry; on /closed/NAME
// every attempt answers 503 while the file FILE.NAME exists (an outage the
// test ends by deleting it); elsewhere 200.
// Prints the port it listens on.
// Usage: node receiver.mjs FILE [FAILS=2]
import fs from 'node:fs';
import http from 'node:http';

const [file, failsText = '2'] = process.argv.slice(2);
const fails = Number(failsText);
const attempts = new Map();

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    let event = null;
    try {
      event = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {}
    const key = `${req.url} ${event?.id}`;
    const attempt = (attempts.get(key) ?? 0) + 1;
    attempts.set(key, attempt);
    let status = 200;
    if (req.url.startsWith('/flaky') && attempt <= fails) status = 500;
    const closed = req.url.match(/^\/closed\/([a-z-]+)$/);
    if (closed && fs.existsSync(`${file}.${closed[1]}`)) status = 503;
    const line = {
      path: req.url,
      method: req.method,
      attempt,
      status,
      authorization: req.headers.authorization ?? null,
      contentType: req.headers['content-type'] ?? null,
      event,
    };
    fs.appendFileSync(file, JSON.stringify(line) + '\n');
    res.writeHead(status, { 'content-type': 'text/plain' });
    res.end(status === 200 ? 'ok\n' : 'not yet\n');
  });
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
