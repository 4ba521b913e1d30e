import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CrmTables } from '../../src/crm/migrations.js';
import { crmService } from '../../src/crm/service.js';
import { runCli } from '../../src/integration/cli.js';
import type { IntegrationTables } from '../../src/integration/migrations.js';
import { integrationService } from '../../src/integration/service.js';
import { deliveryStateOf, seedDeadLetter as seedDeadLetterIn } from '../support/dead-letters.js';
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
  // The caller's own MIP_URL, MIP_CRM_URL or API_TOKEN must not leak into what is tested.
  const inherited = { ...process.env };
  delete inherited.MIP_URL;
  delete inherited.MIP_CRM_URL;
  delete inherited.CRM_PORT;
  delete inherited.API_TOKEN;
  delete inherited.API_READ_TOKEN;
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
function useService(apiToken?: string, apiReadToken?: string): void {
  beforeEach(async () => {
    // Unreachable neighbours are fine: runtime.start() is never called, so nothing polls or delivers.
    t = await createTestApp(integrationService, {
      apiToken,
      ...(apiReadToken ? { apiReadToken } : {}),
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

const seedDeadLetter = (name: string, state?: 'dead' | 'delivered') =>
  seedDeadLetterIn(t.database, name, state);
const stateOf = (customerId: string) => deliveryStateOf(t.database, customerId);

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
      /^CUSTOMER ID\s+NAME\s+OPERATION\s+ATTEMPTS\s+LAST STATUS\s+LAST ERROR\s+FAILING SINCE$/,
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatch(
      new RegExp(
        `^${customerId}\\s+Jane Doe\\s+create v1\\s+20\\s+422\\s+Inventory answered 422: .*\\s+\\d{4}-\\d\\d-\\d\\dT`,
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

describe('mip with API_READ_TOKEN', () => {
  const readToken = 'cli-read-token-0123456789';
  useService('cli-test-token-0123456789', readToken);

  it('looks with it, and is told that replaying needs API_TOKEN', async () => {
    const customerId = await seedDeadLetter('Jane Doe');
    expect((await mip(url, ['status'], { API_READ_TOKEN: readToken })).code).toBe(0);
    const listed = await mip(url, ['dlq', 'list'], { API_READ_TOKEN: readToken });
    expect(listed.stdout).toContain(customerId);
    const refused = await mip(url, ['dlq', 'replay', '--all'], { API_READ_TOKEN: readToken });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/API_READ_TOKEN, which may only read.*API_TOKEN/);
    expect(await stateOf(customerId)).toBe('dead');
  });
});

let crm: TestApp<CrmTables>;
let crmUrl: string;

/** Each test of the calling `describe` gets a listening CRM on a fresh database. */
function useCrm(apiToken?: string): void {
  beforeEach(async () => {
    crm = await createTestApp(crmService, { apiToken });
    crmUrl = await crm.app.listen({ port: 0, host: '127.0.0.1' });
  });
  afterEach(() => crm.close());
}

/** Runs mip with the CRM found through MIP_CRM_URL (and no integration service). */
const mipCrm = (args: string[], env: Record<string, string> = {}) =>
  mip('http://127.0.0.1:9', args, { MIP_CRM_URL: crmUrl, ...env });

async function crmCustomers(): Promise<{ name: string; email: string }[]> {
  return crm.database.db.selectFrom('customers').select(['name', 'email']).execute();
}

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const SEED_SUMMARY = /^Created (\d+) customers? in \d+\.\d s \(\d+ customers\/s\)$/;

describe('mip customers create', () => {
  useCrm();

  it('creates a customer and prints it; the same email again fails with the 409 detail', async () => {
    const created = await mipCrm([
      'customers',
      'create',
      '--name',
      'Jane Doe',
      '--email',
      'jane.doe@example.com',
    ]);
    expect(created).toMatchObject({ code: 0, stderr: '' });
    const match = new RegExp(
      `^Created customer (${UUID}): Jane Doe <jane.doe@example.com>\n$`,
    ).exec(created.stdout);
    expect(match).not.toBeNull();
    const id = match![1]!;
    const fetched = await fetch(`${crmUrl}/customers/${id}`);
    expect(fetched.status).toBe(200);
    expect(await fetched.json()).toMatchObject({
      id,
      name: 'Jane Doe',
      email: 'jane.doe@example.com',
    });

    const taken = await mipCrm([
      'customers',
      'create',
      '--name',
      'Jane Again',
      '--email',
      'JANE.DOE@example.com',
    ]);
    expect(taken.code).toBe(1);
    expect(taken.stdout).toBe('');
    expect(taken.stderr).toMatch(
      new RegExp(
        `^mip: A customer with the email JANE\\.DOE@example\\.com already exists \\(id ${id}\\)[^\n]*\n$`,
      ),
    );
    expect(await crmCustomers()).toHaveLength(1);
  });

  it('prints the raw answer with --json, takes --crm-url over MIP_CRM_URL, and reports a 400', async () => {
    const json = await mip(
      'http://127.0.0.1:9',
      [
        '--crm-url',
        crmUrl,
        '--json',
        'customers',
        'create',
        '--name',
        'John Roe',
        '--email',
        'john@example.com',
      ],
      { MIP_CRM_URL: 'http://127.0.0.1:9' },
    );
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual({
      id: expect.stringMatching(new RegExp(`^${UUID}$`)),
      name: 'John Roe',
      email: 'john@example.com',
      version: 1,
      created_at: expect.any(String),
      updated_at: expect.any(String),
    });

    const invalid = await mipCrm(['customers', 'create', '--name', 'No Mail', '--email', 'nope']);
    expect(invalid).toMatchObject({
      code: 1,
      stdout: '',
      stderr: 'mip: Invalid request: body email must be a valid email.\n',
    });

    const missing = await mipCrm(['customers', 'create', '--name', 'No Mail']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^mip: required option '--email <email>' not specified/);
    expect(await crmCustomers()).toHaveLength(1);
  });
});

describe('mip seed', () => {
  useCrm();

  it('creates N customers with C in flight and ends with the rate line', async () => {
    const result = await mipCrm(['seed', '--customers', '50', '--concurrency', '8']);
    expect(result.code).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines.at(-1)).toMatch(SEED_SUMMARY);
    expect(SEED_SUMMARY.exec(lines.at(-1)!)![1]).toBe('50');
    // Not a terminal: at most a plain progress line a second, never a redrawn bar.
    expect(result.stderr).not.toContain('\r');

    const customers = await crmCustomers();
    expect(customers).toHaveLength(50);
    expect(new Set(customers.map((c) => c.name))).toEqual(
      new Set(Array.from({ length: 50 }, (_, i) => `Seed Customer ${i + 1}`)),
    );
    expect(new Set(customers.map((c) => c.email.toLowerCase())).size).toBe(50);
    for (const { email } of customers) expect(email).toMatch(/^seed-[0-9a-f]+-\d+@example\.com$/);

    // A second run picks another random prefix, so it does not collide with the first.
    expect((await mipCrm(['seed', '--customers', '3'])).code).toBe(0);
    expect(await crmCustomers()).toHaveLength(53);
  });

  it('prints a JSON summary with --json, and counts and reports failed creates (exit 1)', async () => {
    const json = await mipCrm(['--json', 'seed', '--customers', '7', '--prefix', 'demo']);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual({
      created: 7,
      failed: 0,
      seconds: expect.any(Number),
      per_second: expect.any(Number),
    });
    expect((await crmCustomers()).map((c) => c.email)).toContain('seed-demo-7@example.com');

    // The same prefix again: every email is taken.
    const again = await mipCrm(['seed', '--customers', '7', '--prefix', 'demo']);
    expect(again.code).toBe(1);
    expect(again.stdout).toMatch(/^Created 0 customers in \d+\.\d s \(0 customers\/s\)\n$/);
    const errorLines = again.stderr.trimEnd().split('\n');
    expect(errorLines[0]).toBe('mip: 7 of 7 customers could not be created; the first errors:');
    expect(errorLines.slice(1)).toHaveLength(5);
    for (const line of errorLines.slice(1)) {
      expect(line).toMatch(
        /^ {2}customer \d: A customer with the email seed-demo-\d@example\.com already exists/,
      );
    }

    const jsonAgain = await mipCrm(['seed', '--customers', '2', '--prefix', 'demo', '--json']);
    expect(jsonAgain.code).toBe(1);
    expect(JSON.parse(jsonAgain.stdout)).toMatchObject({ created: 0, failed: 2 });
    expect(await crmCustomers()).toHaveLength(7);
  });

  it('refuses a bad --customers, --concurrency or --prefix as a usage error (exit 2)', async () => {
    for (const [args, pattern] of [
      [['--customers', '0'], /^mip: .*--customers.*whole number from 1 to 1000000/],
      [['--customers', '1000001'], /^mip: .*--customers.*whole number from 1 to 1000000/],
      [['--customers', 'ten'], /^mip: .*--customers.*whole number/],
      [['--customers', '5', '--concurrency', '0'], /^mip: .*--concurrency.*1 to 256/],
      [['--customers', '5', '--concurrency', '257'], /^mip: .*--concurrency.*1 to 256/],
      [['--customers', '5', '--prefix', 'a b'], /^mip: .*--prefix/],
      [[], /^mip: required option '--customers <n>' not specified/],
    ] as const) {
      const result = await mipCrm(['seed', ...args]);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toMatch(pattern);
    }
    expect(await crmCustomers()).toHaveLength(0);
  });

  it('redraws a progress bar in place on a terminal', async () => {
    let stderr = '';
    let stdout = '';
    const code = await runCli(['--crm-url', crmUrl, 'seed', '--customers', '20'], {
      stdout: { write: (text: string) => (stdout += text) },
      stderr: { write: (text: string) => (stderr += text), isTTY: true },
      env: {},
    });
    expect(code).toBe(0);
    expect(stdout.trimEnd()).toMatch(SEED_SUMMARY);
    expect(stderr).toMatch(/^\r\[-{30}\] 0\/20 0% 0 customers\/s/);
    // Each redraw returns to the line start and clears what is left of the previous one.
    const CLEAR_LINE = '\u001b[K';
    const frames = stderr.split('\r').slice(1);
    expect(frames.length).toBeGreaterThanOrEqual(2);
    for (const frame of frames.slice(0, -1)) expect(frame.endsWith(CLEAR_LINE)).toBe(true);
    expect(frames.at(-1)).toMatch(/^\[#{30}\] 20\/20 100% \d+ customers\/s/);
    expect(frames.at(-1)!.endsWith(`${CLEAR_LINE}\n`)).toBe(true);
  });
});

describe('mip against a CRM that requires a token', () => {
  const token = 'cli-test-token-0123456789';
  useCrm(token);

  it('sends --token (or API_TOKEN) to the CRM too', async () => {
    const args = ['customers', 'create', '--name', 'Jane Doe', '--email', 'jane@example.com'];
    const refused = await mipCrm(args);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^mip: Send `Authorization: Bearer <API_TOKEN>`/);

    expect((await mipCrm(['--token', token, ...args])).code).toBe(0);
    expect((await mipCrm(['seed', '--customers', '2'], { API_TOKEN: token })).code).toBe(0);
    expect(await crmCustomers()).toHaveLength(3);
  });
});

describe('mip without a CRM to talk to', () => {
  it('prints one "cannot reach" line naming the URL and exits 1, for create and for seed', async () => {
    const stopped = `http://127.0.0.1:${await freePort()}`;
    const expected = `mip: cannot reach the CRM at ${stopped} (ECONNREFUSED); is it running? Set --crm-url or MIP_CRM_URL.\n`;

    const create = await mip('http://127.0.0.1:9', [
      '--crm-url',
      stopped,
      'customers',
      'create',
      '--name',
      'Jane Doe',
      '--email',
      'jane@example.com',
    ]);
    expect(create).toEqual({ code: 1, stdout: '', stderr: expected });

    const seed = await mip('http://127.0.0.1:9', [
      '--crm-url',
      stopped,
      'seed',
      '--customers',
      '1000',
    ]);
    expect(seed).toEqual({ code: 1, stdout: '', stderr: expected });
  });

  it('defaults to CRM_PORT on loopback', async () => {
    const port = await freePort();
    const result = await mip(
      'http://127.0.0.1:9',
      ['customers', 'create', '--name', 'a', '--email', 'a@example.com'],
      { CRM_PORT: String(port) },
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      new RegExp(`^mip: cannot reach the CRM at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\)`),
    );
  });

  it('prints help for every command and subcommand', async () => {
    const help = async (args: string[]) => {
      const result = await mip('http://127.0.0.1:9', [...args, '--help']);
      expect(result.code, args.join(' ')).toBe(0);
      expect(result.stdout).toMatch(new RegExp(`^Usage: mip ${args.join(' ')}`));
      return result.stdout;
    };
    const top = await help([]);
    expect(top).toMatch(/^\s+customers\b/m);
    expect(top).toMatch(/^\s+seed\b/m);
    expect(top).toMatch(/--crm-url <url>/);
    expect(await help(['status'])).toMatch(/show mode/);
    expect(await help(['dlq', 'list'])).toMatch(/--limit <n>/);
    expect(await help(['dlq', 'replay'])).toMatch(/--all/);
    expect(await help(['customers'])).toMatch(/^\s+create\b/m);
    const create = await help(['customers', 'create']);
    expect(create).toMatch(/--name <name>/);
    expect(create).toMatch(/--email <email>/);
    const seed = await help(['seed']);
    for (const option of ['--customers <n>', '--concurrency <n>', '--prefix <text>']) {
      expect(seed).toContain(option);
    }
  });
});
