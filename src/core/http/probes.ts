import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import fp from 'fastify-plugin';
import { Type } from 'typebox';
import { HttpProblem } from '../errors.js';
import { problemResponses } from './openapi.js';
import { sendProblem } from './send-problem.js';

/** Paths an orchestrator probes: open without a token and never rate limited. */
export const PROBE_PATHS: ReadonlySet<string> = new Set(['/health', '/ready']);

export interface ProbesOptions {
  /** Called by `GET /ready`; rejects when the service cannot do its job. */
  checkReady: () => Promise<void>;
}

/** `GET /health` (the process is alive) and `GET /ready` (it can do its job, or 503). */
export const serveProbes = fp<ProbesOptions>(
  async (fastify, options) => {
    const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/health',
      {
        schema: {
          tags: ['operations'],
          summary: 'The process is alive',
          response: { 200: Type.Object({ status: Type.Literal('ok') }) },
        },
      },
      async () => ({ status: 'ok' as const }),
    );

    app.get(
      '/ready',
      {
        schema: {
          tags: ['operations'],
          summary: 'The service can do its job (its database answers)',
          response: {
            200: Type.Object({ status: Type.Literal('ready') }),
            ...problemResponses(503),
          },
        },
      },
      async (request, reply) => {
        try {
          await options.checkReady();
          return { status: 'ready' as const };
        } catch (error) {
          request.log.warn({ err: error }, 'Readiness check failed');
          const problem = new HttpProblem(
            503,
            'not_ready',
            `Not ready: ${(error as Error).message}. Check the database and the service's logs.`,
          );
          return sendProblem(request, reply, problem) as never;
        }
      },
    );
  },
  { name: 'serve-probes' },
);
