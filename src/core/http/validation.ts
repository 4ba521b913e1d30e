import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import fp from 'fastify-plugin';

type HttpPart = 'body' | 'querystring' | 'params' | 'headers';

function createValidators(): Record<HttpPart, Ajv> {
  const make = (coerceTypes: boolean) => {
    const ajv = new Ajv({
      allErrors: true,
      coerceTypes,
      removeAdditional: false,
      useDefaults: true,
      strict: false,
      // Errors carry the schema and value they are about, so a failed union can be narrowed to
      // the branch that was meant (union-errors.ts).
      verbose: true,
    });
    addFormats.default(ajv);
    return ajv;
  };
  // Query strings, path parameters and headers arrive as text and are coerced; bodies are JSON,
  // and a wrong type there is the client's mistake to hear about, not to be guessed at.
  const coercing = make(true);
  return { body: make(false), querystring: coercing, params: coercing, headers: coercing };
}

/** Strict request validation: every error reported at once, unknown formats not guessed. */
export const validateRequests = fp(
  async (app) => {
    const validators = createValidators();
    app.setValidatorCompiler(({ schema, httpPart }) => {
      const ajv = validators[(httpPart ?? 'body') as HttpPart] ?? validators.body;
      return ajv.compile(schema);
    });
  },
  { name: 'validate-requests' },
);
