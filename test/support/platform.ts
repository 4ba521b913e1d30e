import type { AddressInfo } from 'node:net';
import { afterEach } from 'vitest';
import type { CrmTables } from '../../src/crm/migrations.js';
import { crmService } from '../../src/crm/service.js';
import type { InventoryTables } from '../../src/inventory/migrations.js';
import { inventoryService } from '../../src/inventory/service.js';
import type { IntegrationTables } from '../../src/integration/migrations.js';
import { integrationService } from '../../src/integration/service.js';
import { createTestApp, type TestApp } from './apps.js';
import type { TestDatabase } from './databases.js';
import { FaultProxy } from './fault-proxy.js';

export interface Upstreams {
  crm: TestApp<CrmTables>;
  crmUrl: string;
  inventory: TestApp<InventoryTables>;
  inventoryUrl: string;
  /** Sits between the integration service and Inventory. */
  proxy: FaultProxy;
  proxyUrl: string;
  close(): Promise<void>;
}

export async function listen(app: TestApp<unknown>['app']): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' });
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}

/**
 * The CRM (with its webhook sender and, given `AMQP_URL` in `crmEnv`, its RabbitMQ relay running)
 * and Inventory, each on its own test database and a free port, and a fault proxy before Inventory.
 */
export async function startUpstreams(
  seed = 1,
  options: { crmEnv?: Record<string, string> } = {},
): Promise<Upstreams> {
  const crm = await createTestApp(crmService, { env: options.crmEnv ?? {} });
  const inventory = await createTestApp(inventoryService);
  const crmUrl = await listen(crm.app);
  await crm.runtime.start?.({ url: crmUrl });
  const inventoryUrl = await listen(inventory.app);
  const proxy = new FaultProxy(inventoryUrl, seed);
  const proxyUrl = await proxy.start();
  return {
    crm,
    crmUrl,
    inventory,
    inventoryUrl,
    proxy,
    proxyUrl,
    close: async () => {
      await proxy.stop();
      await crm.close();
      await inventory.close();
    },
  };
}

/** Settings that make the integration service quick to retry and recover, for tests. */
export function integrationEnv(upstreams: Upstreams, overrides: Record<string, string> = {}) {
  return {
    SYNC_MODE: 'poll',
    CRM_URL: upstreams.crmUrl,
    INVENTORY_URL: upstreams.proxyUrl,
    POLL_INTERVAL_MS: '500',
    GAP_REPAIR_MS: '500',
    RETRY_BASE_MS: '20',
    RETRY_MAX_DELAY_MS: '400',
    CIRCUIT_RESET_MS: '300',
    REQUEST_TIMEOUT_MS: '1000',
    LEASE_MS: '2000',
    ...overrides,
  };
}

/**
 * The integration service in this process, started (polling and delivering); on `database` when
 * given (a restart), which its `close()` then leaves in place.
 */
export async function startIntegration(
  upstreams: Upstreams,
  overrides: Record<string, string> = {},
  database?: TestDatabase<IntegrationTables>,
): Promise<TestApp<IntegrationTables>> {
  const integration = await createTestApp(integrationService, {
    env: integrationEnv(upstreams, overrides),
    ...(database ? { database } : {}),
  });
  const url = await listen(integration.app);
  await integration.runtime.start?.({ url });
  return integration;
}

/** The CRM, Inventory and an integration service in this process, with the service's base URL. */
export interface StartedPlatform {
  upstreams: Upstreams;
  integration: TestApp<IntegrationTables>;
  /** The integration service's base URL (for `mip` and the dashboard). */
  url: string;
}

/**
 * For each test of the calling file: `start(overrides)` starts the CRM and Inventory, lets
 * `beforeIntegration` set up their fault proxy, then starts the integration service on them; all
 * of it is closed after the test.
 */
export function usePlatform() {
  let current: Partial<StartedPlatform> | undefined;
  afterEach(async () => {
    await current?.integration?.close();
    await current?.upstreams?.close();
    current = undefined;
  });
  return async (
    overrides: Record<string, string> = {},
    beforeIntegration?: (upstreams: Upstreams) => void,
  ): Promise<StartedPlatform> => {
    const upstreams = await startUpstreams();
    current = { upstreams };
    beforeIntegration?.(upstreams);
    const integration = await startIntegration(upstreams, overrides);
    const url = `http://127.0.0.1:${(integration.app.server.address() as AddressInfo).port}`;
    const started = { upstreams, integration, url };
    current = started;
    return started;
  };
}

export async function waitUntil(
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Creates customers through the CRM's HTTP API, `concurrency` at a time; answers their ids. */
export async function createCustomers(
  crmUrl: string,
  count: number,
  options: { concurrency?: number; prefix?: string } = {},
): Promise<string[]> {
  const ids: string[] = new Array(count);
  let next = 0;
  const prefix = options.prefix ?? `c${Date.now()}`;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const response = await fetch(`${crmUrl}/customers`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: `Customer ${i}`, email: `${prefix}-${i}@example.com` }),
      });
      if (response.status !== 201)
        throw new Error(`create failed: ${response.status} ${await response.text()}`);
      ids[i] = ((await response.json()) as { id: string }).id;
    }
  };
  await Promise.all(Array.from({ length: options.concurrency ?? 8 }, worker));
  return ids;
}

/** Package requests in Inventory's database, by customer. */
export async function packageRequestsByCustomer(inventory: {
  database: Pick<TestApp<InventoryTables>['database'], 'db'>;
}): Promise<Map<string, number>> {
  const rows = await inventory.database.db
    .selectFrom('package_requests')
    .select('customer_id')
    .execute();
  const counts = new Map<string, number>();
  for (const row of rows) counts.set(row.customer_id, (counts.get(row.customer_id) ?? 0) + 1);
  return counts;
}
