import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach } from 'vitest';
import type { InventoryTables } from '../../src/inventory/migrations.js';
import { inventoryService } from '../../src/inventory/service.js';
import { createTestApp, type TestApp } from './apps.js';
import { countRows } from './databases.js';

type Headers = Record<string, string>;

/** A batch item's result. */
export interface Result {
  status: number;
  replayed: boolean;
  body: Record<string, any>;
}

/**
 * Inventory's routes, called in-process on a fresh app and database for each test of the file:
 * a body is sent as JSON, `undefined` sends none.
 */
export function useInventory() {
  let t: TestApp<InventoryTables> | undefined;
  beforeEach(async () => {
    t = await createTestApp(inventoryService);
  });
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });
  const app = () => {
    if (!t) throw new Error('The Inventory app exists only while a test runs.');
    return t;
  };
  const send = (method: 'GET' | 'POST' | 'PATCH', url: string, body?: unknown, headers = {}) =>
    app().app.inject({
      method,
      url,
      headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
      ...(body === undefined
        ? {}
        : { payload: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
  const path = (id: string) => `/package-requests/${id}`;
  return {
    test: app,
    create: (body: unknown, headers?: Headers) => send('POST', '/package-requests', body, headers),
    get: (id: string) => send('GET', path(id)),
    patch: (id: string, body: unknown, headers?: Headers) => send('PATCH', path(id), body, headers),
    cancel: (id: string, headers?: Headers, body?: unknown) =>
      send('POST', `${path(id)}/cancel`, body, headers),
    ship: (id: string, headers?: Headers, body?: unknown) =>
      send('POST', `${path(id)}/ship`, body, headers),
    batch: (body: unknown) => send('POST', '/package-requests/batch', body),
    /** Creates a pending request for a new customer and answers it. */
    pending: async (fields: Record<string, unknown> = {}) => {
      const response = await send('POST', '/package-requests', {
        customer_id: randomUUID(),
        ...fields,
      });
      if (response.statusCode !== 201) throw new Error(`create answered ${response.body}`);
      return response.json() as Record<string, any>;
    },
    count: (table: keyof InventoryTables) => countRows(app().database.db, table),
  };
}
