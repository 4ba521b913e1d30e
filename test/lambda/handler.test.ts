import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { parseRecordBody } from '../../src/lambda/handler.js';
import { inventoryService } from '../../src/inventory/service.js';
import { createTestApp } from '../support/apps.js';
import { listen, useLambdaInventory } from '../support/lambda-inventory.js';
import { waitUntil } from '../support/platform.js';
import {
  customerCreated,
  eventOf,
  failedIds,
  recordFor,
  snsNotification,
  sqsRecord,
} from '../support/sqs-events.js';

const lambda = useLambdaInventory();
const { packagesFor, postsFor, handlerFor } = lambda;

// ---------------------------------------------------------------------------------------------

describe('the SQS handler', () => {
  it('creates one welcome package per customer and reports no failures', async () => {
    const { handler, lines } = handlerFor();
    const ids = Array.from({ length: 25 }, () => randomUUID());
    const records = ids.map(recordFor);

    const response = await handler(eventOf(records));

    expect(response).toEqual({ batchItemFailures: [] });
    expect(await packagesFor(ids)).toEqual(ids.map(() => 1));
    for (const id of ids) {
      expect(postsFor(id).map((call) => call.idempotencyKey)).toEqual([`welcome-package:${id}`]);
    }
    // One JSON line per record, naming the customer and the outcome.
    const recordLines = lines.filter((line) => line.messageId !== undefined);
    expect(recordLines).toHaveLength(records.length);
    for (const [i, record] of records.entries()) {
      expect(recordLines.find((line) => line.messageId === record.messageId)).toMatchObject({
        customerId: ids[i],
        outcome: 'created',
        receiveCount: 1,
        packageRequestId: expect.any(String),
      });
    }
  });

  it('processes records concurrently, at most 10 at a time', async () => {
    let inFlight = 0;
    let most = 0;
    // A stand-in for Inventory that answers 201 after 50 ms and counts the calls it holds.
    const server = http.createServer((request, response) => {
      inFlight++;
      most = Math.max(most, inFlight);
      request.resume();
      setTimeout(() => {
        inFlight--;
        response.writeHead(201, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ id: randomUUID(), status: 'pending', customer_version: 1 }));
      }, 50);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const { handler } = handlerFor({ INVENTORY_URL: url });
      const response = await handler(
        eventOf(Array.from({ length: 30 }, () => recordFor(randomUUID()))),
      );
      expect(response.batchItemFailures).toEqual([]);
      expect(most).toBe(10);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('creates still one package when SQS delivers the same event again', async () => {
    const { handler, lines } = handlerFor();
    const id = randomUUID();
    const body = JSON.stringify(customerCreated(id));

    const first = await handler(eventOf([sqsRecord(body)]));
    const again = await handler(eventOf([sqsRecord(body, 2)]));
    // Both copies in one batch, handled at the same time.
    const both = [sqsRecord(body, 3), sqsRecord(body, 3)];
    const together = await handler(eventOf(both));

    expect(first.batchItemFailures).toEqual([]);
    expect(again.batchItemFailures).toEqual([]);
    expect(together.batchItemFailures).toEqual([]);
    expect(await packagesFor([id])).toEqual([1]);
    expect(postsFor(id)).toHaveLength(4);
    expect(lines.filter((line) => line.customerId === id).map((line) => line.outcome)).toEqual([
      'created',
      ...Array(3).fill(expect.stringMatching(/^(created|already_exists)$/)),
    ]);
  });

  it('counts a package that already exists without the same key (duplicate 409) as done', async () => {
    const id = randomUUID();
    const existing = await fetch(`${lambda.proxyUrl}/package-requests`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ customer_id: id, kind: 'welcome_package' }),
    });
    expect(existing.status).toBe(201);
    const { handler, lines } = handlerFor();

    const response = await handler(eventOf([recordFor(id)]));

    expect(response.batchItemFailures).toEqual([]);
    expect(await packagesFor([id])).toEqual([1]);
    expect(lines.find((line) => line.customerId === id)).toMatchObject({
      outcome: 'already_exists',
      packageRequestId: ((await existing.json()) as { id: string }).id,
    });
  });

  it.each([
    { status: 503, outcome: 'transient_failure' },
    { status: 429, outcome: 'transient_failure' },
    { status: 422, outcome: 'permanent_failure' },
  ])(
    'reports only the record Inventory answered $status for ($outcome)',
    async ({ status, outcome }) => {
      const { handler, lines } = handlerFor();
      const ids = Array.from({ length: 5 }, () => randomUUID());
      const bad = ids[2]!;
      lambda.proxy.answer = (call) =>
        call.customerId === bad
          ? {
              status,
              body: { title: 'injected', status, detail: 'injected', code: 'injected' },
              headers: (status === 429 ? { 'retry-after': '1' } : {}) as Record<string, string>,
            }
          : undefined;
      const records = ids.map(recordFor);

      const response = await handler(eventOf(records));

      expect(failedIds(response)).toEqual([records[2]!.messageId]);
      expect(await packagesFor(ids)).toEqual([1, 1, 0, 1, 1]);
      expect(lines.find((line) => line.customerId === bad)).toMatchObject({
        messageId: records[2]!.messageId,
        outcome,
        status,
      });

      // SQS redelivers it once Inventory is well again: then it succeeds.
      lambda.proxy.answer = undefined;
      const retried = await handler(eventOf([{ ...records[2]!, receiptHandle: 'AQEBretry' }]));
      expect(retried.batchItemFailures).toEqual([]);
      expect(await packagesFor(ids)).toEqual([1, 1, 1, 1, 1]);
    },
  );

  it('reports every record, and does not throw, when Inventory cannot be reached', async () => {
    const { handler, lines } = handlerFor({
      INVENTORY_URL: 'http://127.0.0.1:1',
      REQUEST_TIMEOUT_MS: '500',
    });
    const records = [recordFor(randomUUID()), recordFor(randomUUID())];

    const response = await handler(eventOf(records));

    expect(failedIds(response)).toEqual(records.map((r) => r.messageId).sort());
    expect(lines.filter((line) => line.messageId).map((line) => line.outcome)).toEqual([
      'transient_failure',
      'transient_failure',
    ]);
  });

  it('reports a record whose call timed out', async () => {
    const { handler } = handlerFor({ REQUEST_TIMEOUT_MS: '200' });
    lambda.proxy.plan = { rate: 1, kinds: ['delay'], delayMs: 600 };
    const id = randomUUID();
    const record = recordFor(id);

    const response = await handler(eventOf([record]));

    expect(failedIds(response)).toEqual([record.messageId]);
    // The call may still have gone through late: the redelivery then finds it, not a second one.
    lambda.proxy.plan = { rate: 0, kinds: [] };
    await waitUntil(async () => (await packagesFor([id]))[0] === 1, 5_000, 'the late call');
    expect((await handler(eventOf([record]))).batchItemFailures).toEqual([]);
    expect(await packagesFor([id])).toEqual([1]);
  });

  it('reports malformed bodies and delivers the rest of the batch', async () => {
    const { handler, lines } = handlerFor();
    const good = [randomUUID(), randomUUID()];
    const withoutData = { ...customerCreated(randomUUID()), data: undefined };
    const withoutId = customerCreated(randomUUID()) as { data: { id?: string } };
    delete withoutId.data.id;
    const malformed = [
      sqsRecord('this is not JSON'),
      sqsRecord(''),
      sqsRecord('[]'),
      sqsRecord(JSON.stringify(withoutData)),
      sqsRecord(JSON.stringify(withoutId)),
      sqsRecord(JSON.stringify(customerCreated('not-a-uuid'))),
      sqsRecord(JSON.stringify(customerCreated(42 as unknown as string))),
      sqsRecord(JSON.stringify({ ...customerCreated(randomUUID()), type: 'customer.deleted' })),
      sqsRecord(JSON.stringify(snsNotification('{not json'))),
      sqsRecord(JSON.stringify({ Type: 'Notification', Message: { id: 1 } })),
    ];
    const records = [recordFor(good[0]!), ...malformed, recordFor(good[1]!)];
    const callsBefore = lambda.proxy.calls.length;

    const response = await handler(eventOf(records));

    expect(failedIds(response)).toEqual(malformed.map((r) => r.messageId).sort());
    expect(await packagesFor(good)).toEqual([1, 1]);
    expect(lambda.proxy.calls.length - callsBefore).toBe(2);
    for (const record of malformed) {
      expect(lines.find((line) => line.messageId === record.messageId)).toMatchObject({
        outcome: 'malformed',
        level: 50,
      });
    }
  });

  it('accepts the event wrapped in an SNS notification (SNS to SQS fan-out)', async () => {
    const { handler, lines } = handlerFor();
    const id = randomUUID();
    const event = customerCreated(id);
    const record = sqsRecord(JSON.stringify(snsNotification(JSON.stringify(event))));

    const response = await handler(eventOf([record]));

    expect(response.batchItemFailures).toEqual([]);
    expect(await packagesFor([id])).toEqual([1]);
    expect(postsFor(id).map((call) => call.idempotencyKey)).toEqual([`welcome-package:${id}`]);
    expect(lines.find((line) => line.customerId === id)).toMatchObject({
      eventId: event.id,
      outcome: 'created',
    });
  });

  it.each([
    { name: 'missing', env: { INVENTORY_URL: undefined }, variable: 'INVENTORY_URL' },
    { name: 'blank', env: { INVENTORY_URL: '  ' }, variable: 'INVENTORY_URL' },
    { name: 'not a URL', env: { INVENTORY_URL: 'inventory' }, variable: 'INVENTORY_URL' },
    { name: 'not http(s)', env: { INVENTORY_URL: 'ftp://inventory' }, variable: 'INVENTORY_URL' },
    { name: 'a bad timeout', env: { REQUEST_TIMEOUT_MS: 'soon' }, variable: 'REQUEST_TIMEOUT_MS' },
  ])('reports every record when the configuration is $name', async ({ env, variable }) => {
    const { handler, lines } = handlerFor(env);
    const records = [recordFor(randomUUID()), recordFor(randomUUID()), sqsRecord('junk')];
    const callsBefore = lambda.proxy.calls.length;

    const response = await handler(eventOf(records));

    expect(failedIds(response)).toEqual(records.map((r) => r.messageId).sort());
    expect(lambda.proxy.calls.length).toBe(callsBefore);
    // Said once at cold start, then on every record.
    expect(lines[0]).toMatchObject({ level: 50, outcome: 'not_configured' });
    expect(String(lines[0]!.msg)).toContain(variable);
    const recordLines = lines.filter((line) => line.messageId);
    expect(recordLines).toHaveLength(3);
    for (const line of recordLines) expect(line.outcome).toBe('not_configured');
  });

  it('sends API_TOKEN as a bearer token', async () => {
    const token = 'lambda-test-token-0123456789';
    const secured = await createTestApp(inventoryService, { apiToken: token });
    try {
      const url = await listen(secured.app);
      const id = randomUUID();
      const without = await handlerFor({ INVENTORY_URL: url }).handler(eventOf([recordFor(id)]));
      expect(without.batchItemFailures).toHaveLength(1);
      const withToken = handlerFor({ INVENTORY_URL: `${url}/`, API_TOKEN: token });
      expect((await withToken.handler(eventOf([recordFor(id)]))).batchItemFailures).toEqual([]);
      const rows = await secured.database.db
        .selectFrom('package_requests')
        .select('customer_id')
        .execute();
      expect(rows.map((row) => row.customer_id)).toEqual([id]);
      // The token never reaches the log.
      expect(JSON.stringify(withToken.lines)).not.toContain(token);
    } finally {
      await secured.close();
    }
  });

  it('does not start records when the invocation is about to time out', async () => {
    const { handler, lines } = handlerFor();
    const records = [recordFor(randomUUID()), recordFor(randomUUID())];
    const callsBefore = lambda.proxy.calls.length;

    const response = await handler(eventOf(records), { getRemainingTimeInMillis: () => 1_500 });

    expect(failedIds(response)).toEqual(records.map((r) => r.messageId).sort());
    expect(lambda.proxy.calls.length).toBe(callsBefore);
    expect(lines.map((line) => line.outcome)).toEqual(['out_of_time', 'out_of_time']);
  });

  it('answers an empty batch with no failures', async () => {
    expect(await handlerFor().handler(eventOf([]))).toEqual({ batchItemFailures: [] });
  });
});

describe('parseRecordBody', () => {
  it('reads the customer id and event id, raw or inside an SNS notification', () => {
    const id = randomUUID();
    const event = customerCreated(id);
    const expected = { customerId: id, eventId: event.id, type: 'customer.created' };
    expect(parseRecordBody(JSON.stringify(event))).toMatchObject(expected);
    expect(parseRecordBody(JSON.stringify(snsNotification(JSON.stringify(event))))).toMatchObject(
      expected,
    );
  });
});
