import type { FastifyPluginAsync } from 'fastify';
import type { Registry } from 'prom-client';
import type { Database } from '../../core/db.js';
import type { Logger } from '../../core/logging.js';
import { ConfigError, redactUrl } from '../../core/config.js';
import {
  checkWebhookTarget,
  WebhookTargetError,
  type WebhookTargetPolicy,
} from '../../core/webhooks/targets.js';
import type { IntegrationConfig } from '../config.js';
import { createAlertMetrics } from '../metrics.js';
import type { IntegrationTables } from '../migrations.js';
import { INVENTORY } from '../store/controls.js';
import { createAlertEndpoints } from './endpoints.js';
import { AlertMonitor, circuitAlerts, type StallingSource } from './monitor.js';
import { alertRoutes } from './routes.js';
import { AlertSender } from './sender.js';

/**
 * Refuses to start with an `ALERT_WEBHOOK_URLS` entry the target guard refuses (a private or
 * metadata address not admitted), as the admin API would; a host that does not resolve yet (a
 * container still starting) is only warned about, as each call checks it again.
 */
async function checkConfiguredTargets(
  urls: string[],
  targets: WebhookTargetPolicy,
  logger: Logger,
): Promise<void> {
  for (const url of urls) {
    try {
      await checkWebhookTarget(url, targets);
    } catch (error) {
      if (!(error instanceof WebhookTargetError)) throw error;
      const shown = redactUrl(url, { everyValue: true });
      const reason = error.message.replace(/\.$/, '');
      if (!error.unresolved) throw new ConfigError('ALERT_WEBHOOK_URLS', shown, reason);
      logger.warn(`Alert endpoint ${shown} (ALERT_WEBHOOK_URLS): ${error.message}`);
    }
  }
}

export interface AlertingOptions {
  database: Database<IntegrationTables>;
  config: IntegrationConfig;
  logger: Logger;
  registry: Registry;
  /** Deliveries still to be made (pending, retrying, delivering). */
  backlog: () => Promise<number>;
  /** The feed sources this instance runs, watched for stalls. */
  feeds: readonly StallingSource[];
  /** Whether this instance's circuit to Inventory is open or half-open now. */
  circuitOpen: () => boolean;
}

/**
 * The integration service's operational alerts, put together: the admin routes that register
 * endpoints, the outbox sender, the monitor of states (backlog, stalled feed, dead letters
 * replayed) and the circuit's alerts. Dead letters open their incident from the claims'
 * settlement itself (store/claims.ts); the audit calls `openIncident` (incidents.ts).
 */
export function createAlerting(options: AlertingOptions) {
  const { database, config, logger } = options;
  const { db, dialect } = database;
  const targets: WebhookTargetPolicy = {
    allowPrivate: config.webhookTargets.allowPrivate,
    allowList: config.webhookTargets.allowList,
  };
  const endpoints = createAlertEndpoints(db);
  const metrics = createAlertMetrics(options.registry, async () => {
    const row = await db
      .selectFrom('alert_outbox')
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .where('state', '=', 'pending')
      .executeTakeFirstOrThrow();
    return Number(row.count);
  });
  const sender = new AlertSender({
    db,
    dialect,
    targets,
    timeoutMs: config.alertTimeoutMs,
    retryBaseMs: config.alertRetryBaseMs,
    giveUpAfterMs: config.alertGiveUpAfterMs,
    instanceId: config.instanceId,
    onOutcome: (type, outcome) => metrics.calls.inc({ type, outcome }),
    logger,
  });
  const monitor = new AlertMonitor({
    db,
    dialect,
    backlog: options.backlog,
    backlogThreshold: config.alertBacklog,
    forMs: config.alertForMs,
    feeds: options.feeds,
    instanceId: config.instanceId,
    circuitOpen: options.circuitOpen,
    logger,
  });
  const onCircuit = circuitAlerts(db, INVENTORY, logger);
  const routes: FastifyPluginAsync = async (app) => {
    await app.register(alertRoutes, { endpoints, targets });
  };

  return {
    routes,
    /** For the circuit's `onStateChange`. */
    onCircuitState: (state: 'closed' | 'half_open' | 'open') =>
      onCircuit(state, config.circuitResetMs),
    async start(): Promise<void> {
      await checkConfiguredTargets(config.alertWebhookUrls, targets, logger);
      await endpoints.registerConfigured(config.alertWebhookUrls, config.alertWebhookSecret);
      sender.start();
      monitor.start();
    },
    async stop(abandonAfterMs?: number): Promise<void> {
      await monitor.stop();
      await sender.stop(abandonAfterMs);
    },
  };
}
