import type { ServiceDefinition } from '../core/service.js';
import { createCircuit, type CircuitState } from './circuit.js';
import { CrmClient, InventoryClient } from './clients.js';
import { readIntegrationConfig } from './config.js';
import { DeliveryWorker } from './delivery.js';
import { createIntegrationMetrics } from './metrics.js';
import { integrationMigrations, type IntegrationTables } from './migrations.js';
import { FeedPoller } from './poller.js';
import { adminRoutes } from './routes.js';
import { SyncStore } from './store.js';

const CIRCUIT_STATE_VALUE: Record<CircuitState, number> = { closed: 0, half_open: 1, open: 2 };

export const integrationService: ServiceDefinition<IntegrationTables> = {
  name: 'integration',
  title: 'Integration service',
  description:
    'Moves every new CRM customer to Inventory as exactly one welcome-package request; admin API for status and dead letters.',
  portVariable: 'INTEGRATION_PORT',
  defaultPort: 8002,
  databaseVariable: 'INTEGRATION_DATABASE_URL',
  migrations: integrationMigrations,
  setup: ({ database, logger, metrics: registry, env }) => {
    const config = readIntegrationConfig(env);
    const store = new SyncStore(database);
    const metrics = createIntegrationMetrics(registry, store);
    const http = { apiToken: config.apiToken, timeoutMs: config.requestTimeoutMs };
    const inventory = new InventoryClient({ ...http, baseUrl: config.inventoryUrl });
    const crm = new CrmClient({ ...http, baseUrl: config.crmUrl });
    const circuit = createCircuit(
      (customerId: string) => inventory.createWelcomePackage(customerId),
      {
        name: 'inventory',
        resetMs: config.circuitResetMs,
        logger,
        onStateChange: (state) =>
          metrics.circuitState.set({ destination: 'inventory' }, CIRCUIT_STATE_VALUE[state]),
      },
    );
    const worker = new DeliveryWorker({
      store,
      send: circuit.fire,
      circuitState: circuit.state,
      policy: {
        maxAttempts: config.maxAttempts,
        deadLetterAfterMs: config.deadLetterAfterMs,
        baseMs: config.retryBaseMs,
        maxDelayMs: config.retryMaxDelayMs,
      },
      concurrency: config.deliveryConcurrency,
      claimMs: Math.max(config.leaseMs, config.requestTimeoutMs * 3),
      circuitResetMs: config.circuitResetMs,
      instanceId: config.instanceId,
      logger,
      metrics,
    });
    const poller = new FeedPoller({
      store,
      crm,
      intervalMs: config.pollIntervalMs,
      batchSize: config.pollBatchSize,
      leaseMs: config.leaseMs,
      instanceId: config.instanceId,
      logger,
      metrics,
      onRecorded: () => worker.wake(),
    });

    return {
      routes: async (app) => {
        await app.register(adminRoutes, {
          store,
          mode: config.syncMode,
          instanceId: config.instanceId,
          poller: () => poller.status,
          circuit: circuit.state,
          cursor: () => store.readCursor('crm'),
          onReplay: () => worker.wake(),
        });
      },
      start: async () => {
        logger.info(
          `Syncing in ${config.syncMode} mode from ${config.crmUrl} to ${config.inventoryUrl} as ${config.instanceId}`,
        );
        worker.start();
        poller.start();
      },
      stop: async () => {
        await poller.stop();
        await worker.stop();
        circuit.shutdown();
      },
      checkReady: async () => {
        const silentMs = Date.now() - poller.status.lastTickAt;
        if (silentMs > 3 * poller.tickBudgetMs) {
          throw new Error(
            `the poll loop has not completed a read for ${Math.round(silentMs / 1000)} s`,
          );
        }
      },
    };
  },
};
