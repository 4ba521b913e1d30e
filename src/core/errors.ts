import { STATUS_CODES } from 'node:http';
import { Type, type Static } from 'typebox';

/**
 * An error the client can act on, answered as RFC 9457 `application/problem+json`.
 * `code` is a stable machine-readable name; `detail` says what to do.
 */
export class HttpProblem extends Error {
  readonly title: string;
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    readonly extensions: Record<string, unknown> = {},
    /** Response headers to send with the problem, e.g. `retry-after`. */
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
    this.name = 'HttpProblem';
    this.title = STATUS_CODES[status] ?? 'Error';
  }

  toProblem(instance: string): Problem {
    return {
      type: 'about:blank',
      title: this.title,
      status: this.status,
      detail: this.detail,
      instance,
      code: this.code,
      ...this.extensions,
    };
  }
}

export const notFound = (detail: string) => new HttpProblem(404, 'not_found', detail);

export const ProblemSchema = Type.Object(
  {
    type: Type.String({ description: 'A URI naming the problem type; `about:blank` here.' }),
    title: Type.String({ description: 'The HTTP status phrase.' }),
    status: Type.Integer(),
    detail: Type.String({ description: 'What went wrong and what to do about it.' }),
    instance: Type.Optional(Type.String({ description: 'The request path.' })),
    code: Type.String({ description: 'Stable machine-readable name of the problem.' }),
    errors: Type.Optional(
      Type.Array(
        Type.Object({
          location: Type.String({ description: 'body, querystring, params or headers' }),
          field: Type.String(),
          message: Type.String(),
        }),
      ),
    ),
  },
  { additionalProperties: true },
);

export type Problem = Static<typeof ProblemSchema> & Record<string, unknown>;
