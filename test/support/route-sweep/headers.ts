import fc from 'fast-check';
import { expect, type TestContext } from 'vitest';
import { describeRequest, expectSafeAnswer, sweepRoute } from './answers.js';
import { validValue } from './bodies.js';
import { headerText } from './nasty-text.js';
import { urlFor, validPathValues, type Route } from './routes.js';

/**
 * Malformed values of the headers routes document (Idempotency-Key, webhook-*), and forged
 * webhook signatures: always a 4xx, and a signed route's sweep reaches the signature check.
 */
export async function sweepDocumentedHeaders(routes: Route[], context: TestContext): Promise<void> {
  const signed = (route: Route) => route.headerParams.some((p) => p.name === 'webhook-signature');
  const routesWithHeaders = routes.filter((r) => r.headerParams.length > 0);
  if (routesWithHeaders.length === 0) context.skip('no route documents a header');
  for (const route of routesWithHeaders) {
    const plausible: Record<string, fc.Arbitrary<string>> = {
      'webhook-id': fc.uuid().map((id) => `msg_${id}`),
      'webhook-timestamp': fc
        .integer({ min: -600, max: 600 })
        .map((offset) => String(Math.floor(Date.now() / 1000) + offset)),
      'webhook-signature': fc
        .array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { minLength: 1, maxLength: 3 })
        .map((sigs) => sigs.map((s) => `v1,${Buffer.from(s).toString('base64')}`).join(' ')),
    };
    const headerValue = (name: string) =>
      fc.option(
        fc.oneof(
          headerText,
          plausible[name] ?? headerText,
          fc.constant(['a', 'b']), // the header sent twice
        ),
        { nil: undefined },
      );
    const headers = fc.oneof(
      fc.record(Object.fromEntries(route.headerParams.map((p) => [p.name, headerValue(p.name)]))),
      // Every header well-formed: a forged signature must then fail verification itself.
      fc.record(
        Object.fromEntries(
          route.headerParams.map((p) => [p.name, plausible[p.name] ?? headerText]),
        ),
      ),
    ) as fc.Arbitrary<Record<string, string | string[] | undefined>>;
    const statuses = new Set<number>();
    const body = route.bodySchema
      ? validValue(route.bodySchema).map((value) => JSON.stringify(value))
      : fc.oneof(
          fc.jsonValue().map((value) => JSON.stringify(value)),
          fc.uuid().map((id) =>
            JSON.stringify({
              type: 'customer.created',
              timestamp: new Date().toISOString(),
              data: {
                id,
                name: 'Forged',
                email: 'forged@example.com',
                created_at: '2024-01-01T00:00:00Z',
              },
            }),
          ),
        );
    await sweepRoute(route, () =>
      fc.assert(
        fc.asyncProperty(
          validPathValues(route),
          headers,
          body,
          async (pathValues, values, payload) => {
            const sent = Object.fromEntries(
              Object.entries(values).filter(([, value]) => value !== undefined),
            ) as Record<string, string | string[]>;
            // With a valid body, only a malformed header makes the request bad; a signed
            // route's headers are bad anyway: nothing here knows a signing secret.
            fc.pre(signed(route) || !route.validateHeaders!({ ...sent }));
            const url = urlFor(route, pathValues);
            const response = await route.target.test.app.inject({
              method: route.method as 'POST',
              url,
              headers: { ...sent, 'content-type': 'application/json' },
              payload,
            });
            const context = `${describeRequest(route.method, url, payload)} with ${JSON.stringify(sent).slice(0, 300)}`;
            expectSafeAnswer(response, context);
            expect(response.statusCode, context).toBeGreaterThanOrEqual(400);
            statuses.add(response.statusCode);
          },
        ),
        { numRuns: 60 },
      ),
    );
    // The sweep reached the signature check, not only the header schema.
    if (signed(route)) expect([...statuses]).toContain(401);
  }
}
