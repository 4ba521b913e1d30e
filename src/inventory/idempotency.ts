import { createHash, randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
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
}

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

  constructor(
    private readonly db: Db,
    options: IdempotencyOptions = {},
  ) {
    this.lockMs = options.lockMs ?? 30_000;
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
    if (existing.request_fingerprint !== fingerprint) {
      throw new HttpProblem(
        422,
        'idempotency_key_reused',
        `Idempotency-Key "${key}" was first used with a different request body; use a new key for a different request.`,
      );
    }
    if (existing.state === 'completed') {
      return {
        kind: 'replay',
        response: {
          status: existing.response_status ?? 500,
          body: JSON.parse(existing.response_body ?? 'null') as unknown,
        },
      };
    }
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
    throw new HttpProblem(
      409,
      'idempotency_key_in_flight',
      `A request with Idempotency-Key "${key}" is still being processed; retry in a moment to get its response.`,
      {},
      { 'retry-after': '1' },
    );
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
      .set({
        state: 'completed',
        claim_id: null,
        locked_until: null,
        response_status: response.status,
        response_body: JSON.stringify(response.body),
      })
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
}
