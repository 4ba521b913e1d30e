import fp from 'fastify-plugin';
import { HttpProblem } from '../errors.js';
import { pathOf } from './send-problem.js';

/** Largest request body accepted, in bytes (SPEC §6). */
export const BODY_LIMIT_BYTES = 64 * 1024;

function isEmptyObject(value: unknown): boolean {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Object.keys(value).length === 0
  );
}

/** Bodies are JSON, and only for routes that declare one. */
export const refuseUnexpectedBodies = fp(
  async (app) => {
    // Only JSON bodies: Fastify's built-in text/plain parser would turn a typo'd header into a
    // confusing validation error instead of a clear 415.
    app.removeContentTypeParser('text/plain');

    // A route without a body schema takes no body: fields sent to it would be ignored without a
    // word (`{"customer_id": …}` to replay-all would replay them all). Raw bodies are their
    // route's own.
    app.addHook('preValidation', async (request) => {
      const body = request.body;
      if (request.routeOptions.schema?.body !== undefined || body === undefined) return;
      if (Buffer.isBuffer(body) || isEmptyObject(body)) return;
      throw new HttpProblem(
        400,
        'unexpected_body',
        `${request.method} ${pathOf(request)} takes no body; send none (or {}).`,
      );
    });
  },
  { name: 'refuse-unexpected-bodies' },
);
