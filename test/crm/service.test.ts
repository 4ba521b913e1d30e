import net from 'node:net';
import { afterEach, expect, it } from 'vitest';
import type { CrmTables } from '../../src/crm/migrations.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { waitUntil } from '../support/platform.js';
import { startServiceProcess, type ServiceProcess } from '../support/processes.js';

let database: TestDatabase<CrmTables> | undefined;
let crm: ServiceProcess | undefined;
let silentTarget: net.Server | undefined;

afterEach(async () => {
  await crm?.stop('SIGKILL');
  await database?.drop();
  silentTarget?.close();
  crm = database = silentTarget = undefined;
});

it('on SIGTERM with a webhook target that never answers for the whole default 10 s timeout, exits 0 within SHUTDOWN_TIMEOUT_MS and keeps the message to send again', async () => {
  // Accepts the connection, reads the call, never answers.
  let connections = 0;
  silentTarget = net.createServer(() => {
    connections += 1;
  });
  await new Promise<void>((resolve) => silentTarget!.listen(0, '127.0.0.1', resolve));
  const target = `http://127.0.0.1:${(silentTarget.address() as net.AddressInfo).port}/hook`;
  database = await createTestDatabase<CrmTables>('crm');
  crm = await startServiceProcess('crm/main.js', {
    ...database.env,
    CRM_PORT: '0',
  });
  const post = (path: string, body: unknown) =>
    fetch(`${crm!.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  expect((await post('/webhook-endpoints', { url: target })).status).toBe(201);
  expect(
    (await post('/customers', { name: 'Ada Lovelace', email: 'ada@example.com' })).status,
  ).toBe(201);
  await waitUntil(() => connections > 0, 10_000, 'the webhook call in flight');
  const started = Date.now();
  expect(await crm.stop('SIGTERM')).toBe(0);
  // Default SHUTDOWN_TIMEOUT_MS: the webhook timeout (10 s) plus a 5 s margin.
  expect(Date.now() - started).toBeLessThan(15_000);
  crm = undefined;
  // The call was recorded whole (timed out) or released: the message waits to be sent again.
  const messages = await database.db.selectFrom('webhook_messages').selectAll().execute();
  expect(messages).toHaveLength(1);
  expect(messages[0]).toMatchObject({ state: 'pending', locked_until: null });
}, 60_000);
