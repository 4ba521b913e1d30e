import { randomUUID } from 'node:crypto';
import { toIsoString } from '../core/db.js';
import { HttpProblem } from '../core/errors.js';
import {
  answerManyOnce,
  LostRace,
  type BatchAnswer,
  type BatchRequest,
} from './idempotency-batch.js';
import {
  completedColumns,
  isRemembered,
  keyInFlight,
  keyReused,
  keyTakenOver,
  storedResponseOf,
  type Db,
  type StoredResponse,
} from './idempotency-records.js';

export type { BatchAnswer, BatchRequest } from './idempotency-batch.js';
export { fingerprintRequest, isRemembered, type StoredResponse } from './idempotency-records.js';

export type Claim =
  { kind: 'claimed'; claimId: string } | { kind: 'replay'; response: StoredResponse };

export interface IdempotencyOptions {
  /**
   * How long a claimed key stays locked before another request may take it over, in ms: covers a
   * process that crashed between claiming a key and recording its response. Default 30000.
   */
  lockMs?: number;
  /**
   * How many times `answerMany` runs a batch whose keys concurrent requests keep claiming between
   * its read and its write (PostgreSQL only: SQLite serializes writers) before it gives up with
   * 409. Default 3.
   */
  batchAttempts?: number;
}

/**
 * `Idempotency-Key` semantics as Stripe and the IETF draft describe them: the first request with a
 * key claims it; retries with the same body get the first response replayed; the same key with a
 * different body is refused with 422; a retry while the first is still running gets 409.
 */
export class IdempotencyKeys {
  private readonly lockMs: number;
  private readonly batchAttempts: number;

  constructor(
    private readonly db: Db,
    options: IdempotencyOptions = {},
  ) {
    this.lockMs = options.lockMs ?? 30_000;
    this.batchAttempts = options.batchAttempts ?? 3;
  }

  /** Claims `key` for this request, or says what to answer instead. */
  async claim(key: string, fingerprint: string): Promise<Claim> {
    const claimId = randomUUID();
    const now = Date.now();
    const lockedUntil = new Date(now + this.lockMs).toISOString();
    const inserted = await this.db
      .insertInto('idempotency_keys')
      .values({
        key,
        request_fingerprint: fingerprint,
        state: 'in_flight',
        claim_id: claimId,
        locked_until: lockedUntil,
        created_at: new Date(now).toISOString(),
      })
      .onConflict((conflict) => conflict.column('key').doNothing())
      .returning('key')
      .executeTakeFirst();
    if (inserted) return { kind: 'claimed', claimId };

    const existing = await this.db
      .selectFrom('idempotency_keys')
      .selectAll()
      .where('key', '=', key)
      .executeTakeFirst();
    if (!existing) {
      // Released between our insert and our read: the earlier request failed; try to claim again.
      return this.claim(key, fingerprint);
    }
    if (existing.request_fingerprint !== fingerprint) throw keyReused(key);
    if (existing.state === 'completed')
      return { kind: 'replay', response: storedResponseOf(existing) };
    const heldUntil = existing.locked_until ? Date.parse(toIsoString(existing.locked_until)) : 0;
    if (heldUntil <= now) {
      // The request that claimed the key stopped without answering (a crash): take it over.
      const taken = await this.db
        .updateTable('idempotency_keys')
        .set({ claim_id: claimId, locked_until: lockedUntil })
        .where('key', '=', key)
        .where('state', '=', 'in_flight')
        .where('claim_id', '=', existing.claim_id)
        .executeTakeFirst();
      if (Number(taken.numUpdatedRows) === 1) return { kind: 'claimed', claimId };
    }
    throw keyInFlight(key);
  }

  /**
   * Answers one request: without a key, `run` just runs; with one, the first request claims the
   * key and stores its response in the transaction `run` changes things in (`claim`, `complete`);
   * a retry gets that response again (`replayed`); a request that fails without a response frees
   * the key for its retry (`onReleaseError` hears when even that fails). `fingerprint` is only
   * called when there is a key: a request without one is not digested.
   */
  async answer(
    key: string | undefined,
    fingerprint: () => string,
    run: (db: Db) => Promise<StoredResponse>,
    onReleaseError: (error: unknown) => void,
  ): Promise<{ response: StoredResponse; replayed: boolean }> {
    // In a transaction even without a key: a change (a cancel's erasure) is more than one statement.
    if (key === undefined) {
      return { response: await this.db.transaction().execute(run), replayed: false };
    }
    const claim = await this.claim(key, fingerprint());
    if (claim.kind === 'replay') return { response: claim.response, replayed: true };
    try {
      const response = await this.db.transaction().execute(async (trx) => {
        const ran = await run(trx);
        if (!(await this.complete(trx, key, claim.claimId, ran))) throw keyTakenOver(key);
        return ran;
      });
      return { response, replayed: false };
    } catch (error) {
      // Nothing was committed: free the key so the client's retry can run at once.
      if (!(error instanceof HttpProblem)) {
        await this.release(key, claim.claimId).catch(onReleaseError);
      }
      throw error;
    }
  }

  /**
   * Records the response for a claimed key, inside the caller's transaction so the response and
   * the change it describes commit together; a response not remembered frees the key instead.
   * Answers false when the claim was lost (it expired and another request took the key over); the
   * caller must then roll back.
   */
  async complete(
    trx: Db,
    key: string,
    claimId: string,
    response: StoredResponse,
  ): Promise<boolean> {
    if (!isRemembered(response)) {
      const deleted = await trx
        .deleteFrom('idempotency_keys')
        .where('key', '=', key)
        .where('claim_id', '=', claimId)
        .executeTakeFirst();
      return Number(deleted.numDeletedRows) === 1;
    }
    const result = await trx
      .updateTable('idempotency_keys')
      .set(completedColumns(response))
      .where('key', '=', key)
      .where('claim_id', '=', claimId)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Frees a claimed key after a failure that produced no response, so a retry can run. */
  async release(key: string, claimId: string): Promise<void> {
    await this.db
      .deleteFrom('idempotency_keys')
      .where('key', '=', key)
      .where('claim_id', '=', claimId)
      .execute();
  }

  /**
   * Answers many requests in one transaction, each exactly as `claim` and `complete` would answer it
   * alone, in order: a new key runs and stores its response; a completed key with the same
   * fingerprint replays; another fingerprint is refused (422); a key held by a running request is
   * refused (409) unless its lock expired, when it is taken over; a key repeated within the batch
   * is answered like a retry of its first use. Requests without a key just run. A response not
   * remembered (`isRemembered`) is stored under no key, and a later request with its key runs.
   *
   * `run` gets the transaction and the indexes of the requests to run, in order, and answers their
   * responses in that order; it runs again when a concurrent request claimed one of the batch's keys
   * meanwhile (the transaction is rolled back first). Throws 409 after `batchAttempts` such races.
   */
  async answerMany(
    requests: readonly BatchRequest[],
    run: (trx: Db, indexes: number[]) => Promise<StoredResponse[]>,
  ): Promise<BatchAnswer[]> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.db.transaction().execute((trx) => answerManyOnce(trx, requests, run));
      } catch (error) {
        if (!(error instanceof LostRace)) throw error;
        if (attempt >= this.batchAttempts) {
          throw new HttpProblem(
            409,
            'idempotency_key_in_flight',
            `Concurrent requests kept claiming this batch's idempotency keys (${error.message}); retry in a moment to get their responses.`,
            {},
            { 'retry-after': '1' },
          );
        }
      }
    }
  }
}
