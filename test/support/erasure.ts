/**
 * Erasure counted where it is stored: how often each of a run's names and emails occurs in each
 * service's database, found by the fixed-length tokens they are built from (customer-lives.ts).
 */
import fs from 'node:fs';
import { sql } from 'kysely';
import type { ChaosPlatform } from './chaos.js';
import type { ServiceName } from './databases.js';

/** Occurrences of each token, per service. */
export type TokenCounts = Record<ServiceName, Map<string, number>>;

function tally(texts: Iterable<string | null>, pattern: string): Map<string, number> {
  const counts = new Map<string, number>();
  const matcher = new RegExp(pattern, 'g');
  for (const text of texts) {
    for (const token of text?.match(matcher) ?? []) counts.set(token, (counts.get(token) ?? 0) + 1);
  }
  return counts;
}

/**
 * What any reader of the databases can see: every text column of every table, read with SQL.
 * On PostgreSQL this is all SQL reaches: dead tuples (rows deleted or updated, until VACUUM
 * reclaims them) are out of its sight, so what the files hold is not counted there.
 */
export async function countTokensInRows(
  platform: ChaosPlatform,
  pattern: string,
): Promise<TokenCounts> {
  const counts = {} as TokenCounts;
  for (const [service, { db, dialect }] of Object.entries(platform.databases)) {
    const { rows: columns } =
      dialect === 'sqlite'
        ? await sql<{ table_name: string; column_name: string }>`
            select m.name as table_name, c.name as column_name
            from sqlite_master m join pragma_table_info(m.name) c
            where m.type = 'table' and upper(c.type) in ('TEXT', 'VARCHAR', 'JSON')`.execute(db)
        : await sql<{ table_name: string; column_name: string }>`
            select table_name, column_name from information_schema.columns
            where table_schema = current_schema()
              and data_type in ('text', 'character varying', 'character', 'json', 'jsonb')`.execute(
            db,
          );
    const texts: (string | null)[] = [];
    for (const { table_name: table, column_name: column } of columns) {
      const { rows } = await sql<{ text: string | null }>`
        select ${sql.ref(column)} as text from ${sql.table(table)}`.execute(db);
      texts.push(...rows.map((row) => (row.text === null ? null : String(row.text))));
    }
    counts[service as ServiceName] = tally(texts, pattern);
  }
  return counts;
}

/** SQLite: waits until no service has a scrub of its file due (see `SqliteScrubber`). */
export async function waitUntilScrubbed(
  platform: ChaosPlatform,
  timeoutMs = 60_000,
): Promise<void> {
  const markers = Object.values(platform.databases)
    .filter((database) => database.dialect === 'sqlite')
    .map((database) => `${database.location}-scrub`);
  await platform.waitUntil(
    async () => markers.every((marker) => !fs.existsSync(marker)),
    'every SQLite file scrubbed after its erasures',
    timeoutMs,
  );
}

/**
 * SQLite: the bytes of each database's files, whatever rows they belong to, live or not. Call
 * with every service stopped: it closes the test's own connections, so the last one to close
 * checkpoints the write-ahead log into the main file and removes it (any -wal or -journal left is
 * read too). Answers undefined on PostgreSQL.
 */
export async function countTokensInFiles(
  platform: ChaosPlatform,
  pattern: string,
): Promise<TokenCounts | undefined> {
  if (platform.databases.crm.dialect !== 'sqlite') return undefined;
  const counts = {} as TokenCounts;
  for (const [service, database] of Object.entries(platform.databases)) {
    await database.close();
    const files = ['', '-wal', '-journal'].map((suffix) => database.location + suffix);
    // latin1 maps byte for byte, and the tokens are ASCII.
    const texts = files
      .filter((file) => fs.existsSync(file))
      .map((file) => fs.readFileSync(file).toString('latin1'));
    counts[service as ServiceName] = tally(texts, pattern);
  }
  return counts;
}

/** Occurrences, in `stored`, of the tokens each customer had, leaving out `excluded` customers. */
export function leftovers(
  stored: Map<string, number>,
  tokensByCustomer: Map<string, string[]>,
  options: { excludedCustomers?: Set<string>; excludedTokens?: Set<string> } = {},
): { occurrences: number; customers: string[] } {
  let occurrences = 0;
  const customers: string[] = [];
  for (const [customerId, tokens] of tokensByCustomer) {
    if (options.excludedCustomers?.has(customerId)) continue;
    const found = tokens
      .filter((token) => !options.excludedTokens?.has(token))
      .reduce((sum, token) => sum + (stored.get(token) ?? 0), 0);
    occurrences += found;
    if (found > 0) customers.push(customerId);
  }
  return { occurrences, customers };
}
