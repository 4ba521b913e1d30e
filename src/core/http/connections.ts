import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import fp from 'fastify-plugin';

/**
 * Graceful shutdown for keep-alive clients: when the server closes, connections with no request in
 * flight are closed at once, and the others right after their answer is sent. Without this, one
 * idle keep-alive connection (or one opened and never used) holds `close()` open for minutes.
 * Fastify's own `forceCloseConnections` must be off: this does its job, including connections
 * that never sent a request.
 */
export const closeConnectionsOnShutdown = fp(
  async (app) => {
    const busy = new Map<Socket, number>();
    const sockets = new Set<Socket>();
    let closing = false;
    app.server.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.once('close', () => {
        sockets.delete(socket);
        busy.delete(socket);
      });
    });
    app.server.on('request', (request: IncomingMessage, response: ServerResponse) => {
      const socket = request.socket;
      busy.set(socket, (busy.get(socket) ?? 0) + 1);
      if (closing) response.setHeader('connection', 'close');
      response.once('close', () => {
        const left = (busy.get(socket) ?? 1) - 1;
        if (left > 0) busy.set(socket, left);
        else busy.delete(socket);
        if (closing && left <= 0) socket.destroySoon();
      });
    });
    app.addHook('preClose', async () => {
      closing = true;
      for (const socket of sockets) if (!busy.has(socket)) socket.destroy();
    });
  },
  { name: 'close-connections-on-shutdown' },
);
