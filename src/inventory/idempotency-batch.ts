/**
 * A batch's idempotency keys, answered in one transaction as `IdempotencyKeys.answerMany` describes.
 */
import type { HttpProblem } from '../core/errors.js';
import { toIsoString } from '../core/db.js';
import {
  byKey,
  completedColumns,
  isRemembered,
  keyInFlight,
  keyReused,
  storedResponseOf,
  type Db,
  type KeyRow,
  type StoredResponse,
} from './idempotency-records.js';

/**
 * One request of a batch: its `Idempotency-Key`, if it has one, and then what it asks for
 * (`fingerprintRequest` of the request, as the single request with that key would compute it).
 * A request without a key needs no fingerprint.
 */
export type BatchRequest =
  { key: string; fingerprint: string } | { key?: undefined; fingerprint?: string | undefined };

/**
 * How one request of a batch was answered: `ran` in this batch; `replayed`, the response stored for
 * its key (by an earlier call, or by an earlier request of this batch); or `refused`, with the
 * problem a single request with that key would get (422 reused, 409 in flight).
 */
export type BatchAnswer =
  | { kind: 'ran' | 'replayed'; response: StoredResponse }
  | { kind: 'refused'; problem: HttpProblem };

/** Thrown inside a batch's transaction to roll it back when a concurrent request won one of its keys. */
export class LostRace extends Error {}

/** One attempt of `IdempotencyKeys.answerMany`: throws `LostRace` when a concurrent request won a key. */
export async function answerManyOnce(
  trx: Db,
  requests: readonly BatchRequest[],
  run: (trx: Db, indexes: number[]) => Promise<StoredResponse[]>,
): Promise<BatchAnswer[]> {
  const keys = [...new Set(requests.flatMap((request) => request.key ?? []))];
  const stored = new Map<string, KeyRow>();
  if (keys.length > 0) {
    const rows = await trx
      .selectFrom('idempotency_keys')
      .selectAll()
      .where('key', 'in', keys)
      .execute();
    for (const row of rows) stored.set(row.key, row);
  }

  const now = Date.now();
  const answers: BatchAnswer[] = [];
  const toRun: number[] = [];
  // The request of this batch that runs for a key; later ones with that key are its retries.
  const runsFor = new Map<string, { index: number; fingerprint: string }>();
  const retries: { index: number; of: number }[] = [];
  const newKeys: { index: number; key: string; fingerprint: string }[] = [];
  const takeovers: { index: number; key: string; claimId: string | null }[] = [];
  for (const [index, request] of requests.entries()) {
    if (request.key === undefined) {
      toRun.push(index);
      continue;
    }
    const { key, fingerprint } = request;
    const first = runsFor.get(key);
    if (first) {
      if (first.fingerprint !== fingerprint) {
        answers[index] = { kind: 'refused', problem: keyReused(key) };
      } else {
        retries.push({ index, of: first.index });
      }
      continue;
    }
    const row = stored.get(key);
    if (row) {
      if (row.request_fingerprint !== fingerprint) {
        answers[index] = { kind: 'refused', problem: keyReused(key) };
        continue;
      }
      if (row.state === 'completed') {
        answers[index] = { kind: 'replayed', response: storedResponseOf(row) };
        continue;
      }
      const heldUntil = row.locked_until ? Date.parse(toIsoString(row.locked_until)) : 0;
      if (heldUntil > now) {
        answers[index] = { kind: 'refused', problem: keyInFlight(key) };
        continue;
      }
      takeovers.push({ index, key, claimId: row.claim_id });
    } else {
      newKeys.push({ index, key, fingerprint });
    }
    runsFor.set(key, { index, fingerprint });
    toRun.push(index);
  }

  const responses = toRun.length > 0 ? await run(trx, toRun) : [];
  if (responses.length !== toRun.length) {
    throw new Error(`run answered ${responses.length} responses for ${toRun.length} requests`);
  }
  const responseOf = new Map<number, StoredResponse>();
  toRun.forEach((index, i) => {
    responseOf.set(index, responses[i]!);
    answers[index] = { kind: 'ran', response: responses[i]! };
  });
  for (const { index, of } of retries) {
    const response = responseOf.get(of)!;
    // Nothing was stored for the first: this one runs again, to the same answer.
    answers[index] = { kind: isRemembered(response) ? 'replayed' : 'ran', response };
  }

  // Sorted by key so that concurrent batches lock keys in one order and cannot deadlock.
  const remembered = newKeys.filter(({ index }) => isRemembered(responseOf.get(index)!));
  if (remembered.length > 0) {
    const createdAt = new Date(now).toISOString();
    const rows = remembered.sort(byKey).map(({ index, key, fingerprint }) => ({
      key,
      request_fingerprint: fingerprint,
      created_at: createdAt,
      ...completedColumns(responseOf.get(index)!),
    }));
    const inserted = await trx
      .insertInto('idempotency_keys')
      .values(rows)
      .onConflict((conflict) => conflict.column('key').doNothing())
      .returning('key')
      .execute();
    if (inserted.length !== rows.length) {
      // A concurrent request claimed a key after our read: its answer wins, so start over.
      throw new LostRace(`${rows.length - inserted.length} key(s) claimed meanwhile`);
    }
  }
  for (const { index, key, claimId } of takeovers.sort(byKey)) {
    const response = responseOf.get(index)!;
    const taken = await trx
      .updateTable('idempotency_keys')
      .set(completedColumns(response))
      .where('key', '=', key)
      .where('state', '=', 'in_flight')
      .where('claim_id', claimId === null ? 'is' : '=', claimId)
      .executeTakeFirst();
    if (Number(taken.numUpdatedRows) !== 1) throw new LostRace(`key "${key}" taken over meanwhile`);
    // Taken over, and now freed: the crashed request's claim is gone either way.
    if (!isRemembered(response)) {
      await trx.deleteFrom('idempotency_keys').where('key', '=', key).execute();
    }
  }
  return answers;
}
