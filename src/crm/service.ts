import type { ServiceDefinition } from '../core/service.js';
import { CustomerStore } from './customers.js';
import { crmMigrations, type CrmTables } from './migrations.js';
import { customerRoutes } from './routes.js';

export const crmService: ServiceDefinition<CrmTables> = {
  name: 'crm',
  title: 'CRM API',
  description: 'Customers of the Mini Integration Platform demo CRM.',
  portVariable: 'CRM_PORT',
  defaultPort: 8000,
  databaseVariable: 'CRM_DATABASE_URL',
  migrations: crmMigrations,
  routes: (database) => async (app) => {
    await app.register(customerRoutes, { customers: new CustomerStore(database.db) });
  },
};
