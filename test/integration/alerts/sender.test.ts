import { afterEach, beforeEach, expect, it } from 'vitest';
import { Compile } from 'typebox/compile';
import { AlertWebhookSchema } from '../../../src/contracts/alerts.js';
import { createLogger } from '../../../src/core/logging.js';
import { migrate } from '../../../src/core/migrations.js';
import { openIncident } from '../../../src/integration/alerts/incidents.js';
import { AlertSender } from '../../../src/integration/alerts/sender.js';
import {
  integrationMigrations,
  type IntegrationTables,
} from '../../../src/integration/migrations.js';
import { verifyAlert } from '../../support/alert-receiver.js';
import { createTestDatabase, type TestDatabase } from '../../support/databases.js';
import { waitUntil } from '../../support/platform.js';
import { startReceiver, type WebhookReceiver } from '../../support/webhook-receiver.js';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
let database: TestDatabase<IntegrationTables>;
let receiver: WebhookReceiver | undefined;
let sender: AlertSender | undefined;
const outcomes: string[] = [];

beforeEach(async () => {
  database = await createTestDatabase<IntegrationTables>('integration');
  await migrate(database, integrationMigrations);
  outcomes.length = 0;
});
afterEach(async () => {
  await sender?.stop();
  await receiver?.close();
  await database.drop();
  sender = receiver = undefined;
});

async function startSending(respond: Parameters<typeof startReceiver>[0], giveUpAfterMs = 60_000) {
  receiver = await startReceiver(respond);
  await database.db
    .insertInto('alert_endpoints')
    .values({ id: 'e1', url: receiver.url, secret: SECRET, configured: 1, created_at: 0 })
    .execute();
  startSender(giveUpAfterMs);
}

function startSender(giveUpAfterMs = 60_000) {
  sender = new AlertSender({
    db: database.db,
    dialect: database.dialect,
    targets: { allowPrivate: true },
    timeoutMs: 1_000,
    retryBaseMs: 20,
    giveUpAfterMs,
    instanceId: 'test',
    onOutcome: (type, outcome) => outcomes.push(`${type} ${outcome}`),
    logger: createLogger({ service: 'test', level: 'silent' }),
  });
  sender.start();
}

const outboxRow = () =>
  database.db.selectFrom('alert_outbox').selectAll().executeTakeFirstOrThrow();

it('sends a body that matches the alert contract, signed with the endpoint secret', async () => {
  await startSending(() => ({ status: 204 }));
  await openIncident(database.db, { type: 'backlog.high', key: 'inventory', summary: 'big' });
  await waitUntil(async () => (await outboxRow()).state === 'sent', 5_000, 'the alert sent');
  const alert = verifyAlert(receiver!.calls[0]!, SECRET);
  const { webhookId, ...body } = alert;
  expect(Compile(AlertWebhookSchema).Check(body)).toBe(true);
  expect(webhookId).toBe((await outboxRow()).alert_id);
  expect(receiver!.calls[0]!.headers['user-agent']).toBe('mini-integration-platform-integration');
  expect(outcomes).toEqual(['backlog.high sent']);
});

it('gives an alert up, marked failed, once ALERT_GIVE_UP_AFTER_MS has passed since it was raised', async () => {
  await startSending(() => ({ status: 500 }), 1_000);
  await openIncident(database.db, { type: 'backlog.high', key: 'inventory', summary: 'big' });
  await waitUntil(async () => (await outboxRow()).state === 'failed', 10_000, 'the alert given up');
  const row = await outboxRow();
  expect(row.attempts).toBeGreaterThan(1);
  expect(row).toMatchObject({ last_status: 500, last_error: 'HTTP 500', locked_by: null });
  expect(outcomes.at(-1)).toBe('backlog.high failed');
  const calls = receiver!.calls.length;
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(receiver!.calls).toHaveLength(calls);
});

it('cancels an alert whose endpoint was deleted, without calling it', async () => {
  await database.db
    .insertInto('alert_endpoints')
    .values({ id: 'e1', url: 'http://127.0.0.1:9/', secret: SECRET, configured: 0, created_at: 0 })
    .execute();
  await openIncident(database.db, { type: 'backlog.high', key: 'inventory', summary: 'big' });
  await database.db.deleteFrom('alert_endpoints').execute();
  startSender();
  await waitUntil(
    async () => (await outboxRow()).state === 'cancelled',
    5_000,
    'the alert cancelled',
  );
  expect((await outboxRow()).attempts).toBe(0);
});
