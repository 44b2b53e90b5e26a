// The @fastify/reply-from peer as its own process: fastify with reply-from's catch-all proxy to the
// upstream (its default undici pool), as its README shows it.
//
//   node bench/gateway/reply-from.mjs <upstreamUrl>   (with an IPC channel: sends { type: 'up', port, pid })
import Fastify from 'fastify';
import replyFrom from '@fastify/reply-from';

process.on('disconnect', () => process.exit(1));
const upstream = process.argv[2];
const app = Fastify({ logger: false });
await app.register(replyFrom, { base: upstream, undici: { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 } });
app.all('/*', (req, reply) => reply.from(req.url));
await app.listen({ host: '127.0.0.1', port: 0 });
process.send({ type: 'up', port: app.server.address().port, pid: process.pid });
process.on('message', (m) => {
  if (m === 'close') void app.close().then(() => process.exit(0));
});
