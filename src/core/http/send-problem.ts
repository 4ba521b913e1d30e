import type { FastifyReply, FastifyRequest } from 'fastify';
import type { HttpProblem } from '../errors.js';

/** A request's path without its query string: the `instance` of a problem about it. */
export function pathOf(request: FastifyRequest): string {
  return request.url.split('?')[0] ?? request.url;
}

/** Answers `problem` as RFC 9457 `application/problem+json`, with its headers. */
export function sendProblem(request: FastifyRequest, reply: FastifyReply, problem: HttpProblem) {
  return reply
    .headers(problem.headers)
    .code(problem.status)
    .type('application/problem+json; charset=utf-8')
    .send(problem.toProblem(pathOf(request)));
}
