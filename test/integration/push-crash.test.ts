import http from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { AmqpConnection, AmqpPublisher, prefixedTopology } from '../../src/core/amqp.js';
import { createLogger } from '../../src/core/logging.js';
import type { IntegrationTables } from '../../src/integration/migrations.js';
import { AMQP_URL, deleteTopology } from '../support/amqp.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { seededRandom } from '../support/fault-proxy.js';
import {
  createCustomers,
  integrationEnv,
  packageRequestsByCustomer,
  startUpstreams,
  waitUntil,
  type Upstreams,
} from '../support/platform.js';
import { freePort, startServiceProcess, type ServiceProcess } from '../support/processes.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let upstreams: Upstreams | undefined;
let database: TestDatabase<IntegrationTables> | undefined;
const processes = new Set<ServiceProcess>();
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all([...processes].map((p) => p.stop('SIGKILL')));
  processes.clear();
  for (const cleanup of cleanups.splice(0)) await cleanup();
  await database?.drop();
  await upstreams?.close();
  upstreams = database = undefined;
});

async function start(script: string, env: Record<string, string>): Promise<ServiceProcess> {
  const service = await startServiceProcess(script, env);
  processes.add(service);
  return service;
}

async function kill(service: ServiceProcess): Promise<void> {
  await service.stop('SIGKILL');
  processes.delete(service);
}

/**
 * Stands between the CRM and the integration service's webhook receiver: forwards every call twice,
 * each after a random delay (so calls arrive duplicated and out of order), and answers the CRM
 * with the first forward's status (502 when the receiver is down, so the CRM retries).
 */
async function startDuplicatingRelay(target: () => string, random: () => number) {
  let forwarded = 0;
  const forward = async (headers: http.IncomingHttpHeaders, body: Buffer) => {
    await sleep(Math.floor(random() * 150));
    forwarded += 1;
    const response = await fetch(target(), {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'webhook-id': String(headers['webhook-id']),
        'webhook-timestamp': String(headers['webhook-timestamp']),
        'webhook-signature': String(headers['webhook-signature']),
      },
      body,
    });
    await response.body?.cancel();
    return response.status;
  };
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks);
      void forward(request.headers, body).catch(() => 0); // the duplicate, on its own schedule
      forward(request.headers, body).then(
        (status) => response.writeHead(status).end(),
        () => response.writeHead(502).end(),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise((resolve) => {
        // The CRM is still retrying through it: cut its connections rather than wait for them.
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`,
    forwarded: () => forwarded,
  };
}

async function deliveredCount(db: TestDatabase<IntegrationTables>): Promise<number> {
  const rows = await db.db
    .selectFrom('deliveries')
    .select('state')
    .where('state', '=', 'delivered')
    .execute();
  return rows.length;
}

describe.each(['webhook', 'hybrid', 'amqp'] as const)('exactly once in %s mode', (mode) => {
  it('1,000 customers, events duplicated and reordered, the integration process killed mid-run → 1,000 package requests, none duplicated', async () => {
    const random = seededRandom(Number(process.env.CHAOS_SEED ?? 4242));
    const prefix = `test-${randomUUID().slice(0, 8)}.`;
    const amqpEnv: Record<string, string> =
      mode === 'amqp' ? { AMQP_URL, AMQP_NAME_PREFIX: prefix } : {};
    if (mode === 'amqp') cleanups.push(() => deleteTopology(prefix));
    upstreams = await startUpstreams(7, {
      crmEnv: {
        ...amqpEnv,
        // A compressed retry schedule: many attempts, close together, so the kills are ridden out.
        WEBHOOK_RETRY_BASE_MS: '50',
        WEBHOOK_RETRY_MAX_DELAY_MS: '1000',
        WEBHOOK_MAX_ATTEMPTS: '100',
      },
    });
    database = await createTestDatabase<IntegrationTables>('integration');
    const port = await freePort();
    const receiver = `http://127.0.0.1:${port}/webhooks/crm`;
    const relay = await startDuplicatingRelay(() => receiver, random);
    const env = {
      ...database.env,
      ...integrationEnv(upstreams, {
        SYNC_MODE: mode,
        INTEGRATION_PORT: String(port),
        WEBHOOK_URL: relay.url,
        POLL_INTERVAL_MS: '1000',
        ...amqpEnv,
      }),
    };
    let instance = await start('integration/main.js', env);
    if (mode !== 'amqp') {
      // A webhook subscription covers events from its creation on (hybrid's poll covers the rest).
      await waitUntil(
        async () =>
          ((await (await fetch(`${upstreams!.crmUrl}/webhook-endpoints`)).json()) as unknown[])
            .length === 1,
        10_000,
        'the webhook registration',
      );
    }

    // In amqp mode, duplicates come from the test republishing the CRM's events at random.
    let duplicator: Promise<void> | undefined;
    let creating = true;
    if (mode === 'amqp') {
      const logger = createLogger({ service: 'test', level: 'silent' });
      const connection = new AmqpConnection({ url: AMQP_URL, logger, connectionName: 'test' });
      const publisher = new AmqpPublisher(connection, { topology: prefixedTopology(prefix) });
      connection.start();
      publisher.start();
      cleanups.unshift(async () => {
        await publisher.close();
        await connection.close();
      });
      await connection.waitUntilConnected();
      duplicator = (async () => {
        let after = 0;
        while (creating) {
          const events = (await (
            await fetch(`${upstreams!.crmUrl}/events?after=${after}&limit=100`)
          ).json()) as {
            id: string;
            position: number;
          }[];
          const shuffled = events.filter(() => random() < 0.5).sort(() => random() - 0.5);
          await Promise.all(
            shuffled.map((event) => publisher.publish({ id: event.id, body: event })),
          );
          after = events.at(-1)?.position ?? after;
          await sleep(100);
        }
      })();
    }

    const created = (async () => {
      const ids: string[] = [];
      for (let batch = 0; batch < 20; batch += 1) {
        ids.push(...(await createCustomers(upstreams!.crmUrl, 50, { prefix: `${mode}${batch}` })));
        await sleep(100);
      }
      return ids;
    })();

    let kills = 0;
    const ids = await (async () => {
      let done = false;
      void created.then(() => (done = true));
      while (!done || kills < 2) {
        await sleep(800 + Math.floor(random() * 1200));
        await kill(instance);
        kills += 1;
        instance = await start('integration/main.js', env);
      }
      return created;
    })();
    creating = false;
    await duplicator;
    expect(ids).toHaveLength(1000);

    await waitUntil(
      async () => (await deliveredCount(database!)) === 1000,
      120_000,
      'all 1,000 deliveries',
    );
    const requests = await packageRequestsByCustomer(upstreams.inventory);
    expect([...requests.values()].reduce((a, b) => a + b, 0)).toBe(1000);
    expect(new Set(requests.keys())).toEqual(new Set(ids));
    if (mode !== 'amqp') expect(relay.forwarded()).toBeGreaterThan(1000); // duplicates were sent
    expect(kills).toBeGreaterThanOrEqual(2);
  }, 240_000);
});

describe('the CRM killed between commit and publish', () => {
  it('webhooks: events committed while the receiver was down are delivered once after the CRM restarts', async () => {
    database = await createTestDatabase<IntegrationTables>('integration');
    upstreams = await startUpstreams();
    const crmDatabase = await createTestDatabase('crm');
    cleanups.push(() => crmDatabase.drop());
    const [crmPort, integrationPort] = [await freePort(), await freePort()];
    const crmEnv = {
      ...crmDatabase.env,
      CRM_PORT: String(crmPort),
      WEBHOOK_TIMEOUT_MS: '1000',
      WEBHOOK_RETRY_BASE_MS: '50',
      WEBHOOK_RETRY_MAX_DELAY_MS: '500',
    };
    let crm = await start('crm/main.js', crmEnv);
    const env = {
      ...database.env,
      ...integrationEnv(upstreams, {
        SYNC_MODE: 'webhook',
        INTEGRATION_PORT: String(integrationPort),
      }),
      CRM_URL: crm.url,
    };
    let integration = await start('integration/main.js', env);
    await waitUntil(
      async () =>
        ((await (await fetch(`${crm.url}/webhook-endpoints`)).json()) as unknown[]).length === 1,
      10_000,
      'registration',
    );
    await kill(integration); // webhooks now fail: the messages stay in the CRM's outbox
    const ids = await createCustomers(crm.url, 20);
    await kill(crm); // before any publish could succeed
    crm = await start('crm/main.js', crmEnv);
    integration = await start('integration/main.js', env);
    await waitUntil(async () => (await deliveredCount(database!)) === 20, 30_000, '20 deliveries');
    const requests = await packageRequestsByCustomer(upstreams.inventory);
    expect(new Set(requests.keys())).toEqual(new Set(ids));
    expect([...requests.values()].every((n) => n === 1)).toBe(true);
  }, 60_000);

  it('RabbitMQ: events committed while the broker was out of reach are published once the CRM restarts', async () => {
    const prefix = `test-${randomUUID().slice(0, 8)}.`;
    cleanups.push(() => deleteTopology(prefix));
    database = await createTestDatabase<IntegrationTables>('integration');
    upstreams = await startUpstreams();
    const crmDatabase = await createTestDatabase('crm');
    cleanups.push(() => crmDatabase.drop());
    const crmPort = await freePort();
    const unreachable = `amqp://guest:guest@127.0.0.1:${await freePort()}`;
    const crmEnv = { ...crmDatabase.env, CRM_PORT: String(crmPort), AMQP_NAME_PREFIX: prefix };
    let crm = await start('crm/main.js', { ...crmEnv, AMQP_URL: unreachable });
    const ids = await createCustomers(crm.url, 20);
    await kill(crm);
    const env = {
      ...database.env,
      ...integrationEnv(upstreams, {
        SYNC_MODE: 'amqp',
        AMQP_URL,
        AMQP_NAME_PREFIX: prefix,
        INTEGRATION_PORT: '0',
      }),
    };
    await start('integration/main.js', env);
    crm = await start('crm/main.js', { ...crmEnv, AMQP_URL });
    await waitUntil(async () => (await deliveredCount(database!)) === 20, 30_000, '20 deliveries');
    const requests = await packageRequestsByCustomer(upstreams.inventory);
    expect(new Set(requests.keys())).toEqual(new Set(ids));
    expect([...requests.values()].every((n) => n === 1)).toBe(true);
  }, 60_000);
});
