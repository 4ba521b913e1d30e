import fc from 'fast-check';
import { expect } from 'vitest';
import { describeRequest, expectSafeAnswer, sweepRoute } from './answers.js';
import { garbageHeaders, headerText, hugeText, nastyText } from './nasty-text.js';
import {
  MUTATING_METHODS,
  urlFor,
  validPathValues,
  type JsonSchema,
  type Route,
} from './routes.js';

// Request bodies: shaped like the schema but wrong, not JSON, of another content type, too large.

/** Any JSON type but the schema's (an integral double counts as an integer). */
function wrongTypeValue(schema: JsonSchema): fc.Arbitrary<unknown> {
  const declared = schema.type ?? schema.anyOf?.[0]?.type;
  const byType: Record<string, fc.Arbitrary<unknown>> = {
    string: fc.string({ maxLength: 10 }),
    integer: fc.integer(),
    number: fc.double({ noNaN: true, noDefaultInfinity: true }).filter((n) => !Number.isInteger(n)),
    boolean: fc.boolean(),
    null: fc.constant(null),
    array: fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 3 }),
    object: fc.dictionary(fc.string({ maxLength: 5 }), fc.jsonValue({ maxDepth: 1 }), {
      maxKeys: 3,
    }),
  };
  const wrong = Object.entries(byType)
    .filter(([type]) => type !== declared && !(declared === 'number' && type === 'integer'))
    .map(([, arbitrary]) => arbitrary);
  return fc.oneof(...wrong);
}

/** A value the schema accepts: only required properties, the documented example or default. */
export function validValue(schema: JsonSchema): fc.Arbitrary<unknown> {
  if (schema.anyOf) return validValue(schema.anyOf[0]!);
  switch (schema.type) {
    case 'object':
      return fc.record(
        Object.fromEntries(
          Object.entries(schema.properties ?? {})
            .filter(([name]) => schema.required?.includes(name))
            .map(([name, property]) => [name, validValue(property)]),
        ),
      );
    case 'array':
      return fc.array(validValue(schema.items ?? {}), {
        minLength: Math.max(1, schema.minItems ?? 0),
        maxLength: Math.max(1, schema.minItems ?? 0),
      });
    case 'integer':
    case 'number':
      return fc.integer({ min: schema.minimum ?? 0, max: schema.maximum ?? 1000 });
    case 'boolean':
      return fc.boolean();
    default:
      if (schema.enum) return fc.constantFrom(...schema.enum);
      if (schema.format === 'uuid') return fc.uuid();
      if (schema.format === 'email') return fc.uuid().map((id) => `fuzz-${id}@example.com`);
      if (schema.examples?.length) return fc.constant(schema.examples[0]);
      if (schema.default !== undefined) return fc.constant(schema.default);
      return fc.constant('plain text');
  }
}

/**
 * An object `JSON.stringify` writes with a `__proto__` key: assigning it would set the prototype
 * instead, and a parser that did the same on the server would poison every object.
 */
function withOwnKey(object: Record<string, unknown>, key: string, value: unknown) {
  Object.defineProperty(object, key, { value, enumerable: true, configurable: true });
  return object;
}

/**
 * Bodies shaped like the schema: each property valid, missing, of a wrong type, a nasty or a huge
 * string; arrays of such items; sometimes with unknown or reserved fields added.
 */
function shapedBody(schema: JsonSchema, depth = 0): fc.Arbitrary<unknown> {
  if (schema.type === 'array' && schema.items && depth < 3) {
    return fc.array(shapedBody(schema.items, depth + 1), { maxLength: 3 });
  }
  if (schema.type !== 'object' || depth >= 3) {
    return fc.oneof(
      { weight: 3, arbitrary: validValue(schema) },
      { weight: 2, arbitrary: wrongTypeValue(schema) },
      { weight: 2, arbitrary: nastyText },
      { weight: 1, arbitrary: hugeText },
    );
  }
  const properties = Object.entries(schema.properties ?? {});
  const shaped = fc.record(
    Object.fromEntries(
      properties.map(([name, property]) => [name, shapedBody(property, depth + 1)]),
    ),
    { requiredKeys: [] },
  ) as fc.Arbitrary<Record<string, unknown>>;
  const extraKey = fc.oneof(
    fc.constantFrom('id', 'status', 'created_at', '__proto__', 'constructor', 'prototype', ''),
    nastyText,
  );
  return fc
    .tuple(shaped, fc.array(fc.tuple(extraKey, fc.jsonValue({ maxDepth: 2 })), { maxLength: 2 }))
    .map(([body, extras]) =>
      extras.reduce((object, [key, value]) => withOwnKey(object, key, value), { ...body }),
    );
}

/** Text that is not JSON at all, or JSON cut short. */
const notJson = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 50 }).filter((text) => {
    try {
      JSON.parse(text);
      return false;
    } catch {
      return true;
    }
  }),
  fc.constantFrom(
    '{',
    '{"a":',
    '[1,2',
    '{"a":1}}',
    "{'a':1}",
    'NaN',
    '\u0000',
    '{"__proto__":{"x":1}}',
  ),
);

const WRONG_CONTENT_TYPES = [
  'text/plain',
  'text/json',
  'application/xml',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/jsonx',
  'application/json-patch+json',
  'application/octet-stream',
  'application',
  '*/*',
  '',
  ';',
  'application/json\u0000',
];

/** True when the Content-Type names JSON, which is the right one, not a wrong one. */
const namesJson = (contentType: string) =>
  contentType.split(';')[0]!.trim().toLowerCase() === 'application/json';

const isEmptyObject = (value: unknown) =>
  typeof value === 'object' &&
  value !== null &&
  !Array.isArray(value) &&
  Object.keys(value).length === 0;

/** Bad bodies of every route: a 4xx, and from a route that writes, the precise one. */
export async function sweepBodies(routes: Route[]): Promise<void> {
  for (const route of routes) {
    const mutating = MUTATING_METHODS.has(route.method);
    const body = route.bodySchema
      ? fc.oneof(
          fc.jsonValue().map((value) => JSON.stringify(value)),
          shapedBody(route.bodySchema).map((value) => JSON.stringify(value)),
          notJson,
        )
      : fc.oneof(
          fc.jsonValue().map((value) => JSON.stringify(value)),
          notJson,
        );
    await sweepRoute(route, () =>
      fc.assert(
        fc.asyncProperty(
          validPathValues(route),
          body,
          garbageHeaders,
          fc.option(headerText, { nil: undefined }),
          async (pathValues, payload, headers, idempotencyKey) => {
            let parsed: unknown;
            let isJson = true;
            try {
              parsed = JSON.parse(payload);
            } catch {
              isJson = false;
            }
            const acceptable = isJson && (route.validateBody?.(parsed) ?? true);
            // A valid body would be stored: that is the "valid but nasty" test's business. A route
            // that takes no body takes `{}` as none (an action such as a pause would be done).
            fc.pre(!(mutating && route.bodySchema && acceptable));
            fc.pre(!(mutating && !route.bodySchema && isEmptyObject(parsed)));
            const url = urlFor(route, pathValues);
            const response = await route.target.test.app.inject({
              method: route.method as 'POST',
              url,
              headers: {
                ...headers,
                'content-type': 'application/json',
                ...(idempotencyKey === undefined ? {} : { 'idempotency-key': idempotencyKey }),
              },
              payload,
            });
            const context = describeRequest(route.method, url, payload);
            expectSafeAnswer(response, context);
            if (!mutating) return;
            // A garbage Origin is another site's: the write is refused before its body is read.
            if (headers.origin !== undefined && response.statusCode === 403) {
              expect(response.json().code, context).toBe('cross_site_request');
              return;
            }
            if (Buffer.byteLength(payload) > route.bodyLimit) {
              expect(response.statusCode, context).toBe(413);
            } else if (!isJson) {
              expect(response.statusCode, context).toBe(400);
            } else if (route.bodySchema) {
              expect(response.statusCode, context).toBe(400);
            }
          },
        ),
        { numRuns: mutating ? 60 : 8 },
      ),
    );
  }
}

/** A valid body of each route that takes one, sent as another content type or none: 415. */
export async function sweepContentTypes(bodyRoutes: Route[]): Promise<void> {
  for (const route of bodyRoutes) {
    const body = route.bodySchema ? validValue(route.bodySchema) : fc.constant({});
    await sweepRoute(route, () =>
      fc.assert(
        fc.asyncProperty(
          validPathValues(route),
          body,
          fc.option(fc.oneof(fc.constantFrom(...WRONG_CONTENT_TYPES), fc.string()), {
            nil: undefined,
          }),
          async (pathValues, value, contentType) => {
            fc.pre(contentType === undefined || !namesJson(contentType));
            const payload = JSON.stringify(value);
            const url = urlFor(route, pathValues);
            const response = await route.target.test.app.inject({
              method: route.method as 'POST',
              url,
              headers: contentType === undefined ? {} : { 'content-type': contentType },
              payload,
            });
            const context = `${describeRequest(route.method, url, payload)} as ${JSON.stringify(contentType)}`;
            expectSafeAnswer(response, context);
            expect(response.statusCode, context).toBe(415);
          },
        ),
        { numRuns: 15 },
      ),
    );
  }
}

/** A valid body of each route that takes one, padded past its size limit: 413. */
export async function sweepBodySizes(bodyRoutes: Route[]): Promise<void> {
  for (const route of bodyRoutes) {
    const body = route.bodySchema ? validValue(route.bodySchema) : fc.constant({});
    await sweepRoute(route, () =>
      fc.assert(
        fc.asyncProperty(
          validPathValues(route),
          body,
          fc.oneof(fc.integer({ min: 1, max: 4096 }), fc.constantFrom(route.bodyLimit, 600 * 1024)),
          async (pathValues, value, excess) => {
            const json = JSON.stringify(value);
            // Whitespace after a JSON value is still valid JSON: only the size is wrong.
            const payload = json + ' '.repeat(Math.max(0, route.bodyLimit + excess - json.length));
            const url = urlFor(route, pathValues);
            const response = await route.target.test.app.inject({
              method: route.method as 'POST',
              url,
              headers: { 'content-type': 'application/json' },
              payload,
            });
            const context = describeRequest(route.method, url, payload);
            expectSafeAnswer(response, context);
            expect(response.statusCode, context).toBe(413);
          },
        ),
        { numRuns: 5 },
      ),
    );
  }
}
