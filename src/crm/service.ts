import type { ServiceDefinition } from '../core/service.js';
import { CustomerStore } from './customers.js';
import { crmMigrations, type CrmTables } from './migrations.js';
import { AmqpRelay } from './amqp-relay.js';
import { readCrmConfig } from './config.js';
import { EventLog } from './events.js';
import { sealStoredSecrets } from './seal-stored-secrets.js';
import { WebhookEndpoints } from './webhook-endpoints.js';
import { webhookMessageRoutes } from './webhook-message-routes.js';
import { webhookRoutes } from './webhook-routes.js';
import { WebhookSender } from './webhook-sender.js';
import type { ResolveHost, WebhookTargetPolicy } from './webhook-targets.js';
import { customerRoutes, eventRoutes } from './routes.js';

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
            logger,
            metrics,
          })
        : undefined;
      events.onCommitted(() => {
        webhooks.wake();
        relay?.wake();
      });
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
          await app.register(customerRoutes, { customers: new CustomerStore(database.db, events) });
          await app.register(eventRoutes, { events });
          const endpoints = new WebhookEndpoints(database.db, keyring);
          await app.register(webhookRoutes, { endpoints, targets });
          await app.register(webhookMessageRoutes, { endpoints });
        },
        start: async () => {
          webhooks.start();
          relay?.start();
        },
        stop: async (abandonAfterMs) => {
          // Long-polls would hold the server open for up to their wait: answer them now.
          events.close();
          await Promise.all([webhooks.stop(abandonAfterMs), relay?.stop()]);
        },
      };
    },
  };
}

export const crmService = createCrmService();
