import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crmService } from '../../src/crm/service.js';
import { inventoryService } from '../../src/inventory/service.js';
import { createTestApp, type TestApp } from '../support/apps.js';

// Property-based: whatever a client sends, the answer is never a 5xx, every error is problem+json,
// and the service stays healthy.
describe.each([
  { definition: crmService, path: '/customers', table: 'customers' },
  { definition: inventoryService, path: '/package-requests', table: 'package_requests' },
])('$definition.title under arbitrary input', ({ definition, path, table }) => {
  let t: TestApp<any>;
  beforeAll(async () => {
    t = await createTestApp(definition as never);
  });
  afterAll(async () => {
    await t.close();
  });

  const expectClientAnswer = (response: {
    statusCode: number;
    headers: Record<string, unknown>;
  }) => {
    expect(response.statusCode).toBeLessThan(500);
    if (response.statusCode >= 400) {
      expect(String(response.headers['content-type'])).toContain('application/problem+json');
    }
  };

  it('answers arbitrary JSON bodies with 4xx problem+json and stores nothing invalid', async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue(), fc.option(fc.string()), async (body, key) => {
        const response = await t.app.inject({
          method: 'POST',
          url: path,
          headers: {
            'content-type': 'application/json',
            ...(key === null ? {} : { 'idempotency-key': key }),
          },
          payload: JSON.stringify(body),
        });
        expectClientAnswer(response);
        expect(response.statusCode).not.toBe(201);
      }),
      { numRuns: 150 },
    );
    const rows = await t.database.db.selectFrom(table).selectAll().execute();
    expect(rows).toHaveLength(0);
  });

  it('answers arbitrary bytes and content types without a 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 300 }),
        fc.constantFrom(
          'application/json',
          'text/plain',
          'application/xml',
          'multipart/form-data',
          '',
        ),
        async (bytes, contentType) => {
          const response = await t.app.inject({
            method: 'POST',
            url: path,
            headers: contentType ? { 'content-type': contentType } : {},
            payload: Buffer.from(bytes),
          });
          expectClientAnswer(response);
          expect(response.statusCode).toBeGreaterThanOrEqual(400);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('answers arbitrary query strings and path segments without a 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string(), fc.string(), fc.string(), async (limit, after, id) => {
        const list = await t.app.inject({
          method: 'GET',
          url: path,
          query: { limit, after },
        });
        expectClientAnswer(list);
        const one = await t.app.inject({
          method: 'GET',
          url: `${path}/${encodeURIComponent(id)}`,
        });
        expectClientAnswer(one);
      }),
      { numRuns: 150 },
    );
    expect((await t.app.inject({ method: 'GET', url: '/ready' })).statusCode).toBe(200);
  });
});
