// An S3 endpoint that refuses every request (403 AccessDenied), for
// tests/security/parts/auth.sh: a store that fails at once, with an error
// whose text names the endpoint and the bucket, as real storage errors do.
// Usage: node refusing-storage.mjs PORT
import http from 'node:http';

const port = Number(process.argv[2]);
http
  .createServer((req, res) => {
    req.resume();
    res.writeHead(403, { 'content-type': 'application/xml' });
    res.end(
      '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>' +
        `<Message>Access Denied</Message><Resource>${req.url}</Resource></Error>`,
    );
  })
  .listen(port, '127.0.0.1');
