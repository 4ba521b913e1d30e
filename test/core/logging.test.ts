import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createTestDatabase,
  postgresUrlFor,
  type ServiceName,
  type TestDatabase,
} from '../support/databases.js';
import { waitUntil } from '../support/platform.js';
import { startServiceProcess, type ServiceProcess } from '../support/processes.js';
import { startReceiver, type WebhookReceiver } from '../support/webhook-receiver.js';

/** Random and distinctive, so that finding one in the logs cannot be a coincidence. */
const secretValue = (label: string) => `${label}${randomBytes(12).toString('hex')}`;

/** The lines of `output` that contain `secret`, in any of the forms a log might give it. */
function linesLeaking(output: string, secret: string): string[] {
  const forms = new Set([secret, encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1)]);
  return output.split('\n').filter((line) => [...forms].some((form) => line.includes(form)));
}

/** The database settings of a service, with `password` added when it is on PostgreSQL. */
function databaseEnv(
  service: ServiceName,
  database: TestDatabase<unknown>,
  password: { value: string; in: 'userinfo' | 'query' },
): Record<string, string> {
  const variable = `${service.toUpperCase()}_DATABASE_URL`;
  const url = database.env[variable];
  if (url === undefined) return database.env;
  // Trust authentication accepts any password, so the service starts with it all the same.
  const withPassword = new URL(url);
  if (password.in === 'userinfo') withPassword.password = password.value;
  else withPassword.searchParams.set('password', password.value);
  return { [variable]: withPassword.toString() };
}

const onPostgres = postgresUrlFor('crm') !== undefined;

/** What a test starts, stopped and dropped after each test of the calling `describe`. */
function useStarted() {
  const started = {
    processes: [] as ServiceProcess[],
    databases: [] as TestDatabase<unknown>[],
    receivers: [] as WebhookReceiver[],
  };
  afterEach(async () => {
    for (const service of started.processes.splice(0)) await service.stop('SIGKILL');
    for (const database of started.databases.splice(0)) await database.drop();
    for (const receiver of started.receivers.splice(0)) await receiver.close();
  });
  return started;
}

describe('secrets never reach the logs, even at LOG_LEVEL=trace', () => {
  const { processes, databases, receivers } = useStarted();

  it('API token, database and broker passwords, webhook secrets: none is printed', async () => {
    const secrets = {
      apiToken: secretValue('token-'),
      wrongToken: secretValue('wrong-token-'),
      crmDatabasePassword: secretValue('crmdbpw'),
      inventoryDatabasePassword: secretValue('invdbpw'),
      integrationDatabasePassword: secretValue('intdbpw'),
      amqpPassword: secretValue('amqppw'),
      webhookUrlToken: secretValue('hooktoken'),
      webhookUrlPassword: secretValue('hookpw'),
    };
    const [crmDb, inventoryDb, integrationDb] = await Promise.all(
      (['crm', 'inventory', 'integration'] as const).map((name) => createTestDatabase(name)),
    );
    databases.push(crmDb!, inventoryDb!, integrationDb!);
    const common = { LOG_LEVEL: 'trace', LOG_FORMAT: 'json', API_TOKEN: secrets.apiToken };
    const auth = { authorization: `Bearer ${secrets.apiToken}` };

    const crm = await startServiceProcess('crm/main.js', {
      ...common,
      ...databaseEnv('crm', crmDb!, { value: secrets.crmDatabasePassword, in: 'userinfo' }),
      CRM_PORT: '0',
      // Only guest:guest logs in to the local broker: this one fails, and its errors are logged.
      AMQP_URL: `amqp://guest:${secrets.amqpPassword}@127.0.0.1:5672`,
      AMQP_NAME_PREFIX: `logging-test-${randomBytes(4).toString('hex')}.`,
      WEBHOOK_RETRY_BASE_MS: '50',
      WEBHOOK_RETRY_MAX_DELAY_MS: '100',
      WEBHOOK_MAX_ATTEMPTS: '3',
    });
    processes.push(crm);
    const inventory = await startServiceProcess('inventory/main.js', {
      ...common,
      ...databaseEnv('inventory', inventoryDb!, {
        value: secrets.inventoryDatabasePassword,
        in: 'query',
      }),
      INVENTORY_PORT: '0',
    });
    processes.push(inventory);
    // In webhook mode the integration service subscribes itself, so it holds a webhook secret too.
    const integration = await startServiceProcess('integration/main.js', {
      ...common,
      ...databaseEnv('integration', integrationDb!, {
        value: secrets.integrationDatabasePassword,
        in: 'userinfo',
      }),
      INTEGRATION_PORT: '0',
      SYNC_MODE: 'webhook',
      CRM_URL: crm.url,
      INVENTORY_URL: inventory.url,
      RETRY_BASE_MS: '50',
    });
    processes.push(integration);

    const call = async (url: string, init: RequestInit = {}) => {
      const response = await fetch(url, init);
      return { status: response.status, body: (await response.json()) as unknown };
    };
    const postJson = (url: string, body: unknown) =>
      call(url, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });

    // Webhook secrets: created, rotated and read back, for an endpoint that keeps failing (so its
    // calls are logged as warnings), whose URL carries a token in its query.
    const receiver = await startReceiver(() => ({ status: 500 }));
    receivers.push(receiver);
    const created = await postJson(`${crm.url}/webhook-endpoints`, {
      url: `${receiver.url}?token=${secrets.webhookUrlToken}`,
    });
    expect(created.status).toBe(201);
    // Credentials in a webhook URL are refused, and not printed either.
    const withCredentials = new URL(receiver.url);
    withCredentials.username = 'user';
    withCredentials.password = secrets.webhookUrlPassword;
    expect(
      (await postJson(`${crm.url}/webhook-endpoints`, { url: withCredentials.href })).status,
    ).toBe(422);
    const endpoint = created.body as { id: string; secret: string };
    const rotated = await postJson(`${crm.url}/webhook-endpoints/${endpoint.id}/rotate-secret`, {});
    expect(rotated.status).toBe(200);
    const read = await call(`${crm.url}/webhook-endpoints/${endpoint.id}/secret`, {
      headers: auth,
    });
    expect(read.body).toMatchObject({ previous_secret: endpoint.secret });
    const webhookSecrets = new Set([endpoint.secret, (read.body as { secret: string }).secret]);

    // The integration service's own subscription, and the customer it is sent.
    await waitUntil(
      async () =>
        ((await call(`${crm.url}/webhook-endpoints`, { headers: auth })).body as unknown[])
          .length === 2,
      15_000,
      'the integration service to subscribe',
    );
    const listed = (await call(`${crm.url}/webhook-endpoints`, { headers: auth })).body as {
      id: string;
    }[];
    for (const { id } of listed) {
      const secret = (await call(`${crm.url}/webhook-endpoints/${id}/secret`, { headers: auth }))
        .body as { secret: string };
      webhookSecrets.add(secret.secret);
    }
    expect(webhookSecrets.size).toBe(3);
    const customer = await postJson(`${crm.url}/customers`, {
      name: 'Jane Doe',
      email: 'jane.doe@example.com',
    });
    expect(customer.status).toBe(201);
    const customerId = (customer.body as { id: string }).id;
    await waitUntil(
      async () =>
        (
          (
            await call(`${inventory.url}/package-requests?customer_id=${customerId}`, {
              headers: auth,
            })
          ).body as unknown[]
        ).length === 1,
      15_000,
      'the welcome package (CRM → webhook → integration → Inventory, all with the token)',
    );
    await waitUntil(() => receiver.calls.length === 3, 10_000, 'three failed webhook calls');

    // The token as HTTP Basic password (how the dashboard sends it), and wrong tokens.
    const basic = (password: string) =>
      `Basic ${Buffer.from(`admin:${password}`).toString('base64')}`;
    expect(
      (
        await fetch(`${integration.url}/api/status`, {
          headers: { authorization: basic(secrets.apiToken) },
        })
      ).status,
    ).toBe(200);
    for (const authorization of [`Bearer ${secrets.wrongToken}`, basic(secrets.wrongToken)]) {
      for (const service of [crm, inventory, integration]) {
        const refused = await fetch(`${service.url}/openapi.json?probe=1`, {
          headers: { authorization },
        });
        expect(refused.status).toBe(401);
      }
    }
    await waitUntil(
      () => crm.output().includes('AMQP connect failed'),
      10_000,
      'the CRM to log its failed broker login',
    );

    // SIGTERM, so every line is flushed before reading the output.
    for (const service of processes.splice(0)) expect(await service.stop('SIGTERM')).toBe(0);
    const outputs = {
      crm: crm.output(),
      inventory: inventory.output(),
      integration: integration.output(),
    };

    // The logs did cover what the secrets went through (else finding nothing would prove nothing).
    expect(outputs.crm).toContain('ACCESS_REFUSED');
    expect(outputs.crm).toContain(`POST /webhook-endpoints/${endpoint.id}/rotate-secret → 200`);
    expect(outputs.crm).toMatch(
      /Webhook endpoint http:\/\/127\.0\.0\.1:\d+\/hooks\?token=\*\*\* created/,
    );
    expect(outputs.crm).toMatch(
      /Webhook to http:\/\/127\.0\.0\.1:\d+\/hooks\?token=\*\*\* failed \(HTTP 500\)/,
    );
    expect(outputs.crm).toMatch(
      /Gave up sending event \S+ to http:\/\/127\.0\.0\.1:\d+\/hooks\?token=\*\*\* /,
    );
    expect(outputs.integration).toContain(`Found new customer: Jane Doe (ID: ${customerId})`);
    for (const output of Object.values(outputs)) expect(output).toMatch(/→ 401/);
    if (onPostgres) {
      expect(outputs.crm).toMatch(/Using postgres database at postgres:\/\/postgres:\*\*\*@/);
      expect(outputs.inventory).toMatch(/Using postgres database at .*password=\*\*\*/);
    }

    const all = Object.values(outputs).join('\n');
    const printed = Object.fromEntries(
      [
        ...Object.entries(secrets),
        ['basicAuthHeader', Buffer.from(`admin:${secrets.apiToken}`).toString('base64')],
        ...[...webhookSecrets].flatMap((secret, i) => [
          [`webhookSecret${i}`, secret],
          // The key without its prefix is as secret.
          [`webhookSecretKey${i}`, secret.replace(/^whsec_/, '')],
        ]),
      ].map(([name, secret]) => [name, linesLeaking(all, secret!)]),
    );
    expect(printed).toEqual(Object.fromEntries(Object.keys(printed).map((name) => [name, []])));
  }, 90_000);
});

describe('the URL the integration service subscribes with', () => {
  const { processes, databases, receivers } = useStarted();

  it('is logged with its query values masked, by it and by the CRM, even at LOG_LEVEL=trace', async () => {
    const token = secretValue('subscribetoken');
    const [crmDb, integrationDb] = await Promise.all([
      createTestDatabase('crm'),
      createTestDatabase('integration'),
    ]);
    databases.push(crmDb!, integrationDb!);
    // Webhooks go to this receiver, not to the integration service: only the logs are looked at.
    const receiver = await startReceiver();
    receivers.push(receiver);
    const common = { LOG_LEVEL: 'trace', LOG_FORMAT: 'json' };
    const crm = await startServiceProcess('crm/main.js', {
      ...common,
      ...crmDb!.env,
      CRM_PORT: '0',
    });
    processes.push(crm);
    const integration = await startServiceProcess('integration/main.js', {
      ...common,
      ...integrationDb!.env,
      INTEGRATION_PORT: '0',
      SYNC_MODE: 'webhook',
      CRM_URL: crm.url,
      WEBHOOK_URL: `${receiver.url}?token=${token}&tenant=7`,
    });
    processes.push(integration);
    await waitUntil(
      () => integration.output().includes('Receiving CRM webhooks at'),
      15_000,
      'the integration service to subscribe',
    );
    for (const service of processes.splice(0)) expect(await service.stop('SIGTERM')).toBe(0);
    expect(integration.output()).toMatch(
      /Receiving CRM webhooks at http:\/\/127\.0\.0\.1:\d+\/hooks\?token=\*\*\*&tenant=\*\*\*/,
    );
    expect(crm.output()).toMatch(/Webhook endpoint \S+\?token=\*\*\*&tenant=\*\*\* created/);
    expect(linesLeaking(`${crm.output()}\n${integration.output()}`, token)).toEqual([]);
  }, 60_000);
});

describe('a refused URL setting', () => {
  const password = secretValue('configpw');
  const outputs: Record<'databaseUrl' | 'amqpUrl', string> = { databaseUrl: '', amqpUrl: '' };
  let database: TestDatabase<unknown> | undefined;

  /** Starts the CRM, which must refuse to start, and answers everything it printed. */
  const failedStart = async (env: Record<string, string>) => {
    const outcome = await startServiceProcess('crm/main.js', { CRM_PORT: '0', ...env }).then(
      async (started) => {
        await started.stop('SIGKILL');
        return new Error('the CRM started');
      },
      (error: unknown) => error as Error,
    );
    return outcome.message;
  };

  beforeAll(async () => {
    database = await createTestDatabase('crm');
    // A SQLAlchemy-style scheme: refused before anything opens.
    outputs.databaseUrl = await failedStart({
      ...database.env,
      CRM_DATABASE_URL: `postgresql+psycopg://postgres:${password}@127.0.0.1:5432/test`,
    });
    // Refused while the CRM sets up, after its database opened: logged as a fatal line.
    outputs.amqpUrl = await failedStart({
      ...database.env,
      AMQP_URL: `http://guest:${password}@127.0.0.1:5672`,
    });
  }, 60_000);
  afterAll(async () => {
    await database?.drop();
  });

  it('stops the service, naming the variable to fix', () => {
    expect(outputs.databaseUrl).toMatch(/exited with 1 before listening/);
    expect(outputs.databaseUrl).toContain('Invalid configuration: CRM_DATABASE_URL=');
    expect(outputs.amqpUrl).toMatch(/exited with 1 before listening/);
    expect(outputs.amqpUrl).toContain('Invalid configuration: AMQP_URL=');
  });

  // The refused value is shown with its password masked (redactUrl), in the message and `value`.
  it('is reported without the password in it', () => {
    expect(linesLeaking(outputs.databaseUrl, password)).toEqual([]);
    expect(linesLeaking(outputs.amqpUrl, password)).toEqual([]);
  });
});
