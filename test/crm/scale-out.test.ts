import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { CrmTables } from '../../src/crm/migrations.js';
import { AMQP_URL, deleteTopology, readPublishedIds } from '../support/amqp.js';
import { createTestDatabase, postgresUrlFor } from '../support/databases.js';
import { waitUntil } from '../support/platform.js';
import { startServiceProcess, type ServiceProcess } from '../support/processes.js';
import { startReceiver } from '../support/webhook-receiver.js';

let cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});

const onPostgres = postgresUrlFor('crm') !== undefined;

/**
 * Two CRM processes on one database (PostgreSQL, or one SQLite file), both with the RabbitMQ relay
 * configured and allowed to call webhook receivers on this machine.
 */
async function startTwoCrms(prefix: string): Promise<[ServiceProcess, ServiceProcess]> {
  const database = await createTestDatabase<CrmTables>('crm');
  cleanups.push(() => database.drop());
  const start = async (name: string) => {
    const crm = await startServiceProcess('crm/main.js', {
      ...database.env,
      CRM_PORT: '0',
      AMQP_URL,
      AMQP_NAME_PREFIX: prefix,
      INSTANCE_ID: name,
      WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
    });
    cleanups.push(() => crm.stop('SIGTERM'));
    return crm;
  };
  return [await start('crm-a'), await start('crm-b')];
}

const createCustomer = async (crm: ServiceProcess, n: number) => {
  const response = await fetch(`${crm.url}/customers`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: `Scale ${n}`, email: `scale-${n}-${randomUUID()}@example.com` }),
  });
  expect(response.status).toBe(201);
};

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe(`several CRM processes on one ${onPostgres ? 'PostgreSQL' : 'SQLite'} database`, () => {
  it('publish every event to RabbitMQ once between them: one relays at a time, for longer than its lease', async () => {
    const prefix = `test-${randomUUID().slice(0, 8)}.`;
    cleanups.push(() => deleteTopology(prefix));
    const { received, close } = await readPublishedIds(prefix);
    cleanups.push(close);
    const [a, b] = await startTwoCrms(prefix);
    // Over 12 s, past the relay's 10 s lease: its holder must renew it in time, or the other
    // process would take it over and publish again.
    for (let n = 0; n < 40; n += 1) {
      await createCustomer(n % 2 === 0 ? a : b, n);
      await pause(300);
    }
    await waitUntil(() => received.length >= 40, 15_000, '40 published events');
    // Time for a second relay, were there one, to publish them again.
    await pause(1_500);
    expect(received).toHaveLength(40);
    expect(new Set(received).size).toBe(40);
  }, 60_000);

  it('send every webhook once between them: each message is claimed by one at a time', async () => {
    const [a, b] = await startTwoCrms(`test-${randomUUID().slice(0, 8)}.`);
    const receiver = await startReceiver();
    cleanups.push(() => receiver.close());
    const registered = await fetch(`${a.url}/webhook-endpoints`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url: receiver.url }),
    });
    expect(registered.status).toBe(201);
    const { id: endpointId } = (await registered.json()) as { id: string };
    for (let n = 0; n < 40; n += 1) await createCustomer(n % 2 === 0 ? a : b, n);
    // Each attempt is recorded on its message: had two senders held one message, it would show
    // two attempts, whichever finished first.
    const succeeded = async () =>
      (await (
        await fetch(`${b.url}/webhook-endpoints/${endpointId}/messages?state=succeeded&limit=100`)
      ).json()) as { attempts: number }[];
    await waitUntil(async () => (await succeeded()).length === 40, 15_000, '40 sent webhooks');
    expect((await succeeded()).map((message) => message.attempts)).toEqual(Array(40).fill(1));
    const ids = receiver.calls.map((call) => call.headers['webhook-id']);
    expect(ids).toHaveLength(40);
    expect(new Set(ids).size).toBe(40);
  }, 60_000);

  it(`wake a long-poll on one soon after a create on the other (${onPostgres ? 'LISTEN/NOTIFY' : 'a re-read of the file every 250 ms'})`, async () => {
    const prefix = `test-${randomUUID().slice(0, 8)}.`;
    cleanups.push(() => deleteTopology(prefix));
    const [a, b] = await startTwoCrms(prefix);
    const poll = fetch(`${a.url}/events?after=0&wait=20000`).then(async (response) => ({
      answeredAt: Date.now(),
      events: (await response.json()) as unknown[],
    }));
    // The long-poll is waiting on A before B commits.
    await pause(500);
    const createdAt = Date.now();
    await createCustomer(b, 1);
    const { answeredAt, events } = await poll;
    expect(events).toHaveLength(1);
    // On PostgreSQL a waiting long-poll re-reads only every 5 s: only NOTIFY answers sooner.
    expect(answeredAt - createdAt).toBeLessThan(2_500);
  }, 60_000);
});
