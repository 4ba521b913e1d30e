import type { ServiceDefinition } from '../core/service.js';
import { IdempotencyKeys } from './idempotency.js';
import { inventoryMigrations, type InventoryTables } from './migrations.js';
import { packageRequestRoutes } from './routes.js';

export const inventoryService: ServiceDefinition<InventoryTables> = {
  name: 'inventory',
  title: 'Inventory API',
  description: 'Package requests of the Mini Integration Platform demo Inventory system.',
  portVariable: 'INVENTORY_PORT',
  defaultPort: 8001,
  databaseVariable: 'INVENTORY_DATABASE_URL',
  migrations: inventoryMigrations,
  setup: ({ database }) => ({
    routes: async (app) => {
      await app.register(packageRequestRoutes, {
        db: database.db,
        idempotencyKeys: new IdempotencyKeys(database.db),
        afterErasure: () => database.scrubSoon?.(),
      });
    },
  }),
};
