import type { Database } from '../core/db.js';
import type { Logger } from '../core/logging.js';
import { PLATFORM_VERSION, type ServiceDefinition } from '../core/service.js';
import { CustomerStore } from './customers.js';
import { crmMigrations, type CrmTables } from './migrations.js';
import { AmqpRelay } from './amqp-relay.js';
import { readCrmConfig } from './config.js';
import { EVENTS_CHANNEL, EventLog } from './events.js';
import { sealStoredSecrets } from './seal-stored-secrets.js';
import { WebhookEndpoints } from './webhook-endpoints.js';
import { webhookMessageRoutes } from './webhook-message-routes.js';
import { webhookRoutes } from './webhook-routes.js';
import { WebhookSender } from './webhook-sender.js';
import type { ResolveHost, WebhookTargetPolicy } from '../core/webhooks/targets.js';
import { customerRoutes, eventRoutes } from './routes.js';
import { CustomerStates, customerStateRoutes } from './customer-states.js';
import { asyncApiRoute } from './asyncapi.js';

export interface CrmServiceOptions {
  /**
   * Resolves webhook target host names, for the checks and the connections alike. Default the
   * system's resolver; tests give names private addresses without DNS.
   */
  resolveHost?: ResolveHost;
}

/** The CRM; `crmService` is it with the system's resolver. */
export function createCrmService(options: CrmServiceOptions = {}): ServiceDefinition<CrmTables> {
  return {
    name: 'crm',
    title: 'CRM API',
    description: 'Customers of the Mini Integration Platform demo CRM.',
    portVariable: 'CRM_PORT',
    defaultPort: 8000,
    databaseVariable: 'CRM_DATABASE_URL',
    migrations: crmMigrations,
    longestCallMs: (env) => readCrmConfig(env).webhookTimeoutMs,
    setup: ({ database, logger, metrics, env }) => {
      const config = readCrmConfig(env);
      const targets: WebhookTargetPolicy = {
        allowPrivate: config.allowPrivateWebhookTargets,
        allowList: config.allowedPrivateWebhookTargets,
        resolve: options.resolveHost,
      };
      const keyring = config.secretsKeys;
      const events = new EventLog(database.db, database.dialect);
      const webhooks = new WebhookSender({
        db: database.db,
        dialect: database.dialect,
        events,
        config,
        targets,
        keyring,
        logger,
        metrics,
      });
      const relay = config.amqpUrl
        ? new AmqpRelay({
            db: database.db,
            events,
            url: config.amqpUrl,
            namePrefix: config.amqpNamePrefix,
            instanceId: config.instanceId,
            logger,
            metrics,
          })
        : undefined;
      events.onCommitted(({ webhookMessages }) => {
        if (webhookMessages) webhooks.wake();
        relay?.wake();
      });
      let stopListening: (() => Promise<void>) | undefined;
      return {
        prepare: async () => {
          const rewritten = await sealStoredSecrets(database, keyring);
          if (keyring.current) {
            logger.info(
              `Webhook signing secrets are encrypted with key ${keyring.current.id}${rewritten > 0 ? `; ${rewritten} endpoint(s) rewritten under it` : ''}`,
            );
          } else if (!config.loopbackOnly) {
            logger.warn(
              'Webhook signing secrets are stored in clear in the database; set SECRETS_KEY to encrypt them (make one with `openssl rand -base64 32`)',
            );
          }
        },
        routes: async (app) => {
          await app.register(customerRoutes, {
            customers: new CustomerStore(database.db, events, () => database.scrubSoon?.()),
          });
          await app.register(customerStateRoutes, {
            states: new CustomerStates(database.db, database.dialect),
          });
          await app.register(eventRoutes, { events });
          await app.register(asyncApiRoute, { version: PLATFORM_VERSION });
          const endpoints = new WebhookEndpoints(database.db, keyring);
          await app.register(webhookRoutes, { endpoints, targets });
          await app.register(webhookMessageRoutes, { endpoints });
        },
        start: async () => {
          stopListening = await listenToOtherProcesses(database, events, logger);
          events.handOffWebhookMessages(webhooks);
          webhooks.start();
          relay?.start();
        },
        stop: async (abandonAfterMs) => {
          // Long-polls would hold the server open for up to their wait: answer them now.
          events.close();
          await Promise.all([webhooks.stop(abandonAfterMs), relay?.stop(), stopListening?.()]);
        },
      };
    },
  };
}

export const crmService = createCrmService();

/**
 * On PostgreSQL, wakes long-polls and relays on the commits of other CRM processes sharing the
 * database (LISTEN/NOTIFY), as on this process's own. Without it they see them within 250 ms.
 */
async function listenToOtherProcesses(
  database: Database<CrmTables>,
  events: EventLog,
  logger: Logger,
): Promise<(() => Promise<void>) | undefined> {
  if (!database.listen) return undefined;
  const fallBack = (error: Error) => {
    logger.warn(
      `Not listening for other CRM processes' events (${error.message}); long-polls re-read every 250 ms instead`,
    );
    events.wakeOnNotifications(false);
  };
  try {
    return await database.listen(EVENTS_CHANNEL, events.wakeOnNotifications(true), fallBack);
  } catch (error) {
    fallBack(error as Error);
    return undefined;
  }
}
