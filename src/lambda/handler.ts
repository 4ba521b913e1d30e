/**
 * The cloud-function variant of the delivery logic (SPEC §8): an AWS Lambda handler for SQS events
 * carrying the CRM's customer events (`customer.created`, `customer.updated`, `customer.deleted`),
 * either raw or wrapped in an SNS notification.
 *
 * Each record brings Inventory to the customer's state in the event, as the integration service
 * does (src/integration/convergence.ts), but with nothing stored between records: a create (under
 * `Idempotency-Key: welcome-package:<customer id>:v<version>`), then an update if Inventory holds an
 * older recipient; for a deletion, a look for the customer's package, then its cancellation. Every
 * answer shows the package request as it stands, so a duplicated record is harmless and an older
 * state never overwrites a newer one (Inventory refuses older customer versions). Per-customer
 * order is the queue's to keep: use a FIFO queue grouped by customer id (`MessageGroupId`), or a
 * creation redelivered after its customer's deletion could create a package again.
 *
 * Every record that did not succeed (a transient or permanent failure, a malformed body, a missing
 * configuration) is answered in `batchItemFailures`, so SQS makes it visible again and, after the
 * queue's `maxReceiveCount`, moves it to the dead-letter queue. The handler never throws, as that
 * would return the whole batch to the queue, including the records that were delivered.
 *
 * Built with `npm run build:lambda` to `dist/lambda/index.mjs` (handler `index.handler`).
 */
import type {
  Context,
  SQSBatchItemFailure,
  SQSBatchResponse,
  SQSEvent,
  SQSRecord,
} from 'aws-lambda';
import { Type } from 'typebox';
import { Compile } from 'typebox/compile';
import {
  ConfigError,
  LOG_LEVELS,
  readChoice,
  readInteger,
  readOptionalString,
  readUrl,
  type Env,
} from '../core/config.js';
import { createLogger, type Logger } from '../core/logging.js';
import { NonRetryableError, TransientError } from '../core/retryable-errors.js';
import { parsePushedCustomerEvent } from '../contracts/customer-events.js';
import { convergeStatelessly } from '../integration/convergence.js';
import { InventoryClient } from '../integration/inventory-client.js';
import { deliveryOfEvent, type NewDelivery } from '../integration/store/new-delivery.js';

/** Records processed at once within one invocation. */
export const RECORD_CONCURRENCY = 10;

/** A record is not started when less time than one call's timeout plus this margin is left, in ms. */
const DEADLINE_MARGIN_MS = 1_000;

export interface LambdaConfig {
  /** Base URL of the Inventory API, without a trailing slash (`INVENTORY_URL`, required). */
  inventoryUrl: string;
  /** Bearer token sent to Inventory (`API_TOKEN`). Default none. */
  apiToken: string | undefined;
  /** Timeout of one call to Inventory, in ms (`REQUEST_TIMEOUT_MS`). Default 5000. */
  requestTimeoutMs: number;
}

/** Reads the function's settings; throws an error naming the variable at fault. */
export function readLambdaConfig(env: Env): LambdaConfig {
  const inventoryUrl = readUrl(env, 'INVENTORY_URL', undefined, ['http:', 'https:']);
  if (inventoryUrl === undefined) {
    throw new Error(
      'Missing configuration: INVENTORY_URL is not set; set it to the base URL of the Inventory API, e.g. https://inventory.example.com.',
    );
  }
  return {
    inventoryUrl: inventoryUrl.replace(/\/+$/, ''),
    apiToken: readOptionalString(env, 'API_TOKEN'),
    requestTimeoutMs: readInteger(env, 'REQUEST_TIMEOUT_MS', 5_000, { min: 10, max: 300_000 }),
  };
}

/** What happened to one record; written as the `outcome` field of its log line. */
export type RecordOutcome =
  | 'created' // Inventory created the package request (201)
  | 'already_exists' // Inventory already had it at this version or newer: done all the same
  | 'updated' // its recipient now is the customer's state in the event (or a newer one)
  | 'cancelled' // the deleted customer's package is cancelled
  | 'left_shipped' // it had shipped before the change: left as the shipping record
  | 'never_created' // the deleted customer never had a package
  | 'ignored' // an event type this function does not handle
  | 'transient_failure' // network error, timeout, 5xx, 429: SQS retries it
  | 'permanent_failure' // a 4xx retrying cannot fix: it reaches the DLQ after maxReceiveCount
  | 'malformed' // the body is not a customer event
  | 'not_configured' // the function's configuration is missing or invalid
  | 'out_of_time'; // not started because the invocation was about to time out

/** A record's event: the customer state it brings, or none for a type not handled. */
interface RecordEvent {
  eventId: string | undefined;
  type: string;
  customerId: string;
  state: NewDelivery | undefined;
}

class MalformedRecordError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MalformedRecordError';
  }
}

/** AWS's SNS notification, as SNS delivers it to SQS without raw message delivery. */
const isSnsNotification = Compile(
  Type.Object({ Type: Type.Literal('Notification'), Message: Type.Unknown() }),
);

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new MalformedRecordError(`${what} is not JSON`);
  }
}

/**
 * The customer event in a record's body: the event itself, or an SNS notification (SNS to SQS
 * fan-out without raw message delivery) whose `Message` is the event as a JSON string.
 */
export function parseRecordBody(body: string): RecordEvent {
  let event = parseJson(body, 'The message body');
  if (isSnsNotification.Check(event)) {
    if (typeof event.Message !== 'string') {
      throw new MalformedRecordError('The SNS notification has no Message string');
    }
    event = parseJson(event.Message, 'The SNS notification Message');
  }
  const parsed = parsePushedCustomerEvent(event);
  if (!parsed.ok) throw new MalformedRecordError(parsed.problems.join('; '));
  const id = (event as { id?: unknown }).id;
  const eventId = typeof id === 'string' ? id : undefined;
  const { type, data } = parsed.value;
  const state = deliveryOfEvent({ type, id: eventId ?? '', data }, 'lambda');
  if (state && !state.ok) {
    throw new MalformedRecordError(
      `a ${type} event whose data is not what that type carries: ${state.problems.join('; ')}`,
    );
  }
  return { eventId, type, customerId: data.id, state: state?.value };
}

/**
 * The records as groups to process one after another: those of one FIFO message group
 * (`MessageGroupId`, e.g. a customer id) in their order; any other record a group of its own.
 */
function inOrderGroups(records: readonly SQSRecord[]): SQSRecord[][] {
  const groups = new Map<string, SQSRecord[]>();
  const alone: SQSRecord[][] = [];
  for (const record of records) {
    const groupId = record.attributes?.MessageGroupId;
    if (groupId === undefined) {
      alone.push([record]);
    } else {
      const group = groups.get(groupId);
      if (group) group.push(record);
      else groups.set(groupId, [record]);
    }
  }
  return [...groups.values(), ...alone];
}

/** Runs `work` on every item, at most `limit` at once. */
async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export interface HandlerOptions {
  /** Where the per-record log lines go. Default a JSON logger on stdout at `LOG_LEVEL`. */
  logger?: Logger;
}

/** `context` is optional: with it, records are not started once the invocation is about to time out. */
export type SqsBatchHandler = (
  event: SQSEvent,
  context?: Pick<Context, 'getRemainingTimeInMillis'>,
) => Promise<SQSBatchResponse>;

/**
 * A handler over this configuration. The environment is read once, here (at cold start for the
 * exported `handler`); a configuration error does not throw but fails every record, with the
 * reason logged, so the messages stay in the queue until the function is fixed.
 */
export function createHandler(env: Env, options: HandlerOptions = {}): SqsBatchHandler {
  let logLevelError: ConfigError | undefined;
  let level: string = 'info';
  try {
    level = readChoice(env, 'LOG_LEVEL', 'info', LOG_LEVELS);
  } catch (error) {
    logLevelError = error as ConfigError;
  }
  const logger =
    options.logger ?? createLogger({ service: 'welcome-package-lambda', level, format: 'json' });
  if (logLevelError) logger.warn({ err: logLevelError }, `${logLevelError.message} Using info.`);

  let config: LambdaConfig | undefined;
  let configError: string | undefined;
  try {
    config = readLambdaConfig(env);
  } catch (error) {
    configError = errorMessage(error);
    logger.error({ outcome: 'not_configured' }, configError);
  }
  const inventory = config
    ? new InventoryClient({
        baseUrl: config.inventoryUrl,
        apiToken: config.apiToken,
        timeoutMs: config.requestTimeoutMs,
      })
    : undefined;
  const minimumTimeLeftMs = (config?.requestTimeoutMs ?? 0) + DEADLINE_MARGIN_MS;

  const processRecord = async (
    record: SQSRecord,
    context: Pick<Context, 'getRemainingTimeInMillis'> | undefined,
  ): Promise<boolean> => {
    const base = {
      messageId: record.messageId,
      receiveCount: Number(record.attributes?.ApproximateReceiveCount) || undefined,
    };
    if (!inventory) {
      logger.error(
        { ...base, outcome: 'not_configured' satisfies RecordOutcome },
        `Not delivered: ${configError}`,
      );
      return false;
    }
    let event: RecordEvent;
    try {
      event = parseRecordBody(record.body);
    } catch (error) {
      logger.error(
        { ...base, outcome: 'malformed' satisfies RecordOutcome },
        `Not delivered, the message is not a customer event: ${errorMessage(error)}`,
      );
      return false;
    }
    const fields = { ...base, eventId: event.eventId, customerId: event.customerId };
    if (context && context.getRemainingTimeInMillis() < minimumTimeLeftMs) {
      logger.warn(
        { ...fields, outcome: 'out_of_time' satisfies RecordOutcome },
        `Not started for customer ${event.customerId}: the invocation is about to time out; SQS will redeliver it`,
      );
      return false;
    }
    const { state } = event;
    if (!state) {
      logger.info(
        { ...fields, outcome: 'ignored' satisfies RecordOutcome },
        `Ignored a ${event.type} event: not a type this function handles`,
      );
      return true;
    }
    try {
      const converged = await convergeStatelessly((change) => inventory.applyOne(change), {
        customerId: state.customerId,
        version: state.customerVersion,
        deleted: state.deletedAt !== null,
        name: state.customerName,
        email: state.customerEmail,
        packageRequestId: null,
        // Nothing is stored between records: whether a create reached Inventory is unknown.
        createTried: true,
      });
      const outcome: RecordOutcome =
        converged.outcome === 'created' && !converged.created
          ? 'already_exists'
          : converged.outcome;
      logger.info(
        { ...fields, outcome, packageRequestId: converged.packageRequestId },
        `${event.type} of customer ${event.customerId} (version ${state.customerVersion}): ${outcome.replace('_', ' ')}`,
      );
      return true;
    } catch (error) {
      if (error instanceof NonRetryableError) {
        logger.error(
          { ...fields, outcome: 'permanent_failure' satisfies RecordOutcome, status: error.status },
          `Inventory refused the change for customer ${event.customerId}: ${error.message}`,
        );
      } else {
        const status = error instanceof TransientError ? error.status : undefined;
        logger.warn(
          { ...fields, outcome: 'transient_failure' satisfies RecordOutcome, status },
          `Could not bring the package request of customer ${event.customerId} to its state; SQS will retry: ${errorMessage(error)}`,
        );
      }
      return false;
    }
  };

  return async (event, context) => {
    const batchItemFailures: SQSBatchItemFailure[] = [];
    await forEachLimited(inOrderGroups(event.Records ?? []), RECORD_CONCURRENCY, async (group) => {
      let failed = false;
      for (const record of group) {
        // After a failure in a FIFO group, the rest of the group goes back unprocessed, so SQS
        // delivers it again after the failed record, in order.
        let ok = false;
        if (!failed) {
          try {
            ok = await processRecord(record, context);
          } catch (error) {
            // Only a logging failure could land here; the record is retried all the same.
            logger.error({ messageId: record.messageId, err: error }, 'Unexpected error');
          }
        }
        if (!ok) {
          failed = true;
          batchItemFailures.push({ itemIdentifier: record.messageId });
        }
      }
    });
    return { batchItemFailures };
  };
}

let coldStartHandler: SqsBatchHandler | undefined;

/**
 * The Lambda entry point (`index.handler` in the bundle). The environment is read once per
 * execution environment, on its first invocation (the cold start).
 */
export async function handler(
  event: SQSEvent,
  context?: Pick<Context, 'getRemainingTimeInMillis'>,
): Promise<SQSBatchResponse> {
  coldStartHandler ??= createHandler(process.env);
  return coldStartHandler(event, context);
}
