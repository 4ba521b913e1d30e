import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { CrmTables } from '../../src/crm/migrations.js';
import { AMQP_URL, deleteTopology, readPublishedIds } from '../support/amqp.js';
import { createTestDatabase, postgresUrlFor } from '../support/databases.js';
import { waitUntil } from '../support/platform.js';
import { startServiceProcess, type ServiceProcess } from '../support/processes.js';

let cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});

/** Two CRM processes on one PostgreSQL database, both with the RabbitMQ relay configured. */
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

describe.runIf(postgresUrlFor('crm'))('several CRM processes on one PostgreSQL', () => {
  it('publish every event to RabbitMQ once between them: one relays at a time', async () => {
    const prefix = `test-${randomUUID().slice(0, 8)}.`;
    cleanups.push(() => deleteTopology(prefix));
    const { received, close } = await readPublishedIds(prefix);
    cleanups.push(close);
    const [a, b] = await startTwoCrms(prefix);
    for (let n = 0; n < 40; n += 1) await createCustomer(n % 2 === 0 ? a : b, n);
    await waitUntil(() => received.length >= 40, 15_000, '40 published events');
    // Time for a second relay, were there one, to publish them again.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(received).toHaveLength(40);
    expect(new Set(received).size).toBe(40);
  }, 60_000);

  it('wake a long-poll on one at once on a create on the other (LISTEN/NOTIFY), not at its next re-read', async () => {
    const prefix = `test-${randomUUID().slice(0, 8)}.`;
    cleanups.push(() => deleteTopology(prefix));
    const [a, b] = await startTwoCrms(prefix);
    const poll = fetch(`${a.url}/events?after=0&wait=20000`).then(async (response) => ({
      answeredAt: Date.now(),
      events: (await response.json()) as unknown[],
    }));
    // The long-poll is waiting on A before B commits.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const createdAt = Date.now();
    await createCustomer(b, 1);
    const { answeredAt, events } = await poll;
    expect(events).toHaveLength(1);
    // A waiting long-poll re-reads every 5 s while notifications are on: only NOTIFY answers sooner.
    expect(answeredAt - createdAt).toBeLessThan(2_500);
  }, 60_000);
});
