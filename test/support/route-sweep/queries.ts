import fc from 'fast-check';
import { expect } from 'vitest';
import { describeRequest, expectSafeAnswer, sweepRoute } from './answers.js';
import { asReceived, nastyText, percentEncode } from './nasty-text.js';
import { urlFor, validPathValues, type JsonSchema, type Route } from './routes.js';

/** Query values no documented parameter accepts, or that bend the query string itself. */
function absurdValueFor(schema: JsonSchema): fc.Arbitrary<string> {
  const common = fc.oneof(
    nastyText,
    fc.constantFrom('1e309', '-1e309', 'Infinity', 'NaN', '1e21', '0x10', '[]', '{}', '1,2'),
  );
  if (schema.type !== 'integer' && schema.type !== 'number') return common;
  const below = (schema.minimum ?? 0) - 1;
  return fc.oneof(
    common,
    fc.integer({ min: Number.MIN_SAFE_INTEGER, max: below }).map(String),
    fc
      .bigInt({ min: 1n, max: 2n ** 64n })
      .map((excess) => String(BigInt(schema.maximum ?? Number.MAX_SAFE_INTEGER) + excess)),
    fc.bigInt({ min: 2n ** 53n, max: 2n ** 200n }).map(String),
    fc
      .double({ noNaN: true })
      .filter((n) => !Number.isInteger(n))
      .map(String),
    fc.constantFrom('9'.repeat(400), '-0.5', '1.5', '9007199254740993', '18446744073709551616'),
  );
}

/** Raw query strings that no parameter generator makes. */
const RAW_QUERY_TRICKS = [
  'limit',
  'limit=',
  '&&&',
  '=1',
  'limit=1&limit=2',
  'after=1&after=2',
  'limit[]=1',
  'limit[a]=1',
  '__proto__[x]=1',
  'constructor[prototype][x]=1',
  '%',
  'limit=%E0%A4%A',
  'after=%00',
  `limit=${'9'.repeat(5000)}`,
];

/** Absurd values of each documented query parameter, unknown ones, raw query tricks: 400. */
export async function sweepQueries(routes: Route[]): Promise<void> {
  for (const route of routes.filter((r) => r.queryParams.length > 0)) {
    const entry = fc.oneof(
      {
        weight: 4,
        arbitrary: fc
          .constantFrom(...route.queryParams)
          .chain((p) => fc.tuple(fc.constant(p.name), absurdValueFor(p.schema))),
      },
      {
        weight: 1,
        arbitrary: fc.tuple(
          fc.oneof(
            fc.constantFrom(...route.queryParams.map((p) => `${p.name}[]`), 'unknown'),
            nastyText,
          ),
          nastyText,
        ),
      },
    );
    const query = fc.oneof(
      {
        weight: 4,
        arbitrary: fc
          .array(entry, { minLength: 1, maxLength: 4 })
          .map((entries) => ({ entries, raw: undefined })),
      },
      {
        weight: 1,
        arbitrary: fc.constantFrom(...RAW_QUERY_TRICKS).map((raw) => ({ entries: undefined, raw })),
      },
    );
    await sweepRoute(route, () =>
      fc.assert(
        fc.asyncProperty(validPathValues(route), query, async (pathValues, { entries, raw }) => {
          let refused: boolean | undefined;
          let queryString = raw ?? '';
          if (entries) {
            queryString = entries
              .map(([k, v]) => `${percentEncode(k)}=${percentEncode(v)}`)
              .join('&');
            // What the server parses: a repeated name becomes an array.
            const parsed: Record<string, string | string[]> = {};
            for (const [k, v] of entries) {
              const key = asReceived(k);
              const existing = parsed[key];
              parsed[key] =
                existing === undefined ? asReceived(v) : [existing, asReceived(v)].flat();
            }
            // An integer JavaScript cannot hold exactly would silently mean another one.
            const inexact = route.queryParams.some(
              (p) =>
                p.schema.type === 'integer' &&
                [parsed[p.name] ?? []].flat().some((value) => {
                  const number = Number(value);
                  return Number.isInteger(number) && !Number.isSafeInteger(number);
                }),
            );
            refused = inexact || !route.validateQuery!(parsed);
            // A valid wait would hold the request open as a long-poll.
            fc.pre(refused || !(Number(parsed.wait) > 0));
          }
          const url = urlFor(route, pathValues, queryString);
          const response = await route.target.test.app.inject({
            method: route.method as 'GET',
            url,
          });
          const context = describeRequest(route.method, url);
          expectSafeAnswer(response, context);
          if (refused) expect(response.statusCode, context).toBe(400);
        }),
        { numRuns: 60 },
      ),
    );
  }
}
