// The upstream every candidate proxies to, as its own process: plain node:http, a tiny fixed answer
// (`hello\n`, 6 bytes), keep-alive longer than any proxy's idle timeout so that no proxy finds a
// reused connection closed by the upstream.
//
//   node bench/gateway/upstream.mjs      (with an IPC channel: sends { type: 'up', port, pid })
import { Buffer } from 'node:buffer';
import { createServer } from 'node:http';

process.on('disconnect', () => process.exit(1));
const body = Buffer.from('hello\n');
const server = createServer((req, res) => {
  // Drain any request body so that the connection can be reused.
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;
server.listen(0, '127.0.0.1', () => {
  process.send({ type: 'up', port: server.address().port, pid: process.pid });
});
