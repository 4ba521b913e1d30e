import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { IdempotencyKeys } from '../../src/inventory/idempotency.js';
import type { InventoryTables } from '../../src/inventory/migrations.js';
import { fingerprintOf, runMany, runOne, type Operation } from '../../src/inventory/operations.js';
import { inventoryService } from '../../src/inventory/service.js';
import { createTestApp, expectProblem } from '../support/apps.js';
import { createTestDatabase, postgresUrlFor, type TestDatabase } from '../support/databases.js';
import { useInventory, type Result } from '../support/inventory.js';

// A cancelled request's customer left: Inventory keeps neither their name nor their email, in the
// request or in any answer stored under an idempotency key. A shipped one keeps its recipient.

const NAME = 'Zebulon Quixote';
const EMAIL = 'zebulon.quixote@example.org';
const PERSONAL = /zebulon|quixote/i;

const key = (value: string) => ({ 'idempotency-key': value });

describe('cancelling a package request', () => {
  const inventory = useInventory();
  const db = () => inventory.test().database.db;

  /** What the database holds about request `id`: its row, and every answer stored under a key. */
  const stored = async (id: string) => ({
    row: await db()
      .selectFrom('package_requests')
      .select(['status', 'recipient_name', 'recipient_email'])
      .where('id', '=', id)
      .executeTakeFirstOrThrow(),
    answers: await db()
      .selectFrom('idempotency_keys')
      .select(['key', 'package_request_id', 'response_body'])
      .orderBy('key')
      .execute(),
  });

  const batch = async (items: object[]): Promise<Result[]> => {
    const response = await inventory.batch({ items });
    expect(response.statusCode, response.body).toBe(200);
    return (response.json() as { results: Result[] }).results;
  };

  it('erases the name and email from the request and from every answer stored about it; replays answer null', async () => {
    const customer_id = randomUUID();
    const create = {
      customer_id,
      recipient_name: NAME,
      recipient_email: EMAIL,
      customer_version: 1,
    };
    const rename = { recipient_name: `${NAME} Jr`, customer_version: 2 };
    const stale = { recipient_email: `old.${EMAIL}`, customer_version: 1 };
    const created = await inventory.create(create, key('create'));
    expect(created.statusCode).toBe(201);
    const { id } = created.json() as { id: string };
    expect((await inventory.patch(id, rename, key('update'))).statusCode).toBe(200);
    expectProblem(await inventory.create({ customer_id }, key('duplicate')), 409);
    expectProblem(await inventory.patch(id, stale, key('stale')), 409);
    expect(JSON.stringify(await stored(id))).toMatch(PERSONAL);

    const cancelled = await inventory.cancel(id, key('cancel'));
    expect(cancelled.json()).toMatchObject({ status: 'cancelled', recipient_name: null });

    const after = await stored(id);
    expect(after.row).toEqual({
      status: 'cancelled',
      recipient_name: null,
      recipient_email: null,
    });
    expect(after.answers.map((answer) => [answer.key, answer.package_request_id])).toEqual(
      ['cancel', 'create', 'duplicate', 'stale', 'update'].map((name) => [name, id]),
    );
    expect(JSON.stringify(after)).not.toMatch(PERSONAL);

    const replays = [
      await inventory.create(create, key('create')),
      await inventory.patch(id, rename, key('update')),
      await inventory.create({ customer_id }, key('duplicate')),
      await inventory.patch(id, stale, key('stale')),
      await inventory.cancel(id, key('cancel')),
    ];
    expect(replays.map((replay) => replay.statusCode)).toEqual([201, 200, 409, 409, 200]);
    const [createReplay, updateReplay, duplicateReplay, staleReplay] = replays.map(
      (replay) => replay.json() as Record<string, any>,
    );
    const erased = { id, recipient_name: null, recipient_email: null };
    expect(createReplay).toMatchObject({ ...erased, status: 'pending', customer_version: 1 });
    expect(updateReplay).toMatchObject({ ...erased, status: 'pending', customer_version: 2 });
    expect(duplicateReplay!.existing_request).toMatchObject(erased);
    expect(staleReplay!.package_request).toMatchObject(erased);
    for (const replay of replays) {
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.body).not.toMatch(PERSONAL);
    }
  });

  it('erases alike when the batch cancels, and its replays answer null', async () => {
    const customer_id = randomUUID();
    const create = { customer_id, recipient_name: NAME, recipient_email: EMAIL };
    const [created] = await batch([{ ...create, idempotency_key: 'create' }]);
    const id = created!.body.id as string;
    const cancelItems = [{ op: 'cancel', id, idempotency_key: 'cancel' }];
    expect((await batch(cancelItems))[0]).toMatchObject({
      status: 200,
      body: { status: 'cancelled', recipient_name: null, recipient_email: null },
    });

    const after = await stored(id);
    expect(after.row.recipient_name).toBeNull();
    expect(after.answers.map((answer) => answer.package_request_id)).toEqual([id, id]);
    expect(JSON.stringify(after)).not.toMatch(PERSONAL);
    const replays = await batch([{ ...create, idempotency_key: 'create' }, ...cancelItems]);
    expect(replays.map((result) => [result.status, result.replayed])).toEqual([
      [201, true],
      [200, true],
    ]);
    expect(JSON.stringify(replays)).not.toMatch(PERSONAL);
  });

  it.each(['single route', 'batch'])(
    'erases an answer read before a concurrent cancel and stored after it (%s)',
    async (route) => {
      const customer_id = randomUUID();
      const { id } = (
        await inventory.create({ customer_id, recipient_name: NAME, recipient_email: EMAIL })
      ).json() as { id: string };
      const duplicate: Operation = {
        op: 'create',
        input: { customer_id, kind: 'welcome_package' },
      };
      let cancelling: ReturnType<typeof inventory.cancel> | undefined;
      /** Runs the duplicate create, then lets a cancel arrive before the answer commits. */
      const runThenCancel = async (trx: Kysely<InventoryTables>) => {
        const answered = await (route === 'batch'
          ? runMany(trx, [duplicate])
          : [await runOne(trx, duplicate)]);
        expect(JSON.stringify(answered[0]!.response.body)).toMatch(PERSONAL);
        // Nothing may let the cancel erase first and miss this answer.
        cancelling = inventory.cancel(id);
        await new Promise((resolve) => setTimeout(resolve, 300));
        return answered.map(({ response }) => response);
      };
      const keys = new IdempotencyKeys(db());
      const fingerprint = fingerprintOf(duplicate);
      if (route === 'batch') {
        await keys.answerMany([{ key: 'duplicate', fingerprint }], runThenCancel);
      } else {
        await keys.answer(
          'duplicate',
          () => fingerprint,
          async (trx) => (await runThenCancel(trx))[0]!,
          () => {},
        );
      }
      expect((await cancelling!).statusCode).toBe(200);
      const after = await stored(id);
      expect(after.answers.map((answer) => answer.package_request_id)).toEqual([id]);
      expect(JSON.stringify(after)).not.toMatch(PERSONAL);
    },
  );

  it('keeps a shipped request’s recipient, in the request and its stored answers: the shipping record', async () => {
    const create = { customer_id: randomUUID(), recipient_name: NAME, recipient_email: EMAIL };
    const { id } = (await inventory.create(create, key('create'))).json() as { id: string };
    expect((await inventory.ship(id, key('ship'))).statusCode).toBe(200);
    expectProblem(await inventory.cancel(id, key('cancel')), 409);

    const after = await stored(id);
    expect(after.row).toEqual({ status: 'shipped', recipient_name: NAME, recipient_email: EMAIL });
    expect(after.answers.map((answer) => answer.key)).toEqual(['cancel', 'create', 'ship']);
    for (const answer of after.answers) expect(answer.response_body).toContain(EMAIL);
    const replay = await inventory.create(create, key('create'));
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.json()).toMatchObject({ recipient_name: NAME, recipient_email: EMAIL });
  });
});

describe('cancelling a package request, on SQLite', () => {
  let database: TestDatabase<InventoryTables> | undefined;
  afterEach(() => {
    // Closed by the test already; only its files are left to remove.
    if (database) fs.rmSync(database.env.DATA_DIR!, { recursive: true, force: true });
    database = undefined;
  });

  it.runIf(!postgresUrlFor('inventory'))(
    'leaves neither the name nor the email in the database files once the service closes',
    async () => {
      database = await createTestDatabase<InventoryTables>('inventory');
      const t = await createTestApp(inventoryService, { database });
      const send = (method: 'POST' | 'PATCH', url: string, body: object, idempotencyKey: string) =>
        t.app.inject({ method, url, payload: body, headers: key(idempotencyKey) });
      const created = await send(
        'POST',
        '/package-requests',
        {
          customer_id: randomUUID(),
          recipient_name: NAME,
          recipient_email: EMAIL,
          customer_version: 1,
        },
        'create',
      );
      const { id } = created.json() as { id: string };
      const updated = await send(
        'PATCH',
        `/package-requests/${id}`,
        { recipient_email: `new.${EMAIL}`, customer_version: 2 },
        'update',
      );
      expect(updated.statusCode).toBe(200);
      expect((await send('POST', `/package-requests/${id}/cancel`, {}, 'cancel')).statusCode).toBe(
        200,
      );
      await t.close();
      await database.close();

      const dir = database.env.DATA_DIR!;
      const files = fs.readdirSync(dir);
      expect(files).toContain('inventory.sqlite');
      for (const file of files) {
        const bytes = fs.readFileSync(path.join(dir, file));
        for (const secret of [NAME, EMAIL, 'Zebulon', 'zebulon']) {
          expect(bytes.includes(Buffer.from(secret)), `${secret} in ${file}`).toBe(false);
        }
      }
    },
  );
});
