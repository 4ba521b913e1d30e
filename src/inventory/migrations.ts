import { sql, type Generated } from 'kysely';
import type { DialectName } from '../core/db.js';
import { refuseValuesOutside, type Migration } from '../core/migrations.js';
import { replaceValueTriggersWithChecks } from '../core/value-checks.js';
import {
  PACKAGE_REQUEST_STATUSES,
  type PackageRequestStatus,
} from '../contracts/package-requests.js';

/** Inventory's tables, forward only: add a new entry, never edit a released one. */
export const inventoryMigrations: Migration[] = [
  {
    version: 1,
    name: 'create package requests and idempotency keys',
    async up(db, types) {
      await db.schema
        .createTable('package_requests')
        .addColumn('seq', types.serialPrimaryKey, types.serialKey)
        .addColumn('id', 'text', (c) => c.notNull().unique())
        .addColumn('customer_id', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('created_at', types.timestamp, (c) => c.notNull())
        // The one-request-per-customer-and-kind rule lives here, where no race can get past it.
        .addUniqueConstraint('package_requests_customer_kind_unique', ['customer_id', 'kind'])
        .execute();
      await db.schema
        .createTable('idempotency_keys')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('request_fingerprint', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('claim_id', 'text')
        .addColumn('locked_until', types.timestamp)
        .addColumn('response_status', 'integer')
        .addColumn('response_body', 'text')
        .addColumn('created_at', types.timestamp, (c) => c.notNull())
        .execute();
    },
  },
  {
    version: 2,
    name: 'recipients, customer versions and statuses of package requests',
    async up(db, types, dialect) {
      for (const [column, type] of [
        ['recipient_name', 'text'],
        ['recipient_email', 'text'],
        ['customer_version', 'bigint'],
        ['updated_at', types.timestamp],
      ] as const) {
        await db.schema.alterTable('package_requests').addColumn(column, type).execute();
      }
      // Existing requests: nobody said whom to send them to or from which customer version.
      await sql`update package_requests set updated_at = created_at`.execute(db);
      // Answers stored under idempotency keys are replayed through the new response schema: a
      // created request gets the fields its row got. (409 problems are sent as stored.)
      await sql`update idempotency_keys set response_body = ${
        dialect === 'postgres'
          ? sql`(response_body::jsonb || jsonb_build_object('recipient_name', null,
              'recipient_email', null, 'customer_version', null,
              'updated_at', response_body::jsonb -> 'created_at'))::text`
          : sql`json_set(response_body, '$.recipient_name', null, '$.recipient_email', null,
              '$.customer_version', null, '$.updated_at', json_extract(response_body, '$.created_at'))`
      } where state = 'completed' and response_status = 201`.execute(db);

      if (dialect === 'postgres') {
        // A process of the previous version, still running during a rolling upgrade, inserts
        // without updated_at: the default keeps its creates working.
        await sql`alter table package_requests alter column updated_at set default now()`.execute(
          db,
        );
        await sql`alter table package_requests alter column updated_at set not null`.execute(db);
      }
      // SQLite cannot add a NOT NULL to an existing table without rebuilding it: updated_at is
      // always written there, and read as created_at where a previous version left it null.
      await refuseValuesOutside(db, dialect, {
        table: 'package_requests',
        column: 'status',
        allowed: PACKAGE_REQUEST_STATUSES,
        rows: 'package requests',
        what: 'a status',
      });
    },
  },
  {
    version: 3,
    name: 'package request of each stored answer; cancelled requests erased',
    async up(db, _types, dialect) {
      // Which request a stored answer is about, so a cancel finds the answers to erase at once.
      await db.schema
        .alterTable('idempotency_keys')
        .addColumn('package_request_id', 'text')
        .execute();
      await db.schema
        .createIndex('idempotency_keys_package_request_id')
        .on('idempotency_keys')
        .column('package_request_id')
        .execute();
      // A 200 or 201 answer is the request itself; a 409 names it as existing_request or
      // package_request.
      await sql`update idempotency_keys set package_request_id = ${
        dialect === 'postgres'
          ? sql`coalesce(response_body::jsonb -> 'existing_request' ->> 'id',
              response_body::jsonb -> 'package_request' ->> 'id', response_body::jsonb ->> 'id')`
          : sql`coalesce(json_extract(response_body, '$.existing_request.id'),
              json_extract(response_body, '$.package_request.id'), json_extract(response_body, '$.id'))`
      } where state = 'completed' and response_status in (200, 201, 409)`.execute(db);

      // Requests cancelled before this version kept their recipient: erase it as a cancel now does.
      await sql`update package_requests set recipient_name = null, recipient_email = null
        where status = 'cancelled'`.execute(db);
      await sql`update idempotency_keys set response_body = ${recipientErased(dialect)}
        where package_request_id in (select id from package_requests where status = 'cancelled')`.execute(
        db,
      );
    },
  },
  {
    version: 4,
    name: 'index idempotency records by age, for the retention sweep',
    async up(db) {
      await db.schema
        .createIndex('idempotency_keys_created_at')
        .on('idempotency_keys')
        .column('created_at')
        .execute();
    },
  },
  {
    version: 5,
    name: 'index package requests by customer id in byte order, for audits that page through them',
    async up(db, _types, dialect) {
      // SQLite compares text byte by byte already; PostgreSQL follows the database's collation.
      if (dialect !== 'postgres') return;
      await sql`create index package_requests_customer_id_bytes on package_requests (customer_id collate "C")`.execute(
        db,
      );
    },
  },
  {
    version: 6,
    name: 'check package request statuses in the table, not by triggers (SQLite)',
    async up(db, _types, dialect) {
      await replaceValueTriggersWithChecks(db, dialect, 'package_requests', [
        { column: 'status', allowed: PACKAGE_REQUEST_STATUSES },
      ]);
    },
  },
];

/** The recipient fields wherever a stored answer holds the request, as JSON paths. */
const RECIPIENT_PATHS = ['', 'existing_request.', 'package_request.'].flatMap((prefix) =>
  ['recipient_name', 'recipient_email'].map((field) => `${prefix}${field}`),
);

/** `response_body` with every recipient field it has set to null, and none added. */
function recipientErased(dialect: DialectName) {
  if (dialect === 'postgres') {
    // create_missing false: a path the body lacks leaves it as it is.
    const erased = RECIPIENT_PATHS.reduce(
      (body, path) =>
        sql`jsonb_set(${body}, ${`{${path.replace('.', ',')}}`}::text[], 'null', false)`,
      sql`response_body::jsonb`,
    );
    return sql`(${erased})::text`;
  }
  // json_replace changes only the paths the body has.
  const pairs = RECIPIENT_PATHS.map((path) => sql`${`$.${path}`}, null`);
  return sql`json_replace(response_body, ${sql.join(pairs)})`;
}

export interface InventoryTables {
  package_requests: {
    seq: Generated<number>;
    id: string;
    customer_id: string;
    kind: string;
    status: PackageRequestStatus;
    recipient_name: string | null;
    recipient_email: string | null;
    /** bigint on PostgreSQL, read as a number (safe integers only, as the schema allows). */
    customer_version: number | null;
    created_at: string | Date;
    /** Null only on SQLite, in rows a process of the previous version wrote during an upgrade. */
    updated_at: string | Date | null;
  };
  idempotency_keys: {
    key: string;
    request_fingerprint: string;
    state: 'in_flight' | 'completed';
    claim_id: string | null;
    locked_until: string | Date | null;
    response_status: number | null;
    response_body: string | null;
    created_at: string | Date;
    /** The package request the stored answer is about, if any (migration 3). */
    package_request_id: string | null;
  };
}
