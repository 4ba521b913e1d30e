import { PassThrough } from 'node:stream';
import { pino } from 'pino';
import { expect, it } from 'vitest';
import { createHttpServer } from '../../../src/core/http.js';

it('logs the webhook receiver path without its query, which may carry a token; other URLs whole', async () => {
  const lines: string[] = [];
  const stream = new PassThrough();
  stream.on('data', (chunk: Buffer) => lines.push(chunk.toString()));
  const app = await createHttpServer({
    service: 'test',
    title: 'Test',
    description: 'Request log lines',
    version: '0.0.0',
    logger: pino({ level: 'trace' }, stream),
    checkReady: async () => {},
  });
  await app.register(async (routes) => {
    routes.post('/hooks', { config: { authenticatesItself: true } }, async (_request, reply) =>
      reply.code(204).send(),
    );
    routes.get('/items', async () => ({ items: [] }));
  });
  try {
    await app.inject({ method: 'POST', url: '/hooks?token=s3cr3t-in-query&tenant=7' });
    await app.inject({ method: 'GET', url: '/items?limit=5' });
    await new Promise((resolve) => setImmediate(resolve));
    const log = lines.join('');
    expect(log).not.toContain('s3cr3t-in-query');
    expect(log).toContain('POST /hooks?*** → 204');
    expect(log).toContain('GET /items?limit=5 → 200');
  } finally {
    await app.close();
  }
});
