/**
 * The package request inside an answer stored under an idempotency key: which request it is, its
 * recipient erased when the request is cancelled, and its fields filled in when an older version
 * stored it.
 */
import type { Kysely } from 'kysely';
import type { InventoryTables } from './migrations.js';

type Fields = Record<string, unknown>;

const isFields = (value: unknown): value is Fields =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * The requests an answer holds: a 200 or 201 body is the request itself; a 409 problem names it as
 * `existing_request` (a create's duplicate) or `package_request` (a refused change).
 */
function requestsIn(body: unknown): Fields[] {
  if (!isFields(body)) return [];
  if (typeof body.id === 'string') return [body];
  return [body.existing_request, body.package_request].filter(isFields);
}

/** The id of the package request an answer's `body` is about, or null when it names none. */
export function packageRequestIdOf(body: unknown): string | null {
  const id = requestsIn(body)[0]?.id;
  return typeof id === 'string' ? id : null;
}

/**
 * `body` as this version answers it: a request stored by a process of an earlier version (during a
 * rolling upgrade, after migration 2 ran) lacks the recipient, customer version and update time,
 * which the response schema requires; they are null, and `updated_at` is `created_at`, as a row
 * without them is read.
 */
export function inCurrentShape(body: unknown): unknown {
  for (const request of requestsIn(body)) {
    request.recipient_name ??= null;
    request.recipient_email ??= null;
    request.customer_version ??= null;
    request.updated_at ??= request.created_at;
  }
  return body;
}

/**
 * Erases the recipient from every answer stored about request `id`, in `db`'s transaction: a
 * cancelled request keeps no name or email, neither in its row nor in an answer a retry would get.
 * Rows are rewritten in key order, the order every writer of keys locks them in.
 */
export async function eraseStoredRecipients(
  db: Kysely<InventoryTables>,
  id: string,
): Promise<void> {
  const stored = await db
    .selectFrom('idempotency_keys')
    .select(['key', 'response_body'])
    .where('package_request_id', '=', id)
    .orderBy('key')
    .execute();
  for (const { key, response_body } of stored) {
    if (response_body === null) continue;
    const body = JSON.parse(response_body) as unknown;
    const requests = requestsIn(body);
    if (requests.every((r) => r.recipient_name == null && r.recipient_email == null)) continue;
    for (const request of requests) {
      request.recipient_name = null;
      request.recipient_email = null;
    }
    await db
      .updateTable('idempotency_keys')
      .set({ response_body: JSON.stringify(body) })
      .where('key', '=', key)
      .execute();
  }
}
