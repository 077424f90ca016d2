// A TCP proxy between pier and the S3 server that can be told to fail, for
// the fault checks of tests/scaleout/run.sh. Everything stays on 127.0.0.1.
//
// Usage: node fault-proxy.mjs LISTEN_PORT UPSTREAM_PORT CONTROL_PORT
// Control: curl -X PUT http://127.0.0.1:CONTROL_PORT/mode/<mode>
//   pass   forward everything (the start)
//   error  answer every request with 503 and close the connection
//   cut    forward, but close both sides once a connection has sent
//          CUT_AFTER bytes in this mode: large uploads die mid-transfer
//          while small requests get through
// The mode is read on every chunk, so it applies to pooled keep-alive
// connections opened before the change too.
import http from "node:http";
import net from "node:net";

const [listenPort, upstreamPort, controlPort] = process.argv.slice(2).map(Number);
const CUT_AFTER = 1 << 20;
const ERROR_RESPONSE =
  "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
let mode = "pass";
const counts = { connections: 0, errored: 0, cut: 0 };

net
  .createServer((client) => {
    counts.connections++;
    const upstream = net.connect(upstreamPort, "127.0.0.1");
    let sentWhileCutting = 0;
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", close);
    upstream.on("error", close);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.on("data", (chunk) => {
      if (mode === "error") {
        counts.errored++;
        upstream.destroy();
        client.end(ERROR_RESPONSE);
        return;
      }
      if (mode === "cut") {
        sentWhileCutting += chunk.length;
        if (sentWhileCutting > CUT_AFTER) {
          counts.cut++;
          close();
          return;
        }
      } else {
        sentWhileCutting = 0;
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk) => client.write(chunk));
  })
  .listen(listenPort, "127.0.0.1");

http
  .createServer((req, res) => {
    const wanted = req.url.match(/^\/mode\/(pass|error|cut)$/);
    if (req.method === "PUT" && wanted) {
      mode = wanted[1];
    }
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ mode, ...counts }) + "\n");
  })
  .listen(controlPort, "127.0.0.1");
