/**
 * What a client can do to package requests — create, update, cancel, ship — each one code path that
 * its single route and the batch share: what it asks for (its fingerprint, under which an
 * idempotency key stores its answer) and what the single route answers, status and body.
 */
import type { Kysely } from 'kysely';
import { HttpProblem, notFound } from '../core/errors.js';
import {
  closedRequestCode,
  CUSTOMER_VERSION_STALE,
  DEFAULT_KIND,
  type NewPackageRequest,
  type PackageRequest,
  type PackageRequestChange,
} from '../contracts/package-requests.js';
import { fingerprintRequest, type StoredResponse } from './idempotency.js';
import type { InventoryTables } from './migrations.js';
import { eraseStoredRecipients } from './stored-answers.js';
import {
  packageRequests,
  TRANSITIONS,
  type ChangeOutcome,
  type CreateInput,
  type CreateOutcome,
  type Transition,
} from './package-requests.js';

type Db = Kysely<InventoryTables>;

export const PATH = '/package-requests';

export type Operation =
  | { op: 'create'; input: CreateInput }
  | { op: 'update'; id: string; change: PackageRequestChange }
  | { op: Transition; id: string };

export type ChangeOperation = Exclude<Operation, { op: 'create' }>;

/**
 * How an operation went, for logs and metrics: `created` or `duplicate` (a create); `changed`,
 * `unchanged` (already so), `conflict` (shipped, cancelled or a newer customer version) or
 * `not_found` (a change).
 */
export type Outcome = 'created' | 'duplicate' | 'changed' | 'unchanged' | 'conflict' | 'not_found';

/** An operation's answer, and the request it is about when there is one (for the log). */
export interface Answered {
  response: StoredResponse;
  outcome: Outcome;
  request?: PackageRequest;
}

/** What a create body asks for, its kind filled in. */
export function createInputOf(body: NewPackageRequest): CreateInput {
  return {
    customer_id: body.customer_id,
    kind: body.kind ?? DEFAULT_KIND,
    recipient_name: body.recipient_name,
    recipient_email: body.recipient_email,
    customer_version: body.customer_version,
  };
}

/** The single route of `operation`: a problem's `instance`, and part of its fingerprint. */
export function routeOf(operation: Operation): { method: string; path: string } {
  switch (operation.op) {
    case 'create':
      return { method: 'POST', path: PATH };
    case 'update':
      return { method: 'PATCH', path: `${PATH}/${operation.id}` };
    default:
      return { method: 'POST', path: `${PATH}/${operation.id}/${operation.op}` };
  }
}

/**
 * What `operation` asks for, as a digest: its method, its path (with the id) and its body with the
 * fields in one order. A create without the recipient fields digests as it always did, so keys
 * stored before they existed still replay.
 */
export function fingerprintOf(operation: Operation): string {
  const { method, path } = routeOf(operation);
  switch (operation.op) {
    case 'create': {
      const { customer_id, kind, recipient_name, recipient_email, customer_version } =
        operation.input;
      const body = { customer_id, kind, recipient_name, recipient_email, customer_version };
      return fingerprintRequest(method, path, body);
    }
    case 'update': {
      const { recipient_name, recipient_email, customer_version } = operation.change;
      return fingerprintRequest(method, path, {
        recipient_name,
        recipient_email,
        customer_version,
      });
    }
    default:
      return fingerprintRequest(method, path, {});
  }
}

function createAnswer(outcome: CreateOutcome): Answered {
  if (outcome.created) {
    return {
      response: { status: 201, body: outcome.request },
      outcome: 'created',
      request: outcome.request,
    };
  }
  const existing = outcome.existing;
  const problem = new HttpProblem(
    409,
    'package_request_exists',
    `Customer ${existing.customer_id} already has a ${existing.kind} request (id ${existing.id}); each customer gets one per kind.`,
    { existing_request: existing },
  );
  return {
    response: { status: 409, body: problem.toProblem(PATH) },
    outcome: 'duplicate',
    request: existing,
  };
}

/** Why a change of a shipped or cancelled request is refused, in words. */
function closedDetail(operation: ChangeOperation, request: PackageRequest): string {
  const what = `Package request ${request.id} was ${request.status} at ${request.updated_at}`;
  if (request.status === 'cancelled') return `${what}; a cancelled request changes no more.`;
  return operation.op === 'update'
    ? `${what}; its recipient stays as shipped, the shipping record, and changes no more.`
    : `${what}; a shipped package cannot be cancelled.`;
}

function changeProblem(
  operation: ChangeOperation,
  outcome: Exclude<ChangeOutcome, { kind: 'changed' | 'unchanged' }>,
): HttpProblem {
  switch (outcome.kind) {
    case 'not_found':
      return notFound(`No package request has id ${operation.id}.`);
    case 'stale': {
      const { request } = outcome;
      const asked = 'change' in operation ? operation.change.customer_version : undefined;
      return new HttpProblem(
        409,
        CUSTOMER_VERSION_STALE,
        `Package request ${request.id} already has the recipient of customer version ${request.customer_version}; version ${asked} is older and was not applied.`,
        { current_customer_version: request.customer_version, package_request: request },
      );
    }
    case 'closed':
      return new HttpProblem(
        409,
        closedRequestCode(outcome.status),
        closedDetail(operation, outcome.request),
        { package_request: outcome.request },
      );
  }
}

function changeAnswer(operation: ChangeOperation, outcome: ChangeOutcome): Answered {
  if (outcome.kind === 'changed' || outcome.kind === 'unchanged') {
    return {
      response: { status: 200, body: outcome.request },
      outcome: outcome.kind,
      request: outcome.request,
    };
  }
  const problem = changeProblem(operation, outcome);
  return {
    response: { status: problem.status, body: problem.toProblem(routeOf(operation).path) },
    outcome: outcome.kind === 'not_found' ? 'not_found' : 'conflict',
    ...(outcome.kind === 'not_found' ? {} : { request: outcome.request }),
  };
}

async function runChange(db: Db, operation: ChangeOperation): Promise<Answered> {
  const outcome =
    operation.op === 'update'
      ? await packageRequests.update(db, operation.id, operation.change)
      : await packageRequests.transition(db, operation.id, operation.op);
  const erases = operation.op !== 'update' && TRANSITIONS[operation.op].erasesRecipient;
  // The row's recipient went in the UPDATE; the answers stored about it go in its transaction.
  if (erases && outcome.kind === 'changed') await eraseStoredRecipients(db, operation.id);
  return changeAnswer(operation, outcome);
}

/** Runs `operation` alone, as its single route does. */
export async function runOne(db: Db, operation: Operation): Promise<Answered> {
  if (operation.op === 'create') {
    return createAnswer(await packageRequests.create(db, operation.input));
  }
  return runChange(db, operation);
}

/**
 * Runs many operations in one transaction, answering each as its single route would, in input
 * order: the creates first, in two statements at most (`createMany`); then one statement locks, in
 * id order, the existing requests the creates name and those the changes change; then the changes,
 * one statement each, in id order. Concurrent batches thus lock rows in one order and cannot
 * deadlock on PostgreSQL, and a create's answer holds its request as a concurrent cancel left it.
 * Changes of one request run in input order.
 */
export async function runMany(trx: Db, operations: readonly Operation[]): Promise<Answered[]> {
  const answers: Answered[] = [];
  const creates: { index: number; input: CreateInput }[] = [];
  const changes: { index: number; operation: ChangeOperation }[] = [];
  operations.forEach((operation, index) => {
    if (operation.op === 'create') creates.push({ index, input: operation.input });
    else changes.push({ index, operation });
  });
  const created = await packageRequests.createMany(
    trx,
    creates.map(({ input }) => input),
  );
  // Array.prototype.sort is stable: equal ids keep their input order.
  changes.sort((a, b) =>
    a.operation.id < b.operation.id ? -1 : a.operation.id > b.operation.id ? 1 : 0,
  );
  const locked = await packageRequests.lockInIdOrder(trx, [
    ...created.flatMap((outcome) => (outcome.created ? [] : [outcome.existing.id])),
    ...changes.map(({ operation }) => operation.id),
  ]);
  created.forEach((outcome, i) => {
    const existing = outcome.created ? undefined : locked.get(outcome.existing.id);
    answers[creates[i]!.index] = createAnswer(existing ? { created: false, existing } : outcome);
  });
  for (const { index, operation } of changes) answers[index] = await runChange(trx, operation);
  return answers;
}
