import type { FastifyBaseLogger } from 'fastify';
import { levels } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { BatchAnswer } from './idempotency.js';
import type { Answered, ChangeOperation, Operation, Outcome } from './operations.js';

/** The line operators follow for each change made (the seed's story, for every action). */
function logAnswered(log: FastifyBaseLogger, operation: Operation, answered: Answered): void {
  const request = answered.request;
  if (!request) return;
  const fields = { package_request_id: request.id, customer_id: request.customer_id };
  if (answered.outcome === 'created') {
    log.info(
      { customer_id: request.customer_id },
      `Created package request for customer: ${request.customer_id}`,
    );
  } else if (answered.outcome === 'changed') {
    if (operation.op === 'update') {
      log.info(
        { ...fields, customer_version: request.customer_version },
        `Updated the recipient of package request ${request.id} to customer version ${request.customer_version}`,
      );
    } else {
      log.info(
        fields,
        `${request.status === 'shipped' ? 'Shipped' : 'Cancelled'} package request ${request.id} for customer: ${request.customer_id}`,
      );
    }
  } else if (answered.outcome === 'conflict' && operation.op !== 'create') {
    const stale =
      operation.op === 'update' && request.status === 'pending'
        ? `customer version ${operation.change.customer_version} is older than its ${request.customer_version}`
        : `it is ${request.status}`;
    log.info(
      { ...fields, status: request.status, customer_version: request.customer_version },
      `Refused to ${operation.op} package request ${request.id}: ${stale}`,
    );
  }
}

type BatchCount = Outcome | 'replayed' | 'refused';

/**
 * Whether `log` writes info lines. A logger that does not say its level (e.g. a test's) is taken
 * to write them.
 */
function logsInfo(log: FastifyBaseLogger): boolean {
  const level = log.level as string | undefined;
  if (level === undefined) return true;
  if (level === 'silent') return false;
  const value = levels.values[level];
  return value === undefined || value <= levels.values.info!;
}

/** How many times each key was seen. */
class Tally<K> extends Map<K, number> {
  add(key: K): void {
    this.set(key, (this.get(key) ?? 0) + 1);
  }
  of(key: K): number {
    return this.get(key) ?? 0;
  }
}

/** Counts and logs what Inventory answered, on the single routes and per item of a batch. */
export class Telemetry {
  private readonly created: Counter;
  private readonly createAnswers: Counter<'outcome'>;
  private readonly changeAnswers: Counter<'operation' | 'outcome'>;

  constructor(registry: Registry) {
    this.created = new Counter({
      name: 'inventory_package_requests_created_total',
      help: 'Package requests created.',
      registers: [registry],
    });
    this.createAnswers = new Counter({
      name: 'inventory_create_responses_total',
      help: 'Answers to POST /package-requests, and to each item of a batch, by outcome: created, duplicate, replayed.',
      labelNames: ['outcome'],
      registers: [registry],
    });
    this.changeAnswers = new Counter({
      name: 'inventory_change_responses_total',
      help: 'Answers to updates, cancels and ships of package requests (single or batch items), by operation and outcome: changed, unchanged, conflict, not_found, replayed.',
      labelNames: ['operation', 'outcome'],
      registers: [registry],
    });
  }

  /** One operation answered: `answered` when it ran, undefined when its key's answer was replayed. */
  record(log: FastifyBaseLogger, operation: Operation, answered: Answered | undefined): void {
    const outcome = answered?.outcome ?? 'replayed';
    if (operation.op === 'create') {
      if (outcome === 'created') this.created.inc();
      this.createAnswers.inc({ outcome });
    } else {
      this.changeAnswers.inc({ operation: operation.op, outcome });
    }
    if (answered) logAnswered(log, operation, answered);
  }

  /**
   * A batch answered: each item counted and logged as `record` would (`ran[i]` is the item's answer
   * when it ran), and one line for the batch. Each counter moves once per label, by the batch's
   * count; the items' lines are only made when info lines are written.
   */
  recordBatch(
    log: FastifyBaseLogger,
    operations: readonly Operation[],
    answers: readonly BatchAnswer[],
    ran: readonly (Answered | undefined)[],
  ): void {
    const counts = new Tally<BatchCount>();
    const createOutcomes = new Tally<Outcome | 'replayed'>();
    const changeOutcomes = new Map<ChangeOperation['op'], Tally<Outcome | 'replayed'>>();
    const logsItems = logsInfo(log);
    answers.forEach((answer, index) => {
      if (answer.kind === 'refused') {
        counts.add('refused');
        return;
      }
      const operation = operations[index]!;
      const answered = answer.kind === 'ran' ? ran[index] : undefined;
      const outcome = answered?.outcome ?? 'replayed';
      counts.add(outcome);
      if (operation.op === 'create') {
        createOutcomes.add(outcome);
      } else {
        const tally = changeOutcomes.get(operation.op) ?? new Tally();
        tally.add(outcome);
        changeOutcomes.set(operation.op, tally);
      }
      if (answered && logsItems) logAnswered(log, operation, answered);
    });
    if (createOutcomes.of('created') > 0) this.created.inc(createOutcomes.of('created'));
    for (const [outcome, times] of createOutcomes) this.createAnswers.inc({ outcome }, times);
    for (const [operation, tally] of changeOutcomes) {
      for (const [outcome, times] of tally) this.changeAnswers.inc({ operation, outcome }, times);
    }
    const n = (outcome: BatchCount) => counts.of(outcome);
    const changes = operations.filter((operation) => operation.op !== 'create').length;
    const changeTotals =
      changes === 0
        ? {}
        : {
            changed: n('changed'),
            unchanged: n('unchanged'),
            conflict: n('conflict'),
            not_found: n('not_found'),
          };
    log.info(
      {
        items: answers.length,
        created: n('created'),
        duplicate: n('duplicate'),
        replayed: n('replayed'),
        refused: n('refused'),
        ...changeTotals,
      },
      `Answered a batch of ${answers.length} package requests: ${n('created')} created, ${n('duplicate')} duplicate, ${n('replayed')} replayed, ${n('refused')} refused` +
        (changes === 0
          ? ''
          : `; ${n('changed')} changed, ${n('unchanged')} unchanged, ${n('conflict')} conflicting, ${n('not_found')} not found`),
    );
  }
}
