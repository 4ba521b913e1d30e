import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { migrate } from '../../../src/core/migrations.js';
import { openIncident } from '../../../src/integration/alerts/incidents.js';
import {
  integrationMigrations,
  type IntegrationTables,
} from '../../../src/integration/migrations.js';
import { verifyAlert } from '../../support/alert-receiver.js';
import { createTestDatabase, type TestDatabase } from '../../support/databases.js';
import { waitUntil } from '../../support/platform.js';
import { startServiceProcess, type ServiceProcess } from '../../support/processes.js';
import type { ReceivedCall } from '../../support/webhook-receiver.js';

// An alert committed to the outbox outlives the process sending it (built dist/, as in production).

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
let database: TestDatabase<IntegrationTables> | undefined;
let receiver: http.Server | undefined;
const processes: ServiceProcess[] = [];
afterEach(async () => {
  await Promise.all(processes.map((p) => p.stop('SIGKILL')));
  processes.length = 0;
  receiver?.closeAllConnections();
  await new Promise((resolve) => receiver?.close(resolve));
  await database?.drop();
  database = receiver = undefined;
});

it('an alert whose sender was SIGKILLed mid-call is sent by the next process once its claim lapses', async () => {
  // The receiver holds the first call unanswered (the process dies during it), then answers 200.
  const calls: (ReceivedCall & { at: number })[] = [];
  let answering = false;
  receiver = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      calls.push({
        method: request.method,
        url: request.url,
        headers: request.headers,
        body,
        at: Date.now(),
      });
      if (answering) response.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => receiver!.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/alerts`;

  database = await createTestDatabase<IntegrationTables>('integration');
  await migrate(database, integrationMigrations);
  await database.db
    .insertInto('alert_endpoints')
    .values({ id: 'e1', url, secret: SECRET, configured: 0, created_at: Date.now() })
    .execute();
  await openIncident(database.db, {
    type: 'audit.drift_found',
    key: 'inventory',
    summary: 'drift',
  });
  const env = {
    ...database.env,
    SYNC_MODE: 'poll',
    CRM_URL: 'http://127.0.0.1:9',
    INVENTORY_URL: 'http://127.0.0.1:9',
    INTEGRATION_PORT: '0',
    ALERT_TIMEOUT_MS: '2000',
    ALERT_RETRY_BASE_MS: '50',
  };
  const outboxRow = () =>
    database!.db.selectFrom('alert_outbox').selectAll().executeTakeFirstOrThrow();

  const first = await startServiceProcess('integration/main.js', env);
  processes.push(first);
  await waitUntil(() => calls.length === 1, 15_000, 'the first call');
  await first.stop('SIGKILL');
  const claimed = await outboxRow();
  expect(claimed).toMatchObject({ state: 'pending', attempts: 0 });
  expect(claimed.locked_until).toBeGreaterThan(Date.now());

  answering = true;
  processes.push(await startServiceProcess('integration/main.js', env));
  await waitUntil(async () => (await outboxRow()).state === 'sent', 20_000, 'the alert sent');
  expect(calls).toHaveLength(2);
  // Not before the dead process's claim lapsed: a live sender's call is never doubled.
  expect(calls[1]!.at).toBeGreaterThanOrEqual(claimed.locked_until!);
  const [lost, sent] = calls.map((call) => verifyAlert(call, SECRET));
  expect(sent!.webhookId).toBe(lost!.webhookId);
  expect(sent!.type).toBe('audit.drift_found');
  expect(await outboxRow()).toMatchObject({ attempts: 1, last_status: 200 });
});
