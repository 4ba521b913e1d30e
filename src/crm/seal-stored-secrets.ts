import { sql } from 'kysely';
import type { Database } from '../core/db.js';
import type { CrmTables } from './migrations.js';
import type { SecretsKeyring } from './secrets-at-rest.js';

/**
 * Rewrites every webhook secret not stored as `keyring` writes now (in clear, or under a previous
 * key) with its current key, in one transaction; answers how many endpoints changed. Throws
 * `StoredSecretError` when a value is under a key the keyring lacks, so the CRM does not start
 * unable to sign.
 *
 * Safe with several CRMs: those starting at once take turns (an advisory lock on PostgreSQL, the
 * write lock on SQLite), and a row is only updated if it still holds what was read, so a secret
 * rotated meanwhile by a running CRM is never put back.
 */
export async function sealStoredSecrets(
  database: Database<CrmTables>,
  keyring: SecretsKeyring,
): Promise<number> {
  const { db, dialect } = database;
  const rewritten = await db.transaction().execute(async (trx) => {
    if (dialect === 'postgres') {
      await sql`select pg_advisory_xact_lock(hashtext(current_schema() || '.webhook_secrets'))`.execute(
        trx,
      );
    }
    const rows = await trx
      .selectFrom('webhook_endpoints')
      .select(['id', 'secret', 'previous_secret'])
      .orderBy('seq')
      .execute();
    let changed = 0;
    for (const row of rows) {
      const stale = [row.secret, row.previous_secret].filter(
        (value) => value !== null && !keyring.isCurrent(value),
      );
      if (stale.length === 0) continue;
      const reseal = (value: string) => keyring.seal(keyring.open(value, row.id), row.id);
      const result = await trx
        .updateTable('webhook_endpoints')
        .set({
          secret: reseal(row.secret),
          previous_secret: row.previous_secret === null ? null : reseal(row.previous_secret),
        })
        .where('id', '=', row.id)
        .where('secret', '=', row.secret)
        .where((w) =>
          row.previous_secret === null
            ? w('previous_secret', 'is', null)
            : w('previous_secret', '=', row.previous_secret),
        )
        .executeTakeFirst();
      changed += Number(result.numUpdatedRows);
    }
    return changed;
  });
  if (rewritten > 0 && dialect === 'sqlite') {
    // The replaced values, and older ones, linger in free space of the file and in the
    // write-ahead log: rebuild the file without them (once, as values are rewritten once), copy
    // the log into it and empty the log.
    await sql`vacuum`.execute(db);
    await sql`pragma wal_checkpoint(truncate)`.execute(db);
  }
  return rewritten;
}
