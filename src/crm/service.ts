import type { ServiceDefinition } from '../core/service.js';
import { CustomerStore } from './customers.js';
import { crmMigrations, type CrmTables } from './migrations.js';
import { AmqpRelay } from './amqp-relay.js';
import { readCrmConfig } from './config.js';
import { EventLog } from './events.js';
import { WebhookEndpoints } from './webhook-endpoints.js';
import { webhookRoutes } from './webhook-routes.js';
import { WebhookSender } from './webhook-sender.js';
import { customerRoutes, eventRoutes } from './routes.js';

export const crmService: ServiceDefinition<CrmTables> = {
  name: 'crm',
  title: 'CRM API',
  description: 'Customers of the Mini Integration Platform demo CRM.',
  portVariable: 'CRM_PORT',
  defaultPort: 8000,
  databaseVariable: 'CRM_DATABASE_URL',
  migrations: crmMigrations,
  setup: ({ database, logger, metrics, env }) => {
    const config = readCrmConfig(env);
    const events = new EventLog(database.db, database.dialect);
    const webhooks = new WebhookSender({
      db: database.db,
      dialect: database.dialect,
      events,
      config,
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
      routes: async (app) => {
        await app.register(customerRoutes, { customers: new CustomerStore(database.db, events) });
        await app.register(eventRoutes, { events });
        await app.register(webhookRoutes, {
          endpoints: new WebhookEndpoints(database.db),
          allowPrivateTargets: config.allowPrivateWebhookTargets,
        });
      },
      start: async () => {
        webhooks.start();
        relay?.start();
      },
      stop: async () => {
        // Long-polls would hold the server open for up to their wait: answer them now.
        events.close();
        await Promise.all([webhooks.stop(), relay?.stop()]);
      },
    };
  },
};
