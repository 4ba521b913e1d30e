/**
 * What Inventory's idempotency keys store and how they answer: the pieces the single requests
 * (`idempotency.ts`) and the batches (`idempotency-batch.ts`) share.
 */
import { createHash } from 'node:crypto';
import type { Kysely, Selectable } from 'kysely';
import { HttpProblem } from '../core/errors.js';
import type { InventoryTables } from './migrations.js';
import { inCurrentShape, packageRequestIdOf } from './stored-answers.js';

export type Db = Kysely<InventoryTables>;

/** A response to store under a key and replay for every retry with that key. */
export interface StoredResponse {
  status: number;
  body: unknown;
}

export type KeyRow = Selectable<InventoryTables['idempotency_keys']>;

export const keyReused = (key: string) =>
  new HttpProblem(
    422,
    'idempotency_key_reused',
    `Idempotency-Key "${key}" was first used with a different request body; use a new key for a different request.`,
  );

export const keyInFlight = (key: string) =>
  new HttpProblem(
    409,
    'idempotency_key_in_flight',
    `A request with Idempotency-Key "${key}" is still being processed; retry in a moment to get its response.`,
    {},
    { 'retry-after': '1' },
  );

export const keyTakenOver = (key: string) =>
  new HttpProblem(
    409,
    'idempotency_key_in_flight',
    `Idempotency-Key "${key}" was taken over by another request after this one ran too long; retry to get its response.`,
    {},
    { 'retry-after': '1' },
  );

/**
 * Whether a response is stored under its key. A 404 is not: it changed nothing, a retry finds the
 * same nothing, and the key stays free (so a mistyped id does not use a key up).
 */
export const isRemembered = (response: StoredResponse) => response.status !== 404;

/** The answer stored in `row`, in the shape this version answers (`inCurrentShape`). */
export const storedResponseOf = (row: KeyRow): StoredResponse => ({
  status: row.response_status ?? 500,
  body: inCurrentShape(JSON.parse(row.response_body ?? 'null')),
});

export const completedColumns = (response: StoredResponse) => ({
  state: 'completed' as const,
  claim_id: null,
  locked_until: null,
  response_status: response.status,
  response_body: JSON.stringify(response.body),
  // A cancel finds by it the answers to erase (`eraseStoredRecipients`).
  package_request_id: packageRequestIdOf(response.body),
});

export const byKey = (a: { key: string }, b: { key: string }) =>
  a.key < b.key ? -1 : a.key > b.key ? 1 : 0;

/** A stable digest of what a request asks for: the same key must always ask for the same thing. */
export function fingerprintRequest(method: string, path: string, body: unknown): string {
  return createHash('sha256')
    .update(`${method} ${path}\n${JSON.stringify(body)}`)
    .digest('hex');
}
