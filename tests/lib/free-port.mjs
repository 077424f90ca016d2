// A free TCP port on 127.0.0.1 for a server a Node test starts (the shell
// suites have tests/lib/harness.sh's free_port).
import net from 'node:net';

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}
