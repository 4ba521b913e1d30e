import type { ServiceDefinition } from '../core/service.js';
import { CustomerStore } from './customers.js';
import { crmMigrations, type CrmTables } from './migrations.js';
import { EventLog } from './events.js';
import { customerRoutes, eventRoutes } from './routes.js';

export const crmService: ServiceDefinition<CrmTables> = {
  name: 'crm',
  title: 'CRM API',
  description: 'Customers of the Mini Integration Platform demo CRM.',
  portVariable: 'CRM_PORT',
  defaultPort: 8000,
  databaseVariable: 'CRM_DATABASE_URL',
  migrations: crmMigrations,
  setup: ({ database }) => {
    const events = new EventLog(database.db, database.dialect);
    return {
      routes: async (app) => {
        await app.register(customerRoutes, { customers: new CustomerStore(database.db, events) });
        await app.register(eventRoutes, { events });
      },
      // Long-polls would hold the server open for up to their wait: answer them now.
      stop: async () => events.close(),
    };
  },
};
