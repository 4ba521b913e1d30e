import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { IntegrationTables } from '../../src/integration/migrations.js';
import { integrationService } from '../../src/integration/service.js';
import { createTestApp, expectProblem, type TestApp } from '../support/apps.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import {
  createCustomers,
  integrationEnv,
  packageRequestsByCustomer,
  startUpstreams,
  waitUntil,
  type Upstreams,
} from '../support/platform.js';
import { startServiceProcess, type ServiceProcess } from '../support/processes.js';

let upstreams: Upstreams | undefined;
let database: TestDatabase<IntegrationTables> | undefined;
let integration: TestApp<IntegrationTables> | undefined;
let instance: ServiceProcess | undefined;
let silentServer: net.Server | undefined;

afterEach(async () => {
  await instance?.stop('SIGKILL');
  await integration?.close();
  await database?.drop();
  await upstreams?.close();
  silentServer?.close();
  instance = integration = database = upstreams = silentServer = undefined;
});

describe('the integration service process', () => {
  it('on SIGTERM finishes the calls in flight, hands its lease on and exits 0 well within 10 s', async () => {
    upstreams = await startUpstreams();
    upstreams.proxy.plan = { rate: 1, kinds: ['delay'], delayMs: 700 };
    database = await createTestDatabase<IntegrationTables>('integration');
    // A lease (and so a claim) far longer than the test: the next instance can only finish the
    // rest in time if this one handed them back, not by waiting for them to lapse.
    const env = {
      ...database.env,
      ...integrationEnv(upstreams),
      INTEGRATION_PORT: '0',
      LEASE_MS: '60000',
    };
    instance = await startServiceProcess('integration/main.js', env);
    await createCustomers(upstreams.crmUrl, 5);
    await waitUntil(() => upstreams!.proxy.calls.length > 0, 10_000, 'a call in flight');
    const started = Date.now();
    expect(await instance.stop('SIGTERM')).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    const claimed = await database.db
      .selectFrom('deliveries')
      .select('customer_id')
      .where('state', '=', 'delivering')
      .execute();
    expect(claimed).toEqual([]);
    expect(await database.db.selectFrom('leases').selectAll().execute()).toEqual([]);

    // The next instance takes over at once and finishes the rest, well before the 60 s lease and
    // claims would have lapsed.
    upstreams.proxy.plan = { rate: 0, kinds: [] };
    instance = await startServiceProcess('integration/main.js', env);
    await waitUntil(
      async () =>
        (await database!.db.selectFrom('deliveries').select('state').execute()).filter(
          (r) => r.state === 'delivered',
        ).length === 5,
      20_000,
      'all five delivered',
    );
  }, 60_000);
});

describe('shutdown with slow peers', () => {
  it('with REQUEST_TIMEOUT_MS=15000 and an Inventory that never answers, exits 0 on SIGTERM past the old 10 s, within SHUTDOWN_TIMEOUT_MS', async () => {
    upstreams = await startUpstreams();
    upstreams.proxy.plan = { rate: 1, kinds: ['delay'], delayMs: 120_000 };
    database = await createTestDatabase<IntegrationTables>('integration');
    const env = {
      ...database.env,
      ...integrationEnv(upstreams),
      INTEGRATION_PORT: '0',
      REQUEST_TIMEOUT_MS: '15000',
    };
    instance = await startServiceProcess('integration/main.js', env);
    const [customerId] = await createCustomers(upstreams.crmUrl, 1);
    await waitUntil(() => upstreams!.proxy.calls.length > 0, 10_000, 'a call in flight');
    const started = Date.now();
    expect(await instance.stop('SIGTERM')).toBe(0);
    // Default SHUTDOWN_TIMEOUT_MS: the request timeout plus a 5 s margin.
    expect(Date.now() - started).toBeLessThan(20_000);
    // The call ended (timed out) and was recorded whole: nothing is left claimed.
    const row = await database.db
      .selectFrom('deliveries')
      .selectAll()
      .where('customer_id', '=', customerId!)
      .executeTakeFirstOrThrow();
    expect(row.state).not.toBe('delivering');

    upstreams.proxy.plan = { rate: 0, kinds: [] };
    instance = await startServiceProcess('integration/main.js', {
      ...env,
      RETRY_MAX_DELAY_MS: '100',
    });
    await waitUntil(
      async () => (await packageRequestsByCustomer(upstreams!.inventory)).get(customerId!) === 1,
      15_000,
      'the package request, once',
    );
  }, 90_000);

  it('refuses a SHUTDOWN_TIMEOUT_MS that would cut calls a healthy Inventory answers', async () => {
    const refused = await startServiceProcess('integration/main.js', {
      INTEGRATION_PORT: '0',
      REQUEST_TIMEOUT_MS: '15000',
      SHUTDOWN_TIMEOUT_MS: '12000',
    }).catch((error: Error) => error.message);
    expect(refused).toMatch(
      /SHUTDOWN_TIMEOUT_MS="12000" is not allowed; use a whole number from 20000/,
    );
  });
});

describe('readiness', () => {
  it('answers /ready 503 when the poll loop has stalled (a CRM that accepts and never answers)', async () => {
    silentServer = net.createServer(() => {
      // accept the connection and say nothing
    });
    await new Promise<void>((resolve) => silentServer!.listen(0, '127.0.0.1', resolve));
    const port = (silentServer.address() as net.AddressInfo).port;
    integration = await createTestApp(integrationService, {
      env: {
        CRM_URL: `http://127.0.0.1:${port}`,
        INVENTORY_URL: 'http://127.0.0.1:9',
        SYNC_MODE: 'poll',
        POLL_INTERVAL_MS: '100',
        REQUEST_TIMEOUT_MS: '300000',
      },
    });
    expect((await integration.app.inject({ method: 'GET', url: '/ready' })).statusCode).toBe(200);
    await integration.runtime.start?.({ url: 'http://127.0.0.1:9' });
    await waitUntil(
      async () =>
        (await integration!.app.inject({ method: 'GET', url: '/ready' })).statusCode === 503,
      5_000,
      '/ready to turn 503',
    );
    const problem = expectProblem(
      await integration.app.inject({ method: 'GET', url: '/ready' }),
      503,
    );
    expect(problem.detail).toContain('poll loop');
  });

  it('in webhook mode stays ready while the CRM refuses the subscription, and says why in its status', async () => {
    // A CRM that refuses every call: no webhook will come, the feed repair is what would bring
    // customers once the CRM answers; the service is not broken, so it stays in rotation.
    silentServer = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => silentServer!.listen(0, '127.0.0.1', resolve));
    const refusingCrm = `http://127.0.0.1:${(silentServer.address() as net.AddressInfo).port}`;
    integration = await createTestApp(integrationService, {
      env: { CRM_URL: refusingCrm, INVENTORY_URL: 'http://127.0.0.1:9', SYNC_MODE: 'webhook' },
    });
    await integration.runtime.start?.({ url: 'http://127.0.0.1:9' });
    const status = async () =>
      (await integration!.app.inject({ method: 'GET', url: '/api/status' })).json();
    await waitUntil(
      async () => (await status()).webhook.last_error !== null,
      5_000,
      'the failed subscription in the status',
    );
    expect((await status()).webhook.registered).toBe(false);
    expect((await integration.app.inject({ method: 'GET', url: '/ready' })).statusCode).toBe(200);
    await integration.runtime.stop?.();
  });
});
