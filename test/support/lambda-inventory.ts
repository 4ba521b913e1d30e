/**
 * A real Inventory API in the test process, behind a fault proxy, for the Lambda handler's tests;
 * and handlers pointed at it that keep their log lines.
 */
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll } from 'vitest';
import type { InventoryTables } from '../../src/inventory/migrations.js';
import { inventoryService } from '../../src/inventory/service.js';
import { createHandler } from '../../src/lambda/handler.js';
import { createTestApp, type TestApp } from './apps.js';
import { FaultProxy } from './fault-proxy.js';
import { packageRequestsByCustomer } from './platform.js';
import { captureLogs } from './sqs-events.js';

/** Serves `app` on a free local port; answers its URL. */
export async function listen(app: TestApp<unknown>['app']): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' });
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}

/** Starts Inventory and its proxy for the file's tests; clears the proxy's faults after each. */
export function useLambdaInventory() {
  let inventory: TestApp<InventoryTables>;
  let proxy: FaultProxy;
  let proxyUrl: string;

  beforeAll(async () => {
    inventory = await createTestApp(inventoryService);
    proxy = new FaultProxy(await listen(inventory.app));
    proxyUrl = await proxy.start();
  });
  afterEach(() => {
    proxy.answer = undefined;
    proxy.plan = { rate: 0, kinds: [] };
  });
  afterAll(async () => {
    await proxy?.stop();
    await inventory?.close();
  });

  return {
    get inventory() {
      return inventory;
    },
    get proxy() {
      return proxy;
    },
    get proxyUrl() {
      return proxyUrl;
    },
    /** Package requests in Inventory's database for these customers (0 for none). */
    async packagesFor(ids: string[]): Promise<number[]> {
      const counts = await packageRequestsByCustomer(inventory);
      return ids.map((id) => counts.get(id) ?? 0);
    },
    postsFor: (id: string) =>
      proxy.calls.filter((call) => call.method === 'POST' && call.customerId === id),
    /** A handler pointed at the proxy, and the JSON log lines it writes. */
    handlerFor(env: Record<string, string | undefined> = {}) {
      const { logger, lines } = captureLogs();
      const handler = createHandler(
        { INVENTORY_URL: proxyUrl, REQUEST_TIMEOUT_MS: '2000', ...env },
        { logger },
      );
      return { handler, lines };
    },
  };
}
