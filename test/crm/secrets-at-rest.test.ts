import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { Webhook } from 'standardwebhooks';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/config.js';
import { readCrmConfig } from '../../src/crm/config.js';
import type { CrmTables } from '../../src/crm/migrations.js';
import {
  parseSecretsKey,
  SecretsKeyring,
  StoredSecretError,
} from '../../src/crm/secrets-at-rest.js';
import { crmService } from '../../src/crm/service.js';
import { createTestApp, expectProblem, type TestApp } from '../support/apps.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { waitUntil } from '../support/platform.js';
import { startServiceProcess } from '../support/processes.js';
import { startReceiver, type WebhookReceiver } from '../support/webhook-receiver.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const newKey = () => randomBytes(32).toString('base64');
const idOf = (key: string) => parseSecretsKey(key)!.id;

async function freshDatabase(): Promise<TestDatabase<CrmTables>> {
  const database = await createTestDatabase<CrmTables>('crm');
  closers.push(() => database.drop());
  return database;
}

/** The CRM on `database` with `env`, its webhook sender running; closed after the test. */
async function startCrm(
  database: TestDatabase<CrmTables>,
  env: Record<string, string> = {},
): Promise<TestApp<CrmTables>> {
  const crm = await createTestApp(crmService, {
    database,
    env: { WEBHOOK_RETRY_BASE_MS: '20', WEBHOOK_RETRY_MAX_DELAY_MS: '50', ...env },
  });
  closers.push(crm.close);
  await crm.runtime.start?.({ url: 'http://127.0.0.1:9' });
  return crm;
}

const post = (crm: TestApp<CrmTables>, path: string, body: unknown = {}) =>
  crm.app.inject({
    method: 'POST',
    url: path,
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify(body),
  });

interface Secrets {
  secret: string;
  previous_secret: string | null;
}

/** A new endpoint for `url`, its secret rotated so that both secret columns are set. */
async function endpointWithRotatedSecret(crm: TestApp<CrmTables>, url: string) {
  const created = await post(crm, '/webhook-endpoints', { url });
  expect(created.statusCode).toBe(201);
  const { id, secret: first } = created.json() as { id: string; secret: string };
  const rotated = (await post(crm, `/webhook-endpoints/${id}/rotate-secret`)).json() as Secrets;
  expect(rotated.previous_secret).toBe(first);
  return { id, secrets: [rotated.secret, first] };
}

const secretsOf = async (crm: TestApp<CrmTables>, id: string) =>
  (
    await crm.app.inject({ method: 'GET', url: `/webhook-endpoints/${id}/secret` })
  ).json() as Secrets;

/** What the database holds in the two secret columns, row by row. */
const stored = (database: TestDatabase<CrmTables>) =>
  database.db
    .selectFrom('webhook_endpoints')
    .select(['id', 'secret', 'previous_secret'])
    .orderBy('seq')
    .execute();

/** The SQLite file and its write-ahead log, as text (undefined on PostgreSQL). */
function sqliteBytes(database: TestDatabase<CrmTables>): string | undefined {
  if (database.dialect !== 'sqlite') return undefined;
  const files = [database.location, `${database.location}-wal`].filter((file) =>
    fs.existsSync(file),
  );
  return files.map((file) => fs.readFileSync(file).toString('latin1')).join('\n');
}

/** Every form of the secrets a dump of the database could show: whole, and without `whsec_`. */
const secretForms = (secrets: string[]) =>
  secrets.flatMap((secret) => [secret, secret.replace(/^whsec_/, '')]);

/** Creates a customer and answers the webhook `receiver` got for it. */
async function deliverOne(crm: TestApp<CrmTables>, receiver: WebhookReceiver) {
  const before = receiver.calls.length;
  const email = `jane.${randomBytes(4).toString('hex')}@example.com`;
  expect((await post(crm, '/customers', { name: 'Jane Doe', email })).statusCode).toBe(201);
  await waitUntil(() => receiver.calls.length > before, 10_000, 'the webhook');
  return receiver.calls[before]!;
}

/** True when the call's signature verifies with `secret` (the Standard Webhooks library). */
function verifies(call: WebhookReceiver['calls'][number], secret: string): boolean {
  try {
    new Webhook(secret).verify(call.body, call.headers as Record<string, string>);
    return true;
  } catch {
    return false;
  }
}

async function receiver(): Promise<WebhookReceiver> {
  const started = await startReceiver();
  closers.push(started.close);
  return started;
}

describe('webhook secrets with SECRETS_KEY', () => {
  it('are not in the database in clear (file and write-ahead log), while the API returns them and deliveries verify with them', async () => {
    const database = await freshDatabase();
    const key = newKey();
    const crm = await startCrm(database, { SECRETS_KEY: key });
    const hooks = await receiver();
    const { id, secrets } = await endpointWithRotatedSecret(crm, hooks.url);

    expect(await secretsOf(crm, id)).toMatchObject({
      secret: secrets[0],
      previous_secret: secrets[1],
    });
    const call = await deliverOne(crm, hooks);
    expect(String(call.headers['webhook-signature']).split(' ')).toHaveLength(2);
    for (const secret of secrets) expect(verifies(call, secret)).toBe(true);

    const [row] = await stored(database);
    for (const value of [row!.secret, row!.previous_secret!]) {
      expect(value).toMatch(new RegExp(`^v1:${idOf(key)}:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]+$`));
      for (const form of secretForms(secrets)) expect(value).not.toContain(form);
    }
    const bytes = sqliteBytes(database);
    if (bytes !== undefined) {
      // The right files were read: the sealed values are in them.
      expect(bytes).toContain(`v1:${idOf(key)}:`);
      for (const form of secretForms(secrets)) expect(bytes).not.toContain(form);
    }
  });

  it('still sign after a restart with a new key and the old one in SECRETS_PREVIOUS_KEYS, which rewrites them under the new key', async () => {
    const database = await freshDatabase();
    const [oldKey, newerKey] = [newKey(), newKey()];
    const first = await startCrm(database, { SECRETS_KEY: oldKey });
    const hooks = await receiver();
    const { id, secrets } = await endpointWithRotatedSecret(first, hooks.url);
    await first.close();
    const [before] = await stored(database);
    expect(before!.secret.startsWith(`v1:${idOf(oldKey)}:`)).toBe(true);

    const crm = await startCrm(database, { SECRETS_KEY: newerKey, SECRETS_PREVIOUS_KEYS: oldKey });
    const [after] = await stored(database);
    for (const value of [after!.secret, after!.previous_secret!]) {
      expect(value.startsWith(`v1:${idOf(newerKey)}:`)).toBe(true);
    }
    expect(await secretsOf(crm, id)).toMatchObject({
      secret: secrets[0],
      previous_secret: secrets[1],
    });
    const call = await deliverOne(crm, hooks);
    for (const secret of secrets) expect(verifies(call, secret)).toBe(true);
    await crm.close();

    // Nothing is left under the old key: the CRM now starts without it.
    const without = await startCrm(database, { SECRETS_KEY: newerKey });
    expect((await secretsOf(without, id)).secret).toBe(secrets[0]);
  });

  it('encrypt at the next start the secrets written in clear before it was set, leaving no copy in the SQLite file', async () => {
    const database = await freshDatabase();
    const clear = await startCrm(database);
    const [hooks, otherHooks] = [await receiver(), await receiver()];
    const { id, secrets } = await endpointWithRotatedSecret(clear, hooks.url);
    const other = (await post(clear, '/webhook-endpoints', { url: otherHooks.url })).json()
      .secret as string;
    // Enough rows to fill pages, whose cells move as their values grow.
    const more: string[] = [];
    for (let i = 0; i < 40; i++) {
      const url = `${otherHooks.url}?n=${i}`;
      const { secrets: both } = await endpointWithRotatedSecret(clear, url);
      more.push(...both);
    }
    await clear.close();
    expect((await stored(database)).map((row) => row.secret).slice(0, 2)).toEqual([
      secrets[0],
      other,
    ]);

    const key = newKey();
    const crm = await startCrm(database, { SECRETS_KEY: key });
    const rows = await stored(database);
    expect(rows).toHaveLength(42);
    for (const row of rows) {
      expect(row.secret.startsWith(`v1:${idOf(key)}:`)).toBe(true);
      if (row.id !== rows[1]!.id)
        expect(row.previous_secret!.startsWith(`v1:${idOf(key)}:`)).toBe(true);
    }
    expect(await secretsOf(crm, id)).toMatchObject({
      secret: secrets[0],
      previous_secret: secrets[1],
    });
    const call = await deliverOne(crm, hooks);
    for (const secret of secrets) expect(verifies(call, secret)).toBe(true);
    await waitUntil(() => otherHooks.calls.length === 41, 10_000, 'the other webhooks');
    const otherCall = otherHooks.calls.find((received) => received.url === '/hooks');
    expect(verifies(otherCall!, other)).toBe(true);
    const bytes = sqliteBytes(database);
    if (bytes !== undefined) {
      expect(bytes).toContain(`v1:${idOf(key)}:`);
      for (const form of secretForms([...secrets, other, ...more])) {
        expect(bytes).not.toContain(form);
      }
    }
  });

  it('are rewritten once when two CRM processes start at once, each then reading every secret', async () => {
    const database = await freshDatabase();
    const clear = await startCrm(database);
    const created: { id: string; secret: string }[] = [];
    for (let i = 0; i < 20; i++) {
      const url = `https://hooks.example.com/${i}`;
      created.push((await post(clear, '/webhook-endpoints', { url })).json());
    }
    await clear.close();
    const key = newKey();
    const crms = await Promise.all(
      [1, 2].map(() =>
        startServiceProcess('crm/main.js', { ...database.env, CRM_PORT: '0', SECRETS_KEY: key }),
      ),
    );
    for (const crm of crms) closers.push(async () => void (await crm.stop('SIGKILL')));
    for (const row of await stored(database)) {
      expect(row.secret.startsWith(`v1:${idOf(key)}:`)).toBe(true);
    }
    for (const crm of crms) {
      for (const { id, secret } of created) {
        const answer = await fetch(`${crm.url}/webhook-endpoints/${id}/secret`);
        expect(((await answer.json()) as Secrets).secret).toBe(secret);
      }
    }
    // Between them they rewrote each endpoint once: the one that went second found nothing to do.
    const rewritten = crms.map((crm) =>
      Number(/(\d+) endpoint\(s\) rewritten under it/.exec(crm.output())?.[1] ?? 0),
    );
    expect(rewritten.sort()).toEqual([0, 20]);
  }, 30_000);

  it('are bound to their row: a value copied into another endpoint does not open', async () => {
    const database = await freshDatabase();
    const crm = await startCrm(database, { SECRETS_KEY: newKey() });
    const a = (await post(crm, '/webhook-endpoints', { url: 'https://a.example.com/x' })).json();
    const b = (await post(crm, '/webhook-endpoints', { url: 'https://b.example.com/x' })).json();
    const [rowA] = await stored(database);
    await database.db
      .updateTable('webhook_endpoints')
      .set({ secret: rowA!.secret })
      .where('id', '=', b.id)
      .execute();
    expectProblem(
      await crm.app.inject({ method: 'GET', url: `/webhook-endpoints/${b.id}/secret` }),
      500,
    );
    expect((await secretsOf(crm, a.id)).secret).toBe(a.secret);
  });
});

describe('a CRM that lacks the key of a stored secret', () => {
  it('refuses to start, naming the key id and the two settings, and changes nothing', async () => {
    const database = await freshDatabase();
    const oldKey = newKey();
    const first = await startCrm(database, { SECRETS_KEY: oldKey });
    await post(first, '/webhook-endpoints', { url: 'https://hooks.example.com/x' });
    await first.close();
    const before = await stored(database);

    for (const env of [{ SECRETS_KEY: newKey() }, {}]) {
      const outcome = await createTestApp(crmService, { database, env }).then(
        async (started) => {
          await started.close();
          return new Error('the CRM started');
        },
        (error: unknown) => error as Error,
      );
      expect(outcome).toBeInstanceOf(StoredSecretError);
      expect(outcome.message).toContain(`encrypted with key ${idOf(oldKey)}`);
      expect(outcome.message).toContain(
        'set SECRETS_KEY to that key, or add it to SECRETS_PREVIOUS_KEYS',
      );
    }
    // As a process: it exits before listening, with that message.
    const exited = await startServiceProcess('crm/main.js', {
      ...database.env,
      CRM_PORT: '0',
      SECRETS_KEY: newKey(),
    }).then(
      async (started) => {
        await started.stop('SIGKILL');
        return 'the CRM started';
      },
      (error: unknown) => (error as Error).message,
    );
    expect(exited).toMatch(/exited with 1 before listening/);
    expect(exited).toContain(`could not start: A webhook secret in the database`);
    expect(exited).toContain(`encrypted with key ${idOf(oldKey)}`);
    expect(await stored(database)).toEqual(before);
  }, 30_000);
});

describe('SECRETS_KEY and SECRETS_PREVIOUS_KEYS', () => {
  const configError = (env: Record<string, string>) => {
    try {
      readCrmConfig(env);
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return (error as ConfigError).message;
    }
    throw new Error(`${JSON.stringify(env)} was accepted`);
  };

  it.each([
    ['too short', 'c2VjcmV0'],
    ['31 bytes of base64', randomBytes(31).toString('base64')],
    ['33 bytes of base64', randomBytes(33).toString('base64')],
    ['base64 without its padding', randomBytes(32).toString('base64').slice(0, 43)],
    ['base64url', Buffer.alloc(32, 0xfb).toString('base64url') + '='],
    ['63 hex digits', randomBytes(32).toString('hex').slice(0, 63)],
    ['not hex', 'g'.repeat(64)],
    ['a passphrase', 'correct horse battery staple correct horse b'],
  ])('refuse a key that is %s, saying how to make one and not showing it', (_kind, key) => {
    const message = configError({ SECRETS_KEY: key });
    expect(message).toContain('SECRETS_KEY');
    expect(message).toContain('openssl rand -base64 32');
    expect(message).not.toContain(key);
    const previous = configError({
      SECRETS_KEY: newKey(),
      SECRETS_PREVIOUS_KEYS: `${newKey()},${key}`,
    });
    expect(previous).toContain('SECRETS_PREVIOUS_KEYS');
    expect(previous).toContain('key 2 of 2');
    expect(previous).not.toContain(key);
  });

  it('take base64 or hex, the same key having the same id either way; previous keys need SECRETS_KEY', () => {
    const bytes = randomBytes(32);
    const fromBase64 = readCrmConfig({ SECRETS_KEY: bytes.toString('base64') }).secretsKeys;
    const fromHex = readCrmConfig({ SECRETS_KEY: bytes.toString('hex').toUpperCase() }).secretsKeys;
    expect(fromBase64.current!.id).toMatch(/^[0-9a-f]{8}$/);
    expect(fromHex.current!.id).toBe(fromBase64.current!.id);
    expect(fromHex.open(fromBase64.seal('whsec_x', 'row'), 'row')).toBe('whsec_x');
    expect(readCrmConfig({}).secretsKeys.current).toBeUndefined();
    expect(configError({ SECRETS_PREVIOUS_KEYS: newKey() })).toContain('set SECRETS_KEY too');
  });

  it('seal each value anew (random IV) and refuse altered ones', () => {
    const keyring = new SecretsKeyring(parseSecretsKey(newKey()));
    const [one, two] = [keyring.seal('whsec_x', 'row'), keyring.seal('whsec_x', 'row')];
    expect(one).not.toBe(two);
    const flipped = one.slice(0, -2) + (one.at(-2) === 'A' ? 'B' : 'A') + one.at(-1);
    expect(() => keyring.open(flipped, 'row')).toThrow(/does not decrypt with key/);
    expect(() => keyring.open(one, 'another row')).toThrow(/copied from another endpoint's row/);
    expect(() => keyring.open('v1:nonsense', 'row')).toThrow(/not a value the CRM writes/);
  });
});

describe('a CRM without SECRETS_KEY', () => {
  it('warns at start-up that secrets are stored in clear when it listens beyond loopback, only then', async () => {
    const database = await freshDatabase();
    const outputOf = async (env: Record<string, string>) => {
      const started = await startServiceProcess('crm/main.js', {
        ...database.env,
        CRM_PORT: '0',
        ...env,
      });
      await started.stop('SIGTERM');
      return started.output();
    };
    const token = { API_TOKEN: randomBytes(16).toString('hex') };
    const WARNING = /Webhook signing secrets are stored in clear in the database; set SECRETS_KEY/;
    expect(await outputOf({ HOST: '0.0.0.0', ...token })).toMatch(WARNING);
    expect(await outputOf({ HOST: '127.0.0.1' })).not.toMatch(WARNING);
    const key = newKey();
    const encrypted = await outputOf({ HOST: '0.0.0.0', ...token, SECRETS_KEY: key });
    expect(encrypted).not.toMatch(WARNING);
    expect(encrypted).toContain(`Webhook signing secrets are encrypted with key ${idOf(key)}`);
  }, 30_000);
});
