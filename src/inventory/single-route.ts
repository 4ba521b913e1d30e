import type { FastifyBaseLogger, FastifyReply } from 'fastify';
import type { Kysely } from 'kysely';
import { Type } from 'typebox';
import { IdempotencyKeySchema } from '../contracts/package-requests.js';
import type { IdempotencyKeys, StoredResponse } from './idempotency.js';
import type { InventoryTables } from './migrations.js';
import { fingerprintOf, PATH, runOne, type Answered, type Operation } from './operations.js';
import type { Telemetry } from './telemetry.js';

/** What every package-request route works with. */
export interface RouteContext {
  db: Kysely<InventoryTables>;
  idempotencyKeys: IdempotencyKeys;
  telemetry: Telemetry;
  /** Runs after a cancel committed (its erasure): e.g. `Database.scrubSoon`. */
  afterErasure: () => void;
}

/** The `Idempotency-Key` header every POST and PATCH takes. */
export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(IdempotencyKeySchema),
});

/** Every single route's idempotency, in one sentence of its description. */
export const IDEMPOTENCY_DESCRIPTION =
  'With an `Idempotency-Key` header, a retry with the same body gets the first response again (with `idempotent-replayed: true`); the same key with another body gets 422; a retry while the first is still running gets 409 with `Retry-After`.';

/** Sends a stored or fresh answer; a create's names the request in `Location`. */
function send(reply: FastifyReply, response: StoredResponse, located: boolean) {
  if (located) {
    const body = response.body as { id?: string; existing_request?: { id: string } };
    const id = body.id ?? body.existing_request?.id;
    if (id) reply.header('location', `${PATH}/${id}`);
  }
  if (response.status >= 400) reply.type('application/problem+json; charset=utf-8');
  return reply.code(response.status).send(response.body);
}

/**
 * Answers a single route's request for `operation`: run once under its `Idempotency-Key` (or
 * without one), replayed for a retry, counted and logged.
 */
export async function answerRequest(
  context: RouteContext,
  request: { log: FastifyBaseLogger; headers: { 'idempotency-key'?: string | undefined } },
  reply: FastifyReply,
  operation: Operation,
) {
  let ran: Answered | undefined;
  const { response, replayed } = await context.idempotencyKeys.answer(
    request.headers['idempotency-key'],
    () => fingerprintOf(operation),
    async (db) => {
      ran = await runOne(db, operation);
      return ran.response;
    },
    (error) => request.log.warn({ err: error }, 'Could not release the idempotency key'),
  );
  context.telemetry.record(request.log, operation, replayed ? undefined : ran);
  if (ran?.outcome === 'changed' && operation.op === 'cancel') context.afterErasure();
  if (replayed) reply.header('idempotent-replayed', 'true');
  return send(reply, response, operation.op === 'create');
}
