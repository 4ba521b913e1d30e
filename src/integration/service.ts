import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import { redactUrl } from '../core/config.js';
import type { ServiceDefinition } from '../core/service.js';
import { createCircuit, type CircuitState } from './circuit.js';
import { CallThrottle } from '../core/call-throttle.js';
import { RetentionSweeper, type RetainedTable } from '../core/retention.js';
import { CrmClient } from './crm-client.js';
import { InventoryClient, type PackageChange } from './inventory-client.js';
import { claimMsOf, readIntegrationConfig, type SyncMode } from './config.js';
import { DeliveryWorker } from './delivery.js';
import { createIntegrationMetrics } from './metrics.js';
import { integrationMigrations, type IntegrationTables } from './migrations.js';
import { createAlerting } from './alerts/alerting.js';
import { adminRoutes, backlogOf } from './routes.js';
import { timelineRoutes } from './timeline-routes.js';
import { controlRoutes } from './control-routes.js';
import { auditRoutes } from './audit-routes.js';
import { AuditJobs } from './audit/audit-jobs.js';
import { createAmqpSource } from './sources/amqp.js';
import { createFeedSource, FEED_CURSOR, FeedSource } from './sources/feed.js';
import type { Source, SourceContext } from './sources/source.js';
import { createWebhookSource } from './sources/webhook.js';
import { createSyncStore } from './store/sync-store.js';

/** `public/dashboard`, found from both `src/integration` (tests) and `dist/integration`. */
/** What the integration keeps for RETENTION_DAYS: pushed message ids, timeline entries, alerts sent. */
export const INTEGRATION_RETAINED: RetainedTable[] = [
  { table: 'received_messages', key: 'message_id', writtenAt: 'received_at', cutoff: (ms) => ms },
  { table: 'timeline_entries', key: 'seq', writtenAt: 'at', cutoff: (ms) => ms },
  { table: 'alert_outbox', key: 'seq', writtenAt: 'created_at', cutoff: (ms) => ms },
];

const DASHBOARD_DIR = fileURLToPath(new URL('../../public/dashboard/', import.meta.url));

const CIRCUIT_STATE_VALUE: Record<CircuitState, number> = { closed: 0, half_open: 1, open: 2 };

/** Where customers come from in each `SYNC_MODE`: the one place a source is chosen. */
const SOURCES: Record<SyncMode, (context: SourceContext) => Source[]> = {
  poll: (context) => [createFeedSource(context, { reconcile: false })],
  // Every push mode repairs from the feed what its push has not brought within GAP_REPAIR_MS: a
  // webhook endpoint deleted or given up on, a message dead-lettered by the broker.
  webhook: (context) => [
    createWebhookSource(context),
    createFeedSource(context, { reconcile: true }),
  ],
  amqp: (context) => [createAmqpSource(context), createFeedSource(context, { reconcile: true })],
  // The default: webhook mode under the name it had when webhook mode did not repair.
  hybrid: (context) => [
    createWebhookSource(context),
    createFeedSource(context, { reconcile: true }),
  ],
};

export const integrationService: ServiceDefinition<IntegrationTables> = {
  name: 'integration',
  title: 'Integration service',
  description:
    'Moves every new CRM customer to Inventory as exactly one welcome-package request; admin API for status and dead letters.',
  portVariable: 'INTEGRATION_PORT',
  defaultPort: 8002,
  databaseVariable: 'INTEGRATION_DATABASE_URL',
  migrations: integrationMigrations,
  longestCallMs: (env) => readIntegrationConfig(env).requestTimeoutMs,
  setup: ({ database, logger, metrics: registry, env }) => {
    const config = readIntegrationConfig(env);
    const store = createSyncStore(database);
    const metrics = createIntegrationMetrics(registry, store.readModels, store.controls);
    const http = { apiToken: config.apiToken, timeoutMs: config.requestTimeoutMs };
    const inventory = new InventoryClient({
      ...http,
      baseUrl: config.inventoryUrl,
      throttle: config.inventoryMaxRps > 0 ? new CallThrottle(config.inventoryMaxRps) : undefined,
    });
    const crm = new CrmClient({ ...http, baseUrl: config.crmUrl });
    const sources = SOURCES[config.syncMode]({ config, crm, store, metrics, registry, logger });
    metrics.showSources(sources.map((source) => source.name));
    const alerting = createAlerting({
      database,
      config,
      logger,
      registry,
      backlog: async () => backlogOf(await store.readModels.countByState()),
      feeds: sources.filter((source) => source instanceof FeedSource),
      circuitOpen: () => circuit.state() !== 'closed',
    });
    const circuit = createCircuit(
      (changes: PackageChange[], headers: Record<string, string>, signal: AbortSignal) =>
        inventory.apply(changes, headers, signal),
      {
        name: 'inventory',
        resetMs: config.circuitResetMs,
        logger,
        onStateChange: (state) => {
          metrics.circuitState.set({ destination: 'inventory' }, CIRCUIT_STATE_VALUE[state]);
          alerting.onCircuitState(state);
        },
      },
    );
    const worker = new DeliveryWorker({
      store,
      apply: circuit.fire,
      circuitState: circuit.state,
      policy: {
        maxAttempts: config.maxAttempts,
        deadLetterAfterMs: config.deadLetterAfterMs,
        baseMs: config.retryBaseMs,
        maxDelayMs: config.retryMaxDelayMs,
      },
      concurrency: config.deliveryConcurrency,
      batchSize: config.deliveryBatchSize,
      claimMs: claimMsOf(config),
      circuitResetMs: config.circuitResetMs,
      instanceId: config.instanceId,
      logger,
      metrics,
    });
    const sweeper = new RetentionSweeper(
      database.db,
      INTEGRATION_RETAINED,
      config.retentionMs,
      logger,
    );
    const audits = new AuditJobs({
      audits: store.audits,
      crm,
      inventory,
      instanceId: config.instanceId,
      logger,
      // A customer the CRM changed this recently may not have been pushed or read yet.
      settleMs: Math.max(30_000, 3 * config.gapRepairMs),
      onRepaired: () => worker.wake(),
    });

    return {
      routes: async (app) => {
        await app.register(adminRoutes, {
          store,
          mode: config.syncMode,
          instanceId: config.instanceId,
          sources,
          circuit: circuit.state,
          cursor: () => store.leases.readCursor(FEED_CURSOR),
          onReplay: () => worker.wake(),
        });
        await app.register(timelineRoutes, { store, crm });
        await app.register(alerting.routes);
        await app.register(controlRoutes, {
          store,
          crm,
          instanceId: config.instanceId,
          onResume: () => worker.wake(),
        });
        await app.register(auditRoutes, {
          audits: store.audits,
          jobs: audits,
          crm,
          inventory,
          instanceId: config.instanceId,
          onResent: () => worker.wake(),
        });
        // The dashboard: static files, no build step; the page reads /api/dashboard.
        await app.register(fastifyStatic, {
          root: DASHBOARD_DIR,
          prefix: '/',
          wildcard: false,
          index: ['index.html'],
        });
        for (const source of sources) if (source.routes) await app.register(source.routes);
      },
      start: async (listening) => {
        logger.info(
          `Syncing in ${config.syncMode} mode from ${redactUrl(config.crmUrl)} to ${redactUrl(config.inventoryUrl)} as ${config.instanceId}`,
        );
        worker.start();
        for (const source of sources) source.start(worker, listening);
        sweeper.start();
        await alerting.start();
      },
      stop: async (abandonAfterMs) => {
        // Stop taking work first; then let the deliveries in flight finish, or release them.
        const started = Date.now();
        await Promise.all([...sources.map((source) => source.stop()), audits.stop()]);
        await worker.stop(
          abandonAfterMs === undefined ? undefined : abandonAfterMs - (Date.now() - started),
        );
        circuit.shutdown();
        // Alerts the stopping raised are still sent, or left in the outbox for the next instance.
        await alerting.stop(
          abandonAfterMs === undefined ? undefined : abandonAfterMs - (Date.now() - started),
        );
        await sweeper.stop();
      },
      checkReady: async () => {
        const reasons = sources.flatMap((source) => source.notReadyReason() ?? []);
        if (reasons.length > 0) throw new Error(reasons.join('; '));
      },
    };
  },
};
