import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { useLambdaInventory } from '../support/lambda-inventory.js';
import {
  customerCreated,
  customerDeleted,
  customerUpdated,
  eventOf,
  sqsRecord,
} from '../support/sqs-events.js';

const lambda = useLambdaInventory();

const recordOf = (event: unknown) => sqsRecord(JSON.stringify(event));
/** Sends the events one invocation each, in this order, as a FIFO queue grouped by customer would. */
async function deliverInOrder(events: unknown[]) {
  const { handler, lines } = lambda.handlerFor();
  for (const event of events) {
    expect((await handler(eventOf([recordOf(event)]))).batchItemFailures).toEqual([]);
  }
  return lines;
}

const requestsOf = (customerId: string) =>
  lambda.inventory.database.db
    .selectFrom('package_requests')
    .select(['status', 'recipient_name', 'recipient_email', 'customer_version'])
    .where('customer_id', '=', customerId)
    .execute();

describe('the SQS handler with changes and deletions', () => {
  it("updates the package's recipient to the customer's new state", async () => {
    const id = randomUUID();
    const lines = await deliverInOrder([
      customerCreated(id),
      customerUpdated(id, 2, { name: 'New Name', email: 'new@example.com' }),
    ]);
    expect(await requestsOf(id)).toEqual([
      {
        status: 'pending',
        recipient_name: 'New Name',
        recipient_email: 'new@example.com',
        customer_version: 2,
      },
    ]);
    expect(lines.filter((line) => line.customerId === id).map((line) => line.outcome)).toEqual([
      'created',
      'updated',
    ]);
  });

  it('creates the package with the latest recipient when the update is the first event it sees', async () => {
    const id = randomUUID();
    await deliverInOrder([customerUpdated(id, 3, { name: 'Late', email: 'late@example.com' })]);
    expect(await requestsOf(id)).toMatchObject([
      { status: 'pending', recipient_name: 'Late', customer_version: 3 },
    ]);
  });

  it('never lets an older update overwrite a newer one, whatever order they arrive in', async () => {
    const id = randomUUID();
    await deliverInOrder([
      customerCreated(id),
      customerUpdated(id, 3, { name: 'Three', email: 'three@example.com' }),
      customerUpdated(id, 2, { name: 'Two', email: 'two@example.com' }),
    ]);
    expect(await requestsOf(id)).toMatchObject([{ recipient_name: 'Three', customer_version: 3 }]);
  });

  it("cancels a deleted customer's package; a repeat of the deletion changes nothing", async () => {
    const id = randomUUID();
    const deletion = customerDeleted(id, 2);
    const lines = await deliverInOrder([customerCreated(id), deletion, deletion]);
    expect(await requestsOf(id)).toMatchObject([{ status: 'cancelled' }]);
    expect(lines.filter((line) => line.customerId === id).map((line) => line.outcome)).toEqual([
      'created',
      'cancelled',
      'cancelled',
    ]);
  });

  it('leaves only a cancelled package with nothing personal for a customer deleted before any package was asked for', async () => {
    const id = randomUUID();
    // The function cannot know whether a create for the customer is on its way: it fences the
    // customer's key, so a create arriving later is refused.
    const lines = await deliverInOrder([customerDeleted(id, 2)]);
    expect(await requestsOf(id)).toEqual([
      { status: 'cancelled', recipient_name: null, recipient_email: null, customer_version: 2 },
    ]);
    expect(lines.find((line) => line.customerId === id)).toMatchObject({ outcome: 'cancelled' });
    const { handler } = lambda.handlerFor();
    expect((await handler(eventOf([recordOf(customerCreated(id))]))).batchItemFailures).toEqual([]);
    expect(await requestsOf(id)).toMatchObject([{ status: 'cancelled', recipient_name: null }]);
  });

  it('leaves a package that shipped before the change as it shipped', async () => {
    const id = randomUUID();
    await deliverInOrder([customerCreated(id)]);
    const [request] = await lambda.inventory.database.db
      .selectFrom('package_requests')
      .select('id')
      .where('customer_id', '=', id)
      .execute();
    const shipped = await fetch(`${lambda.proxyUrl}/package-requests/${request!.id}/ship`, {
      method: 'POST',
    });
    expect(shipped.status).toBe(200);
    const lines = await deliverInOrder([
      customerUpdated(id, 2, { name: 'Too Late', email: 'late@example.com' }),
      customerDeleted(id, 3),
    ]);
    expect(await requestsOf(id)).toMatchObject([
      { status: 'shipped', recipient_name: 'Customer 1', customer_version: 1 },
    ]);
    expect(lines.map((line) => line.outcome)).toEqual(['left_shipped', 'left_shipped']);
  });

  it('ignores an event type it does not handle, and answers a malformed change as a failure', async () => {
    const { handler, lines } = lambda.handlerFor();
    const other = recordOf({ type: 'customer.merged', data: { id: randomUUID() } });
    const broken = recordOf({ type: 'customer.updated', data: { id: randomUUID() } });
    const response = await handler(eventOf([other, broken]));
    expect(response.batchItemFailures).toEqual([{ itemIdentifier: broken.messageId }]);
    expect(lines.map((line) => line.outcome).sort()).toEqual(['ignored', 'malformed']);
  });

  it("handles a FIFO group's records in order, and sends the rest of a group back after a failure", async () => {
    const inGroup = (event: unknown, groupId: string) => {
      const record = recordOf(event);
      return { ...record, attributes: { ...record.attributes, MessageGroupId: groupId } };
    };
    const id = randomUUID();
    const { handler } = lambda.handlerFor();
    // One customer's whole life in one batch: created, changed, deleted.
    const life = [
      customerCreated(id),
      customerUpdated(id, 2, { name: 'Changed', email: 'changed@example.com' }),
      customerDeleted(id, 3),
    ].map((event) => inGroup(event, id));
    expect((await handler(eventOf(life))).batchItemFailures).toEqual([]);
    expect(await requestsOf(id)).toMatchObject([{ status: 'cancelled' }]);

    // A record that fails holds back the ones after it in its group, not other groups.
    const other = randomUUID();
    const held = randomUUID();
    const batch = [
      inGroup({ type: 'customer.updated', data: { id: held } }, held),
      inGroup(customerCreated(held), held),
      inGroup(customerCreated(other), other),
    ];
    const response = await handler(eventOf(batch));
    expect(response.batchItemFailures.map((failure) => failure.itemIdentifier)).toEqual([
      batch[0]!.messageId,
      batch[1]!.messageId,
    ]);
    expect(await requestsOf(held)).toEqual([]);
    expect(await requestsOf(other)).toHaveLength(1);
  });
});
