import fs from 'node:fs';
import path from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import {
  CompiledQuery,
  Kysely,
  PostgresDialect,
  SqliteDialect,
  SqliteDriver,
  SqliteQueryCompiler,
  sql,
  type ColumnDefinitionBuilder,
  type QueryCompiler,
  type SelectModifierNode,
  type DatabaseConnection,
  type Driver,
  type SqliteDialectConfig,
} from 'kysely';
import pg from 'pg';
import { redactUrl } from './config.js';
import { SQLITE_BUSY_TIMEOUT_MS, SqliteScrubber } from './sqlite-scrub.js';

// Counts and sequence values come back from PostgreSQL as int8 strings; ours stay far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

export type DialectName = 'sqlite' | 'postgres';

export interface Database<Tables> {
  db: Kysely<Tables>;
  dialect: DialectName;
  /** Where the data lives, safe to log (no password). */
  location: string;
  /** Resolves when a trivial query succeeds; rejects otherwise. */
  ping(): Promise<void>;
  /**
   * PostgreSQL only: calls `onNotify` with the payload of each `pg_notify` on `channel` in this
   * database's schema (see `notifyChannel`), on a connection of its own; `onError` when that
   * connection fails (listening then stops). Answers a function that stops listening.
   */
  listen?(
    channel: string,
    onNotify: (payload: string) => void,
    onError: (error: Error) => void,
  ): Promise<() => Promise<void>>;
  /**
   * SQLite only: records that a deletion erased personal data; within `scrubAfterMs` (once
   * however often it is called) the file is rewritten and its write-ahead log emptied, so no byte
   * of it is left (see `SqliteScrubber`). Best effort against other processes: while one holds
   * the file it tries again later, and a scrub still due survives a crash.
   */
  scrubSoon?(): void;
  close(): Promise<void>;
}

/**
 * The SQL expression naming `channel` in the current schema, for `pg_notify`: processes sharing a
 * database but not a schema (tests, tenants) do not wake each other.
 */
export function notifyChannel(channel: string) {
  return sql<string>`${channel + ':'} || current_schema()`;
}

export interface OpenDatabaseOptions {
  /** `postgres://…` URL; when absent the embedded SQLite file is used. */
  url?: string | undefined;
  /** SQLite file path, used when `url` is absent. */
  sqliteFile: string;
  /** PostgreSQL schema to create (if missing) and use; default `public`. Tests use one each. */
  schema?: string | undefined;
  /** Largest number of pooled PostgreSQL connections. Default 10. */
  maxConnections?: number;
  /** SQLite: how long after an erasure its file is scrubbed, in ms. Default 60,000. */
  scrubAfterMs?: number;
}

/**
 * SQLite's default deferred transactions fail at once with SQLITE_BUSY when a reader upgrades to a
 * writer while another process writes; `begin immediate` takes the write lock up front and waits
 * for it under `busy_timeout` instead.
 */
class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }
}

const ROW_LOCKS = new Set([
  'ForKeyShare',
  'ForNoKeyUpdate',
  'ForUpdate',
  'ForShare',
  'NoWait',
  'SkipLocked',
]);

/**
 * SQLite has no row locks, and needs none: a write transaction (`begin immediate`) holds the whole
 * database until it commits. Leaving out `for share`, `for update` and the like lets a query lock
 * the rows it reads on PostgreSQL and run unchanged on SQLite.
 */
class SqliteCompilerWithoutRowLocks extends SqliteQueryCompiler {
  protected override visitSelectModifier(node: SelectModifierNode): void {
    if (node.modifier !== undefined && ROW_LOCKS.has(node.modifier)) return;
    super.visitSelectModifier(node);
  }
}

class ImmediateSqliteDialect extends SqliteDialect {
  readonly #config: SqliteDialectConfig;
  constructor(config: SqliteDialectConfig) {
    super(config);
    this.#config = config;
  }
  override createDriver(): Driver {
    return new ImmediateSqliteDriver(this.#config);
  }
  override createQueryCompiler(): QueryCompiler {
    return new SqliteCompilerWithoutRowLocks();
  }
}

function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export async function openDatabase<Tables>(
  options: OpenDatabaseOptions,
): Promise<Database<Tables>> {
  if (options.url) {
    const schema = options.schema;
    if (schema) {
      const client = new pg.Client({ connectionString: options.url });
      await client.connect();
      try {
        await client.query(`create schema if not exists ${quoteIdentifier(schema)}`);
      } finally {
        await client.end();
      }
    }
    const pool = new pg.Pool({
      connectionString: options.url,
      max: options.maxConnections ?? 10,
      ...(schema ? { options: `-c search_path=${quoteIdentifier(schema)}` } : {}),
    });
    const db = new Kysely<Tables>({ dialect: new PostgresDialect({ pool }) });
    return {
      db,
      dialect: 'postgres',
      location: redactUrl(options.url) + (schema ? ` (schema ${schema})` : ''),
      ping: async () => {
        await sql`select 1`.execute(db);
      },
      listen: async (channel, onNotify, onError) => {
        const client = new pg.Client({
          connectionString: options.url,
          ...(schema ? { options: `-c search_path=${quoteIdentifier(schema)}` } : {}),
        });
        client.on('error', onError);
        await client.connect();
        const query = sql`select ${notifyChannel(channel)} as name`.compile(db);
        const { rows } = await client.query<{ name: string }>(query.sql, [...query.parameters]);
        const name = rows[0]!.name;
        client.on('notification', (message) => {
          if (message.channel === name) onNotify(message.payload ?? '');
        });
        await client.query(`listen ${quoteIdentifier(name)}`);
        return async () => {
          await client.end().catch(() => {});
        };
      },
      close: () => db.destroy(),
    };
  }

  fs.mkdirSync(path.dirname(options.sqliteFile), { recursive: true });
  const sqlite = new SqliteDatabase(options.sqliteFile);
  sqlite.pragma('journal_mode = WAL');
  // NORMAL is durable against process crashes in WAL mode; only an OS crash can lose the last commit.
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
  sqlite.pragma('foreign_keys = ON');
  // Deleted and overwritten content is zeroed where it lay at once; the scrub after erasures
  // clears the copies a page rebalance left elsewhere.
  sqlite.pragma('secure_delete = ON');
  const db = new Kysely<Tables>({
    dialect: new ImmediateSqliteDialect({ database: withStatementCache(sqlite) }),
  });
  const scrubber = new SqliteScrubber(db, options.sqliteFile, options.scrubAfterMs ?? 60_000);
  scrubber.resume();
  return {
    db,
    dialect: 'sqlite',
    location: options.sqliteFile,
    ping: async () => {
      await sql`select 1`.execute(db);
    },
    scrubSoon: () => scrubber.erased(),
    close: async () => {
      await scrubber.stop();
      await db.destroy();
    },
  };
}

/** Prepared statements kept per SQLite connection, most recently used first out last. */
const STATEMENT_CACHE_SIZE = 256;

/**
 * Kysely prepares every query anew; the same few statements run thousands of times a second, so
 * keep the most recently used ones prepared (SQLite parses and plans each one once).
 */
function withStatementCache(sqlite: SqliteDatabase.Database) {
  const statements = new Map<string, SqliteDatabase.Statement>();
  return {
    close: () => sqlite.close(),
    prepare: (text: string) => {
      let statement = statements.get(text);
      if (statement) {
        statements.delete(text);
      } else {
        statement = sqlite.prepare(text);
        if (statements.size >= STATEMENT_CACHE_SIZE) {
          statements.delete(statements.keys().next().value!);
        }
      }
      statements.set(text, statement);
      return statement;
    },
  };
}

/** True when the error is a unique-constraint violation, on either database. */
export function isUniqueViolation(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const code = (error as { code?: unknown }).code;
  return (
    code === '23505' ||
    code === 'SQLITE_CONSTRAINT_UNIQUE' ||
    code === 'SQLITE_CONSTRAINT_PRIMARYKEY'
  );
}

/** Column types that mean the same on both databases. */
export interface ColumnTypes {
  /** Auto-increasing integer primary key, for ordering and keyset pagination; use with `serialKey`. */
  serialPrimaryKey: 'integer' | 'bigserial';
  /** Makes a `serialPrimaryKey` column the primary key (AUTOINCREMENT on SQLite: ids never reused). */
  serialKey: (column: ColumnDefinitionBuilder) => ColumnDefinitionBuilder;
  /** An instant, stored as an ISO-8601 string on SQLite. */
  timestamp: 'text' | 'timestamptz';
  /** Milliseconds since the epoch, as a 64-bit integer. */
  epochMs: 'integer' | 'bigint';
}

export function columnTypes(dialect: DialectName): ColumnTypes {
  return dialect === 'postgres'
    ? {
        serialPrimaryKey: 'bigserial',
        serialKey: (column) => column.primaryKey(),
        timestamp: 'timestamptz',
        epochMs: 'bigint',
      }
    : {
        serialPrimaryKey: 'integer',
        serialKey: (column) => column.primaryKey().autoIncrement(),
        timestamp: 'text',
        epochMs: 'integer',
      };
}

/** Converts a timestamp column read from either database to an ISO-8601 string. */
export function toIsoString(value: string | Date): string {
  return (value instanceof Date ? value : new Date(value)).toISOString();
}
