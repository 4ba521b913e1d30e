import { randomUUID } from 'node:crypto';
import type { Database } from '../../src/core/db.js';
import type { IntegrationTables } from '../../src/integration/migrations.js';

/**
 * Inserts a delivery the worker gave up on, as the delivery worker would have left it: by default
 * refused 422 just now; `last` sets its last error, status and when it became dead.
 */
export async function seedDeadLetter(
  database: Pick<Database<IntegrationTables>, 'db'>,
  name: string,
  state: 'dead' | 'delivered' = 'dead',
  last: { error?: string; status?: number; at?: number } = {},
): Promise<string> {
  const customerId = randomUUID();
  const now = last.at ?? Date.now();
  await database.db
    .insertInto('deliveries')
    .values({
      customer_id: customerId,
      customer_name: name,
      customer_created_at: now - 60_000,
      event_id: `crm:${customerId}`,
      source: 'poll',
      state,
      operation: 'create',
      attempts: 20,
      next_attempt_at: now,
      failing_since: now - 3_600_000,
      last_error: last.error ?? 'Inventory answered 422: customer_id is not a valid id',
      last_status: last.status ?? 422,
      recorded_at: now - 60_000,
      updated_at: now,
    })
    .execute();
  return customerId;
}

/** The delivery state of a customer, or undefined when the service never heard of it. */
export async function deliveryStateOf(
  database: Pick<Database<IntegrationTables>, 'db'>,
  customerId: string,
): Promise<string | undefined> {
  const row = await database.db
    .selectFrom('deliveries')
    .select('state')
    .where('customer_id', '=', customerId)
    .executeTakeFirst();
  return row?.state;
}
