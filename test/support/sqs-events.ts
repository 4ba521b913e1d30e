/**
 * SQS records as AWS delivers them to a Lambda, carrying the CRM's customer events, for the
 * handler's tests.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { pino } from 'pino';

export const QUEUE_ARN = 'arn:aws:sqs:us-east-2:123456789012:CustomerCreatedQueue';

export function customerCreated(customerId: string, position = 1) {
  return {
    id: randomUUID(),
    type: 'customer.created',
    position,
    occurred_at: new Date().toISOString(),
    data: {
      id: customerId,
      name: `Customer ${position}`,
      email: `customer-${customerId}@example.com`,
      created_at: new Date().toISOString(),
    },
  };
}

export function snsNotification(message: string) {
  return {
    Type: 'Notification',
    MessageId: randomUUID(),
    TopicArn: 'arn:aws:sns:us-east-2:123456789012:customer-created',
    Message: message,
    Timestamp: new Date().toISOString(),
    SignatureVersion: '1',
    Signature: 'EXAMPLE',
    SigningCertURL: 'https://sns.us-east-2.amazonaws.com/SimpleNotificationService-0000.pem',
    UnsubscribeURL: 'https://sns.us-east-2.amazonaws.com/?Action=Unsubscribe',
  };
}

export function sqsRecord(body: string, receiveCount = 1): SQSRecord {
  return {
    messageId: randomUUID(),
    receiptHandle: `AQEB${randomUUID().replaceAll('-', '')}`,
    body,
    attributes: {
      ApproximateReceiveCount: String(receiveCount),
      SentTimestamp: String(Date.now()),
      SenderId: 'AIDAIENQZJOLO23YVJ4VO',
      ApproximateFirstReceiveTimestamp: String(Date.now()),
    },
    messageAttributes: {},
    md5OfBody: createHash('md5').update(body).digest('hex'),
    eventSource: 'aws:sqs',
    eventSourceARN: QUEUE_ARN,
    awsRegion: 'us-east-2',
  };
}

export const eventOf = (records: SQSRecord[]): SQSEvent => ({ Records: records });
export const recordFor = (customerId: string) =>
  sqsRecord(JSON.stringify(customerCreated(customerId)));

/** A logger that keeps its JSON lines, to check what the handler writes per record. */
export function captureLogs() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'info' },
    { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
  );
  return { logger, lines };
}

export const failedIds = (response: { batchItemFailures: { itemIdentifier: string }[] }) =>
  response.batchItemFailures.map((failure) => failure.itemIdentifier).sort();

/** A customer.updated event: the customer's whole state at `version`. */
export function customerUpdated(
  customerId: string,
  version: number,
  data: { name: string; email: string },
) {
  const now = new Date().toISOString();
  return {
    id: randomUUID(),
    type: 'customer.updated',
    position: version,
    occurred_at: now,
    changed_fields: ['name', 'email'],
    data: { id: customerId, ...data, version, created_at: now, updated_at: now },
  };
}

/** A customer.deleted event: the id and version, nothing personal. */
export function customerDeleted(customerId: string, version: number) {
  const now = new Date().toISOString();
  return {
    id: randomUUID(),
    type: 'customer.deleted',
    position: version,
    occurred_at: now,
    data: { id: customerId, version, deleted_at: now },
  };
}
