import { createHash, randomUUID } from 'node:crypto';
import type { Kysely, Selectable } from 'kysely';
import { toIsoString } from '../core/db.js';
import { HttpProblem } from '../core/errors.js';
import type { InventoryTables } from './migrations.js';

type Db = Kysely<InventoryTables>;

/** A response to store under a key and replay for every retry with that key. */
export interface StoredResponse {
  status: number;
  body: unknown;
}

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

/** One request of a batch: its `Idempotency-Key`, if it has one, and what it asks for. */
export interface BatchRequest {
  key?: string | undefined;
  /** `fingerprintRequest` of the request, as the single request with that key would compute it. */
  fingerprint: string;
}

/**
 * How one request of a batch was answered: `ran` in this batch; `replayed`, the response stored for
 * its key (by an earlier call, or by an earlier request of this batch); or `refused`, with the
 * problem a single request with that key would get (422 reused, 409 in flight).
 */
export type BatchAnswer =
  | { kind: 'ran' | 'replayed'; response: StoredResponse }
  | { kind: 'refused'; problem: HttpProblem };

type KeyRow = Selectable<InventoryTables['idempotency_keys']>;

/** Thrown inside a batch's transaction to roll it back when a concurrent request won one of its keys. */
class LostRace extends Error {}

const keyReused = (key: string) =>
  new HttpProblem(
    422,
    'idempotency_key_reused',
    `Idempotency-Key "${key}" was first used with a different request body; use a new key for a different request.`,
  );

const keyInFlight = (key: string) =>
  new HttpProblem(
    409,
    'idempotency_key_in_flight',
    `A request with Idempotency-Key "${key}" is still being processed; retry in a moment to get its response.`,
    {},
    { 'retry-after': '1' },
  );

const storedResponseOf = (row: KeyRow): StoredResponse => ({
  status: row.response_status ?? 500,
  body: JSON.parse(row.response_body ?? 'null') as unknown,
});

const completedColumns = (response: StoredResponse) => ({
  state: 'completed' as const,
  claim_id: null,
  locked_until: null,
  response_status: response.status,
  response_body: JSON.stringify(response.body),
});

const byKey = (a: { key: string }, b: { key: string }) =>
  a.key < b.key ? -1 : a.key > b.key ? 1 : 0;

/** A stable digest of what a request asks for: the same key must always ask for the same thing. */
export function fingerprintRequest(method: string, path: string, body: unknown): string {
  return createHash('sha256')
    .update(`${method} ${path}\n${JSON.stringify(body)}`)
    .digest('hex');
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
   * Records the response for a claimed key, inside the caller's transaction so the response and
   * the change it describes commit together. Answers false when the claim was lost (it expired
   * and another request took the key over); the caller must then roll back.
   */
  async complete(
    trx: Db,
    key: string,
    claimId: string,
    response: StoredResponse,
  ): Promise<boolean> {
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
   * is answered like a retry of its first use. Requests without a key just run.
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
        return await this.db
          .transaction()
          .execute((trx) => this.answerManyOnce(trx, requests, run));
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

  private async answerManyOnce(
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
    const newKeys: { index: number; key: string }[] = [];
    const takeovers: { index: number; key: string; claimId: string | null }[] = [];
    for (const [index, { key, fingerprint }] of requests.entries()) {
      if (key === undefined) {
        toRun.push(index);
        continue;
      }
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
        newKeys.push({ index, key });
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
      answers[index] = { kind: 'replayed', response: responseOf.get(of)! };
    }

    // Sorted by key so that concurrent batches lock keys in one order and cannot deadlock.
    if (newKeys.length > 0) {
      const createdAt = new Date(now).toISOString();
      const rows = newKeys.sort(byKey).map(({ index, key }) => ({
        key,
        request_fingerprint: requests[index]!.fingerprint,
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
      const taken = await trx
        .updateTable('idempotency_keys')
        .set(completedColumns(responseOf.get(index)!))
        .where('key', '=', key)
        .where('state', '=', 'in_flight')
        .where('claim_id', claimId === null ? 'is' : '=', claimId)
        .executeTakeFirst();
      if (Number(taken.numUpdatedRows) !== 1)
        throw new LostRace(`key "${key}" taken over meanwhile`);
    }
    return answers;
  }
}
