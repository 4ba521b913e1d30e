import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { ServiceDefinition } from '../core/service.js';
import { createCircuit, type CircuitState } from './circuit.js';
import { CrmClient, InventoryClient } from './clients.js';
import { readIntegrationConfig } from './config.js';
import { redactUrl } from '../core/config.js';
import { DeliveryWorker } from './delivery.js';
import { createIntegrationMetrics } from './metrics.js';
import { integrationMigrations, type IntegrationTables } from './migrations.js';
import { FeedPoller } from './poller.js';
import { AmqpSource } from './amqp-source.js';
import { adminRoutes } from './routes.js';
import { SyncStore } from './store.js';
import { WEBHOOK_PATH, WebhookRegistration, webhookReceiver } from './webhooks.js';

/** `public/dashboard`, found from both `src/integration` (tests) and `dist/integration`. */
const DASHBOARD_DIR = fileURLToPath(new URL('../../public/dashboard/', import.meta.url));

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
      (customerIds: string[], headers: Record<string, string>) =>
        inventory.createWelcomePackages(customerIds, headers),
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
      batchSize: config.deliveryBatchSize,
      claimMs: Math.max(config.leaseMs, config.requestTimeoutMs * 3),
      circuitResetMs: config.circuitResetMs,
      instanceId: config.instanceId,
      logger,
      metrics,
    });
    const { syncMode } = config;
    /** What both push sources (webhooks, RabbitMQ) do with a message's customers. */
    const recordPushed: typeof worker.recordPushed = (messageId, source, items) =>
      worker.recordPushed(messageId, source, items);
    const poller = ['poll', 'hybrid'].includes(syncMode)
      ? new FeedPoller({
          store,
          crm,
          intervalMs: config.pollIntervalMs,
          batchSize: config.pollBatchSize,
          leaseMs: config.leaseMs,
          instanceId: config.instanceId,
          logger,
          metrics,
          onRecorded: () => worker.wake(),
          reconcile: syncMode === 'hybrid',
        })
      : undefined;
    const registration = ['webhook', 'hybrid'].includes(syncMode)
      ? new WebhookRegistration(crm, logger)
      : undefined;
    const amqp =
      syncMode === 'amqp' && config.amqpUrl
        ? new AmqpSource({
            url: config.amqpUrl,
            namePrefix: config.amqpNamePrefix,
            prefetch: config.amqpPrefetch,
            record: recordPushed,
            metrics,
            logger,
          })
        : undefined;

    return {
      routes: async (app) => {
        await app.register(adminRoutes, {
          store,
          mode: config.syncMode,
          instanceId: config.instanceId,
          poller: () => poller,
          webhook: () => registration?.status,
          amqp: () => amqp?.status,
          circuit: circuit.state,
          cursor: () => store.readCursor('crm'),
          onReplay: () => worker.wake(),
        });
        // The dashboard: static files, no build step; the page reads /api/dashboard.
        await app.register(fastifyStatic, {
          root: DASHBOARD_DIR,
          prefix: '/',
          wildcard: false,
          index: ['index.html'],
        });
        if (registration) {
          await app.register(webhookReceiver, {
            registration,
            record: recordPushed,
            metrics,
            logger,
          });
        }
      },
      start: async ({ url }) => {
        logger.info(
          `Syncing in ${syncMode} mode from ${redactUrl(config.crmUrl)} to ${redactUrl(config.inventoryUrl)} as ${config.instanceId}`,
        );
        worker.start();
        poller?.start();
        registration?.start(config.webhookUrl ?? `${url}${WEBHOOK_PATH}`);
        amqp?.start();
      },
      stop: async () => {
        // Stop taking work first; then let the deliveries in flight finish.
        await Promise.all([poller?.stop(), registration?.stop(), amqp?.stop()]);
        await worker.stop();
        circuit.shutdown();
      },
      checkReady: async () => {
        // Webhook mode has no other source: until subscribed, new customers would be missed.
        if (syncMode === 'webhook' && registration && !registration.status.registered) {
          throw new Error(
            `not yet subscribed to the CRM's webhooks${registration.status.lastError ? ` (${registration.status.lastError})` : ''}`,
          );
        }
        const stalledMs = poller?.stalledForMs();
        if (stalledMs !== undefined) {
          throw new Error(
            `the poll loop has not completed a read for ${Math.round(stalledMs / 1000)} s`,
          );
        }
      },
    };
  },
};
