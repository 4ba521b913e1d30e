import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { crmService } from '../../src/crm/service.js';
import type { CrmTables } from '../../src/crm/migrations.js';
import { createTestApp, expectProblem, type TestApp } from '../support/apps.js';
import { postgresUrlFor } from '../support/databases.js';
import { startReceiver } from '../support/webhook-receiver.js';

let t: TestApp<CrmTables>;
beforeEach(async () => {
  t = await createTestApp(crmService, { env: { WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true' } });
});
afterEach(async () => {
  await t.close();
});

const json = { 'content-type': 'application/json' };

async function create(name: string, email: string): Promise<{ id: string; version: number }> {
  const response = await t.app.inject({
    method: 'POST',
    url: '/customers',
    headers: json,
    payload: { name, email },
  });
  expect(response.statusCode).toBe(201);
  return response.json();
}

const remove = (id: string, headers: Record<string, string> = {}) =>
  t.app.inject({ method: 'DELETE', url: `/customers/${id}`, headers });

const feed = async () =>
  (await t.app.inject({ method: 'GET', url: '/events?limit=1000' })).json() as {
    type: string;
    data: Record<string, unknown>;
  }[];

describe('DELETE /customers/{id}', () => {
  it('answers 204, then 404 to GET, PATCH and a second DELETE; the email is free for a new customer with a new id', async () => {
    const jane = await create('Jane Doe', 'jane@example.com');
    const deleted = await remove(jane.id);
    expect(deleted.statusCode).toBe(204);
    expect(deleted.body).toBe('');
    expect((await t.app.inject({ method: 'GET', url: `/customers/${jane.id}` })).statusCode).toBe(
      404,
    );
    const patched = await t.app.inject({
      method: 'PATCH',
      url: `/customers/${jane.id}`,
      headers: json,
      payload: { name: 'Back' },
    });
    expect(patched.statusCode).toBe(404);
    expect(expectProblem(await remove(jane.id), 404).detail).toMatch(/No customer has id/);
    const again = await create('Jane Doe', 'JANE@example.com');
    expect(again.id).not.toBe(jane.id);
    expect(again.version).toBe(1);
  });

  it('records customer.deleted with the next version and no personal data, and erases the earlier events from the feed', async () => {
    const jane = await create('Jane Doe', 'jane@example.com');
    const john = await create('John Roe', 'john@example.com');
    await t.app.inject({
      method: 'PATCH',
      url: `/customers/${jane.id}`,
      headers: json,
      payload: { email: 'jane.doe@example.com' },
    });
    expect((await remove(jane.id)).statusCode).toBe(204);
    const events = await feed();
    expect(events.map((e) => [e.type, e.data.id])).toEqual([
      ['customer.created', john.id],
      ['customer.deleted', jane.id],
    ]);
    expect(events[1]!.data).toEqual({
      id: jane.id,
      version: 3,
      deleted_at: expect.stringMatching(/Z$/),
    });
    // Nothing in the CRM's tables names her any more; a tombstone keeps the id.
    const tables = await Promise.all(
      (['customers', 'events', 'webhook_messages', 'customer_tombstones'] as const).map((table) =>
        t.database.db.selectFrom(table).selectAll().execute(),
      ),
    );
    const stored = JSON.stringify(tables);
    expect(stored).not.toMatch(/jane/i);
    expect(stored).toContain(jane.id);
  });

  it('deletes under a matching If-Match and refuses a stale or malformed one, deleting nothing', async () => {
    const jane = await create('Jane Doe', 'jane@example.com');
    expect(expectProblem(await remove(jane.id, { 'if-match': '"2"' }), 412)).toMatchObject({
      current_version: 1,
    });
    expect(expectProblem(await remove(jane.id, { 'if-match': '2' }), 400).code).toBe(
      'invalid_if_match',
    );
    expect((await feed()).map((e) => e.type)).toEqual(['customer.created']);
    expect((await remove(jane.id, { 'if-match': '"1"' })).statusCode).toBe(204);
  });

  it('sends customer.deleted to webhook endpoints, and never the earlier events it erased', async () => {
    const receiver = await startReceiver(() => ({ status: 503 }));
    const { url } = await t.app.listen({ port: 0, host: '127.0.0.1' }).then((address) => ({
      url: address,
    }));
    await t.runtime.start?.({ url });
    try {
      const registered = await t.app.inject({
        method: 'POST',
        url: '/webhook-endpoints',
        headers: json,
        payload: { url: receiver.url },
      });
      const endpoint = registered.json() as { id: string };
      const jane = await create('Jane Doe', 'jane@example.com');
      expect((await remove(jane.id)).statusCode).toBe(204);
      // Only the deletion is left to send: the creation's message left with its event.
      const messages = (
        await t.app.inject({ method: 'GET', url: `/webhook-endpoints/${endpoint.id}/messages` })
      ).json() as { event_position: number }[];
      const events = await feed();
      expect(events.map((e) => e.type)).toEqual(['customer.deleted']);
      expect(messages).toHaveLength(1);
    } finally {
      await receiver.close();
    }
  });

  it('answers GET /customers?after=<a deleted customer> exactly as after an unknown id: 400 unknown_cursor', async () => {
    const before = await create('Ann Lee', 'ann@example.com');
    const jane = await create('Jane Doe', 'jane@example.com');
    await create('John Roe', 'john@example.com');
    const listAfter = (id: string) =>
      t.app.inject({ method: 'GET', url: `/customers?limit=10&after=${id}` });
    expect((await listAfter(jane.id)).json()).toHaveLength(1);
    expect((await remove(jane.id)).statusCode).toBe(204);

    const unknown = '00000000-0000-4000-8000-000000000000';
    const [deletedAnswer, unknownAnswer] = [await listAfter(jane.id), await listAfter(unknown)];
    const deleted = expectProblem(deletedAnswer, 400);
    expect(deleted.code).toBe('unknown_cursor');
    // The same answer, but for the id it names: nothing tells that the customer existed.
    const unknownBody = expectProblem(unknownAnswer, 400);
    expect(JSON.parse(JSON.stringify(deleted).replaceAll(jane.id, unknown))).toEqual(unknownBody);
    expect(deletedAnswer.headers['content-type']).toBe(unknownAnswer.headers['content-type']);
    expect((await listAfter(before.id)).json()).toHaveLength(1);
  });

  it.runIf(!postgresUrlFor('crm'))(
    'leaves no trace of the name or email in the SQLite file once checkpointed',
    async () => {
      const secret = 'Zebulon-Quixote-7731';
      const jane = await create(secret, `${secret.toLowerCase()}@example.com`);
      expect((await remove(jane.id)).statusCode).toBe(204);
      const { sql } = await import('kysely');
      await sql`pragma wal_checkpoint(TRUNCATE)`.execute(t.database.db);
      const dir = t.database.env.DATA_DIR!;
      const files = fs.readdirSync(dir).filter((name) => name.startsWith('crm'));
      expect(files).toContain('crm.sqlite');
      for (const file of files) {
        const bytes = fs.readFileSync(path.join(dir, file));
        expect(bytes.includes(Buffer.from(secret)), file).toBe(false);
        expect(bytes.includes(Buffer.from(secret.toLowerCase())), file).toBe(false);
      }
    },
  );

  it.runIf(postgresUrlFor('crm'))(
    'serves the events after an erased one at once, while an older transaction still runs elsewhere',
    async () => {
      const { sql } = await import('kysely');
      await t.database.db.connection().execute(async (older) => {
        // A transaction with an id, older than every event below, open throughout.
        await sql`begin`.execute(older);
        await sql`select pg_current_xact_id()`.execute(older);
        try {
          const gone = await create('Erased Soon', 'erased-soon@example.com');
          const kept = await create('Kept Here', 'kept-here@example.com');
          expect((await remove(gone.id)).statusCode).toBe(204);
          // Positions 1 (erased) then 2 and 3: the gap before 2 is the deletion's, filled by no one.
          const events = await feed();
          expect(events.map((event) => [event.type, event.data.id])).toEqual([
            ['customer.created', kept.id],
            ['customer.deleted', gone.id],
          ]);
        } finally {
          await sql`rollback`.execute(older);
        }
      });
    },
  );
});
