import type { Database } from '../../core/db.js';
import type { IntegrationTables } from '../migrations.js';
import { createAuditsRepository } from './audits.js';
import { createClaimsRepository } from './claims.js';
import { createControlsRepository } from './controls.js';
import { createInboxRepository } from './inbox.js';
import { createLeasesRepository } from './leases.js';
import { createReadModelsRepository } from './read-models.js';
import { createTimelineRepository } from './timeline.js';

/** The integration service's durable state, one repository per concern. */
export function createSyncStore(database: Database<IntegrationTables>) {
  const leases = createLeasesRepository(database);
  return {
    /** The database it is kept in (SQLite commits synchronously; see `GroupCommit`). */
    dialect: database.dialect,
    /** Where sources record customers (deliveries, pushed message ids, the feed's cursor). */
    inbox: createInboxRepository(database, leases),
    /** Claims on due deliveries and their settlement. */
    claims: createClaimsRepository(database),
    /** Leases and the feed cursors they guard. */
    leases,
    /** Queries for the admin API, dashboard and metrics; replays of dead letters. */
    readModels: createReadModelsRepository(database),
    /** Pausing and resuming delivery to Inventory. */
    controls: createControlsRepository(database, leases),
    /** Each customer's timeline (written by the inbox, the claims and the replays). */
    timeline: createTimelineRepository(database),
    /** Audit jobs, and customers sent through the pipeline again by an audit or a resync. */
    audits: createAuditsRepository(database),
  };
}

export type SyncStore = ReturnType<typeof createSyncStore>;
