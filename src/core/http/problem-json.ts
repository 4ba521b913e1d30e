import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { HttpProblem } from '../errors.js';
import { narrowUnionErrors } from '../union-errors.js';
import { describeValidationErrors } from '../validation-messages.js';
import { BODY_LIMIT_BYTES } from './body-rules.js';
import { setSecurityHeaders } from './security-headers.js';
import { pathOf, sendProblem } from './send-problem.js';

function validationProblem(error: FastifyError): HttpProblem {
  const location = error.validationContext ?? 'body';
  const errors = describeValidationErrors(narrowUnionErrors(error.validation ?? [])).map(
    ({ field, message }) => ({ location, field, message }),
  );
  const detail =
    errors.length > 0
      ? errors.map((e) => `${e.location} ${e.field} ${e.message}`).join('; ')
      : error.message;
  return new HttpProblem(400, 'invalid_request', `Invalid request: ${detail}.`, { errors });
}

/** Maps Fastify's own errors (parsing, limits) to problems a client can act on. */
function frameworkProblem(error: FastifyError): HttpProblem | undefined {
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new HttpProblem(
        413,
        'body_too_large',
        `The request body is larger than ${BODY_LIMIT_BYTES} bytes; send less.`,
      );
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new HttpProblem(
        415,
        'unsupported_media_type',
        'Send the body as JSON with `Content-Type: application/json`.',
      );
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new HttpProblem(
        400,
        'empty_body',
        'The body is empty but Content-Type says JSON; send a JSON object.',
      );
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new HttpProblem(400, 'invalid_body', `The body could not be read: ${error.message}.`);
    default:
      break;
  }
  if (error.statusCode === 400 && error instanceof SyntaxError) {
    return new HttpProblem(400, 'invalid_json', `The body is not valid JSON: ${error.message}.`);
  }
  if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
    return new HttpProblem(error.statusCode, 'bad_request', error.message);
  }
  return undefined;
}

/**
 * Fastify's `frameworkErrors` option: the router refuses malformed percent-encoding and over-long
 * path segments before any hook or error handler runs; without this they are answered as
 * Fastify's own JSON, not a problem.
 */
export function answerRoutingError(
  error: FastifyError,
  request: FastifyRequest,
  reply: FastifyReply,
) {
  const problem =
    error.code === 'FST_ERR_BAD_URL'
      ? new HttpProblem(
          400,
          'invalid_url',
          'The URL is not valid; percent-encode it as UTF-8 (RFC 3986).',
        )
      : error.code === 'FST_ERR_MAX_PARAM_LENGTH'
        ? new HttpProblem(
            414,
            'path_segment_too_long',
            'A path segment is too long; ids are 36-character UUIDs.',
          )
        : new HttpProblem(
            500,
            'internal_error',
            `The server failed to route the request; report request id ${request.id}.`,
          );
  if (problem.status >= 500) request.log.error({ err: error }, problem.detail);
  // Routing failed before any hook ran, the security headers' included.
  setSecurityHeaders(request, reply);
  return sendProblem(request, reply, problem);
}

/**
 * Every error answers `application/problem+json` with a stable `code`: an `HttpProblem` thrown by a
 * route as it is, a validation failure with one entry per field, Fastify's own errors mapped to
 * what the client should do, anything else as a logged 500; unknown routes as 404.
 */
export const answerWithProblems = fp(
  async (app) => {
    app.setErrorHandler((error: FastifyError, request, reply) => {
      let problem: HttpProblem | undefined;
      if (error instanceof HttpProblem) problem = error;
      else if (error.validation) problem = validationProblem(error);
      else problem = frameworkProblem(error);
      if (!problem) {
        request.log.error({ err: error }, 'Unhandled error while answering a request');
        problem = new HttpProblem(
          500,
          'internal_error',
          `The server failed to answer; retry later, and report request id ${request.id} if it persists.`,
        );
      } else if (problem.status >= 500) {
        request.log.error({ err: error }, problem.detail);
      }
      return sendProblem(request, reply, problem);
    });

    app.setNotFoundHandler((request, reply) => {
      const problem = new HttpProblem(
        404,
        'route_not_found',
        `There is no route ${request.method} ${pathOf(request)}; see /docs for the routes this service has.`,
      );
      return sendProblem(request, reply, problem);
    });
  },
  { name: 'answer-with-problems' },
);
