import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  isClosedRequestAnswer,
  isPackageRequestAnswer,
  isStaleVersionAnswer,
} from '../../src/contracts/package-requests.js';
import { expectProblem } from '../support/apps.js';
import { useInventory } from '../support/inventory.js';

const inventory = useInventory();
const { patch, cancel, ship, get, pending } = inventory;

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

describe('POST /package-requests with a recipient', () => {
  it('stores the recipient and customer version it is given, and null for what it is not', async () => {
    const customerId = randomUUID();
    const response = await inventory.create({
      customer_id: customerId,
      recipient_name: 'Jane Doe',
      recipient_email: 'jane@example.com',
      customer_version: 1,
    });
    expect(response.statusCode).toBe(201);
    const body = response.json();
    expect(body).toEqual({
      id: expect.any(String),
      customer_id: customerId,
      kind: 'welcome_package',
      status: 'pending',
      recipient_name: 'Jane Doe',
      recipient_email: 'jane@example.com',
      customer_version: 1,
      created_at: expect.stringMatching(ISO),
      updated_at: body.created_at,
    });
    expect((await get(body.id)).json()).toEqual(body);
    const nameOnly = (await pending({ recipient_name: 'Ann' })) as Record<string, unknown>;
    expect(nameOnly).toMatchObject({
      recipient_name: 'Ann',
      recipient_email: null,
      customer_version: null,
    });
  });

  it.each([
    ['a blank name', { recipient_name: '  ' }],
    ['a 201-character name', { recipient_name: 'n'.repeat(201) }],
    ['a name with a control character', { recipient_name: 'Jane\u0007' }],
    ['a malformed email', { recipient_email: 'jane.example.com' }],
    ['a null name', { recipient_name: null }],
    ['a customer version 0', { customer_version: 0 }],
    ['a fractional customer version', { customer_version: 1.5 }],
    ['a customer version as text', { customer_version: '2' }],
    ['a customer version past 2^53', { customer_version: 2 ** 53 }],
  ])('refuses %s with 400 naming the field, storing nothing', async (_, fields) => {
    const problem = expectProblem(
      await inventory.create({ customer_id: randomUUID(), ...fields }),
      400,
    );
    const [field] = Object.keys(fields);
    expect((problem.errors as { field: string }[]).map((error) => error.field)).toEqual([field]);
    expect(await inventory.count('package_requests')).toBe(0);
  });
});

describe('PATCH /package-requests/{id}', () => {
  it('applies a newer customer version to a pending request and moves updated_at', async () => {
    const created = await pending({ recipient_name: 'Jane Doe', customer_version: 1 });
    await new Promise((resolve) => setTimeout(resolve, 5));
    const response = await patch(created.id, {
      recipient_email: 'jane.smith@example.com',
      customer_version: 2,
    });
    expect(response.statusCode).toBe(200);
    const body = response.json();
    expect(body).toEqual({
      ...created,
      recipient_email: 'jane.smith@example.com',
      customer_version: 2,
      updated_at: expect.stringMatching(ISO),
    });
    expect(body.updated_at > created.updated_at).toBe(true);
    expect(isPackageRequestAnswer.Check(body)).toBe(true);
    expect(response.headers.location).toBeUndefined();
    expect((await get(created.id)).json()).toEqual(body);
  });

  it('applies any customer version to a request created without one', async () => {
    const created = await pending();
    const body = (await patch(created.id, { recipient_name: 'Ann', customer_version: 7 })).json();
    expect(body).toMatchObject({
      recipient_name: 'Ann',
      recipient_email: null,
      customer_version: 7,
    });
  });

  it('answers the same customer version again 200 unchanged, whatever the fields say', async () => {
    const created = await pending();
    const first = (await patch(created.id, { recipient_name: 'Ann', customer_version: 3 })).json();
    const again = await patch(created.id, { recipient_name: 'Someone else', customer_version: 3 });
    expect(again.statusCode).toBe(200);
    expect(again.json()).toEqual(first);
  });

  it('refuses an older customer version with 409 customer_version_stale naming the current one', async () => {
    const created = await pending({ recipient_name: 'New Name', customer_version: 5 });
    const problem = expectProblem(
      await patch(created.id, { recipient_name: 'Old Name', customer_version: 4 }),
      409,
    );
    expect(problem).toMatchObject({
      code: 'customer_version_stale',
      current_customer_version: 5,
      package_request: created,
      instance: `/package-requests/${created.id}`,
    });
    expect(problem.detail).toContain('version 4 is older');
    expect(isStaleVersionAnswer.Check(problem)).toBe(true);
    expect((await get(created.id)).json()).toEqual(created);
  });

  it('never lets an older customer version overwrite a newer one, in either order or concurrently', async () => {
    const v2 = { recipient_name: 'Version Two', customer_version: 2 };
    const v3 = { recipient_name: 'Version Three', customer_version: 3 };
    const expectAtThree = async (id: string) =>
      expect((await get(id)).json()).toMatchObject({ ...v3, status: 'pending' });

    const newerFirst = await pending({ customer_version: 1 });
    expect((await patch(newerFirst.id, v3)).statusCode).toBe(200);
    expect(expectProblem(await patch(newerFirst.id, v2), 409).code).toBe('customer_version_stale');
    await expectAtThree(newerFirst.id);

    const olderFirst = await pending({ customer_version: 1 });
    expect((await patch(olderFirst.id, v2)).statusCode).toBe(200);
    expect((await patch(olderFirst.id, v3)).statusCode).toBe(200);
    await expectAtThree(olderFirst.id);

    for (let round = 0; round < 20; round += 1) {
      const { id } = await pending({ customer_version: 1 });
      // With keys and without: with one, each runs in a transaction of its own.
      const headers = (v: number): Record<string, string> =>
        round % 2 === 0 ? { 'idempotency-key': `v${v}:${id}` } : {};
      const sendThree = () => patch(id, v3, headers(3));
      const sendTwo = () => patch(id, v2, headers(2));
      // Started in both orders, neither awaited before the other is sent.
      const [three, two] =
        round % 4 < 2
          ? await Promise.all([sendThree(), sendTwo()])
          : await Promise.all([sendTwo(), sendThree()]).then(([b, a]) => [a, b]);
      expect(three!.statusCode).toBe(200);
      if (two!.statusCode === 409) {
        expect(two!.json()).toMatchObject({
          code: 'customer_version_stale',
          current_customer_version: 3,
        });
      } else {
        // Version 2 ran first and version 3 then replaced it.
        expect(two!.statusCode).toBe(200);
        expect(two!.json().customer_version).toBe(2);
      }
      await expectAtThree(id);
    }
  });

  it('keeps a shipped request’s recipient: a later update answers 409 package_request_shipped', async () => {
    const created = await pending({ recipient_name: 'Jane Doe', customer_version: 1 });
    const shipped = (await ship(created.id)).json();
    const problem = expectProblem(
      await patch(created.id, { recipient_name: 'Jane Smith', customer_version: 2 }),
      409,
    );
    expect(problem).toMatchObject({
      code: 'package_request_shipped',
      package_request: { ...shipped, status: 'shipped', recipient_name: 'Jane Doe' },
    });
    expect(problem.detail).toContain('shipping record');
    expect(isClosedRequestAnswer.Check(problem)).toBe(true);
    expect((await get(created.id)).json()).toEqual(shipped);
  });

  it('refuses to change a cancelled request with 409 package_request_cancelled', async () => {
    const created = await pending({ customer_version: 1 });
    const cancelled = (await cancel(created.id)).json();
    const problem = expectProblem(
      await patch(created.id, { recipient_email: 'x@example.com', customer_version: 2 }),
      409,
    );
    expect(problem).toMatchObject({
      code: 'package_request_cancelled',
      package_request: { status: 'cancelled' },
    });
    expect((await get(created.id)).json()).toEqual(cancelled);
  });

  it('answers 404 for an unknown id', async () => {
    const id = randomUUID();
    const problem = expectProblem(
      await patch(id, { recipient_name: 'A', customer_version: 1 }),
      404,
    );
    expect(problem).toMatchObject({ code: 'not_found', instance: `/package-requests/${id}` });
  });

  it.each([
    [
      'no recipient field',
      { customer_version: 2 },
      [['(root)', 'must have at least one of recipient_name, recipient_email']],
    ],
    ['no customer version', { recipient_name: 'Ann' }, [['customer_version', 'is required']]],
    [
      'an unknown field',
      { recipient_name: 'Ann', customer_version: 2, status: 'shipped' },
      [['status', 'is not a known field; remove it']],
    ],
    [
      'a malformed email',
      { recipient_email: 'ann@', customer_version: 2 },
      [['recipient_email', 'must be a valid email']],
    ],
    [
      'a blank name',
      { recipient_name: ' ', customer_version: 2 },
      [['recipient_name', expect.stringContaining('at least one letter')]],
    ],
    [
      'a customer version 0',
      { recipient_name: 'Ann', customer_version: 0 },
      [['customer_version', 'must be at least 1']],
    ],
    [
      'a null name',
      { recipient_name: null, customer_version: 2 },
      [['recipient_name', 'must be a string']],
    ],
    [
      'an empty object',
      {},
      [
        ['(root)', 'must have at least one of recipient_name, recipient_email'],
        ['customer_version', 'is required'],
      ],
    ],
  ])('refuses %s with 400 naming what to fix, changing nothing', async (_, body, errors) => {
    const created = await pending({ recipient_name: 'Jane', customer_version: 1 });
    const problem = expectProblem(await patch(created.id, body), 400);
    expect(
      (problem.errors as { field: string; message: string }[]).map((e) => [e.field, e.message]),
    ).toEqual(errors);
    expect((await get(created.id)).json()).toEqual(created);
  });
});

describe('POST /package-requests/{id}/cancel and /ship', () => {
  it('cancels a pending request once; cancelling again answers 200 unchanged', async () => {
    const created = await pending();
    const response = await cancel(created.id);
    expect(response.statusCode).toBe(200);
    const cancelled = response.json();
    expect(cancelled).toEqual({
      ...created,
      status: 'cancelled',
      updated_at: expect.stringMatching(ISO),
    });
    const again = await cancel(created.id, {}, {});
    expect(again.statusCode).toBe(200);
    expect(again.json()).toEqual(cancelled);
  });

  it('ships a pending request once; shipping again answers 200 unchanged', async () => {
    const created = await pending({
      recipient_name: 'Jane Doe',
      recipient_email: 'jane@example.com',
    });
    const shipped = (await ship(created.id, {}, {})).json();
    expect(shipped).toEqual({
      ...created,
      status: 'shipped',
      updated_at: expect.stringMatching(ISO),
    });
    const again = await ship(created.id);
    expect(again.statusCode).toBe(200);
    expect(again.json()).toEqual(shipped);
  });

  it('refuses to cancel a shipped request, or ship a cancelled one, with 409 naming its status', async () => {
    const shipped = await pending();
    await ship(shipped.id);
    const refusedCancel = expectProblem(await cancel(shipped.id), 409);
    expect(refusedCancel).toMatchObject({
      code: 'package_request_shipped',
      package_request: { id: shipped.id, status: 'shipped' },
      instance: `/package-requests/${shipped.id}/cancel`,
    });
    const cancelled = await pending();
    await cancel(cancelled.id);
    const refusedShip = expectProblem(await ship(cancelled.id), 409);
    expect(refusedShip).toMatchObject({
      code: 'package_request_cancelled',
      package_request: { id: cancelled.id, status: 'cancelled' },
    });
    expect((await get(shipped.id)).json().status).toBe('shipped');
    expect((await get(cancelled.id)).json().status).toBe('cancelled');
  });

  it('lets exactly one of a concurrent cancel and ship win', async () => {
    for (let round = 0; round < 20; round += 1) {
      const { id } = await pending();
      const key = (op: string): Record<string, string> =>
        round % 2 === 0 ? { 'idempotency-key': `${op}:${id}` } : {};
      const [cancelled, shipped] = await Promise.all([
        cancel(id, key('cancel')),
        ship(id, key('ship')),
      ]);
      const winner = cancelled!.statusCode === 200 ? cancelled! : shipped!;
      const loser = winner === cancelled ? shipped! : cancelled!;
      expect(winner.statusCode).toBe(200);
      const status = winner.json().status as string;
      expect(expectProblem(loser, 409)).toMatchObject({
        code: `package_request_${status}`,
        package_request: { status },
      });
      expect((await get(id)).json().status).toBe(status);
    }
  });

  it('answers 404 for an unknown id and refuses a body other than {} with 400', async () => {
    for (const send of [cancel, ship]) {
      expect(expectProblem(await send(randomUUID()), 404).code).toBe('not_found');
      const created = await pending();
      const problem = expectProblem(await send(created.id, {}, { status: 'shipped' }), 400);
      expect(problem.code).toBe('unexpected_body');
      expect((await get(created.id)).json()).toEqual(created);
    }
  });
});

describe('the change routes in /openapi.json', () => {
  it('document PATCH with its body, cancel and ship without one, each with its key and answers', async () => {
    const doc = (await inventory.test().app.inject({ method: 'GET', url: '/openapi.json' })).json();
    const update = doc.paths['/package-requests/{id}'].patch;
    const body = update.requestBody.content['application/json'].schema;
    expect(Object.keys(body.properties)).toEqual([
      'recipient_name',
      'recipient_email',
      'customer_version',
    ]);
    expect(body.required).toEqual(['customer_version']);
    const transitions = ['cancel', 'ship'].map(
      (op) => doc.paths[`/package-requests/{id}/${op}`].post,
    );
    for (const operation of [update, ...transitions]) {
      expect(Object.keys(operation.responses)).toEqual(
        expect.arrayContaining(['200', '400', '404', '409', '422']),
      );
      expect(operation.parameters.map((p: { name: string }) => p.name).sort()).toEqual([
        'id',
        'idempotency-key',
      ]);
    }
    for (const operation of transitions) expect(operation.requestBody).toBeUndefined();
  });
});
