import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { IntegrationTables } from '../../src/integration/migrations.js';
import { integrationService } from '../../src/integration/service.js';
import { createTestApp, type TestApp } from '../support/apps.js';
import { freePort } from '../support/processes.js';

/** The launcher; `npm test` builds dist/ first (pretest). */
const MIP = fileURLToPath(new URL('../../bin/mip.js', import.meta.url));

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node bin/mip.js …args` against `url` and collects what it printed. */
function mip(url: string, args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  // The caller's own MIP_URL or API_TOKEN must not leak into what is tested.
  const inherited = { ...process.env };
  delete inherited.MIP_URL;
  delete inherited.API_TOKEN;
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [MIP, ...args],
      { env: { ...inherited, MIP_URL: url, ...env }, timeout: 20_000 },
      (error, stdout, stderr) => {
        const code = error ? ((error as { code?: unknown }).code as number | null) : 0;
        resolve({ code: typeof code === 'number' ? code : null, stdout, stderr });
      },
    );
  });
}

let t: TestApp<IntegrationTables>;
let url: string;

/** Each test of the calling `describe` gets a listening service on a fresh database. */
function useService(apiToken?: string): void {
  beforeEach(async () => {
    // Unreachable neighbours are fine: runtime.start() is never called, so nothing polls or delivers.
    t = await createTestApp(integrationService, {
      apiToken,
      env: {
        SYNC_MODE: 'poll',
        CRM_URL: 'http://127.0.0.1:9',
        INVENTORY_URL: 'http://127.0.0.1:9',
        INSTANCE_ID: 'cli-test',
      },
    });
    url = await t.app.listen({ port: 0, host: '127.0.0.1' });
  });
  afterEach(() => t.close());
}

/** Inserts a delivery the worker gave up on, as the delivery worker would have left it. */
async function seedDeadLetter(name: string, state: 'dead' | 'delivered' = 'dead'): Promise<string> {
  const customerId = randomUUID();
  const now = Date.now();
  await t.database.db
    .insertInto('deliveries')
    .values({
      customer_id: customerId,
      customer_name: name,
      customer_created_at: now - 60_000,
      event_id: `crm:${customerId}`,
      source: 'poll',
      state,
      attempts: 20,
      next_attempt_at: now,
      failing_since: now - 3_600_000,
      last_error: 'Inventory answered 422: customer_id is not a valid id',
      last_status: 422,
      recorded_at: now - 60_000,
      updated_at: now,
    })
    .execute();
  return customerId;
}

async function stateOf(customerId: string): Promise<string | undefined> {
  const row = await t.database.db
    .selectFrom('deliveries')
    .select('state')
    .where('customer_id', '=', customerId)
    .executeTakeFirst();
  return row?.state;
}

describe('mip against a running integration service', () => {
  useService();

  it('shows the status in a readable form and as JSON', async () => {
    await seedDeadLetter('Jane Doe');

    const human = await mip(url, ['status']);
    expect(human).toMatchObject({ code: 0, stderr: '' });
    expect(human.stdout).toMatch(/^mode\s+poll$/m);
    expect(human.stdout).toMatch(/^instance\s+cli-test$/m);
    expect(human.stdout).toMatch(/^cursor\s+0$/m);
    expect(human.stdout).toMatch(/^deliveries\s+.*\bdead 1\b/m);
    expect(human.stdout).toMatch(/^circuit\s+closed$/m);
    expect(human.stdout).toMatch(/^poll leader\s+no\b/m);

    const json = await mip(url, ['status', '--json']);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      mode: 'poll',
      instance_id: 'cli-test',
      cursor: 0,
      deliveries: { dead: 1, pending: 0 },
      circuit: 'closed',
      poll: { leader: false, last_success_at: null, last_error: null },
    });
  });

  it('lists dead letters as a table, and as a JSON array with --json', async () => {
    const customerId = await seedDeadLetter('Jane Doe');
    await seedDeadLetter('Delivered Dan', 'delivered');

    const table = await mip(url, ['dlq', 'list']);
    expect(table).toMatchObject({ code: 0, stderr: '' });
    const [header, ...rows] = table.stdout.trimEnd().split('\n');
    expect(header).toMatch(
      /^CUSTOMER ID\s+NAME\s+ATTEMPTS\s+LAST STATUS\s+LAST ERROR\s+FAILING SINCE$/,
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatch(
      new RegExp(
        `^${customerId}\\s+Jane Doe\\s+20\\s+422\\s+Inventory answered 422: .*\\s+\\d{4}-\\d\\d-\\d\\dT`,
      ),
    );

    const json = await mip(url, ['--json', 'dlq', 'list', '--limit', '5']);
    expect(json.code).toBe(0);
    const list = JSON.parse(json.stdout) as { customer_id: string; state: string }[];
    expect(list).toEqual([expect.objectContaining({ customer_id: customerId, state: 'dead' })]);
  });

  it('says so when there are no dead letters, and refuses a bad --limit', async () => {
    expect(await mip(url, ['dlq', 'list'])).toMatchObject({
      code: 0,
      stdout: 'No dead letters.\n',
    });
    const bad = await mip(url, ['dlq', 'list', '--limit', '0']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^mip: .*--limit.*1 to 1000/);
  });

  it('replays one dead letter, then refuses to replay it again with the 409 detail', async () => {
    const customerId = await seedDeadLetter('Jane Doe');

    const replayed = await mip(url, ['dlq', 'replay', customerId]);
    expect(replayed).toMatchObject({ code: 0, stderr: '' });
    expect(replayed.stdout).toContain(
      `Replayed the dead letter for customer ${customerId} (Jane Doe)`,
    );
    expect(await stateOf(customerId)).toBe('pending');

    const again = await mip(url, ['dlq', 'replay', customerId]);
    expect(again.code).toBe(1);
    expect(again.stdout).toBe('');
    expect(again.stderr).toBe(
      `mip: The delivery for customer ${customerId} is pending, not a dead letter; only dead letters can be replayed.\n`,
    );
  });

  it('replays every dead letter with --all and says how many', async () => {
    const ids = [await seedDeadLetter('Jane Doe'), await seedDeadLetter('John Roe')];

    const all = await mip(url, ['dlq', 'replay', '--all']);
    expect(all).toMatchObject({ code: 0, stderr: '' });
    expect(all.stdout).toMatch(/^Replayed 2 dead letters\b/);
    for (const id of ids) expect(await stateOf(id)).toBe('pending');

    const none = await mip(url, ['dlq', 'replay', '--all', '--json']);
    expect(none.code).toBe(0);
    expect(JSON.parse(none.stdout)).toEqual({ replayed: 0 });
  });

  it('answers 404 for an unknown customer with exit code 1 and the detail', async () => {
    const unknown = randomUUID();
    const result = await mip(url, ['dlq', 'replay', unknown]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`mip: No delivery exists for customer ${unknown}.\n`);
  });

  it('treats a replay with neither or both of an id and --all as a usage error (exit 2)', async () => {
    const customerId = await seedDeadLetter('Jane Doe');

    const neither = await mip(url, ['dlq', 'replay']);
    expect(neither.code).toBe(2);
    expect(neither.stderr).toMatch(/^mip: dlq replay needs a customer id or --all\./);

    const both = await mip(url, ['dlq', 'replay', customerId, '--all']);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/^mip: give either a customer id or --all, not both\./);
    // A usage error never reaches the service.
    expect(await stateOf(customerId)).toBe('dead');
  });
});

describe('mip without a service to talk to', () => {
  it('prints one "cannot reach" line and exits 1 when nothing listens', async () => {
    const stopped = `http://127.0.0.1:${await freePort()}`;
    const result = await mip(stopped, ['status']);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(
      `mip: cannot reach the integration service at ${stopped} (ECONNREFUSED); is it running? Set --url or MIP_URL.\n`,
    );
  });

  it('lets --url override MIP_URL', async () => {
    const result = await mip('http://127.0.0.1:1', ['--url', 'http://127.0.0.1:9', 'status']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^mip: cannot reach the integration service at http:\/\/127\.0\.0\.1:9 \(.+\); is it running\?/,
    );
  });

  it('prints help listing the commands and exits 0', async () => {
    const help = await mip('http://127.0.0.1:9', ['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: mip /);
    expect(help.stdout).toMatch(/^\s+status\b/m);
    expect(help.stdout).toMatch(/^\s+dlq\b/m);
    expect(help.stdout).toMatch(/--url <url>/);

    const dlqHelp = await mip('http://127.0.0.1:9', ['dlq', '--help']);
    expect(dlqHelp.code).toBe(0);
    expect(dlqHelp.stdout).toMatch(/^\s+list\b/m);
    expect(dlqHelp.stdout).toMatch(/^\s+replay\b.*\[customerId\]/m);
  });
});

describe('mip against a service that requires a token', () => {
  const token = 'cli-test-token-0123456789';
  useService(token);

  it('sends --token (or API_TOKEN) as a bearer token, and reports the 401 without one', async () => {
    const refused = await mip(url, ['status']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^mip: Send `Authorization: Bearer <API_TOKEN>`/);

    expect((await mip(url, ['--token', token, 'status'])).code).toBe(0);
    expect((await mip(url, ['status'], { API_TOKEN: token })).code).toBe(0);
  });
});
