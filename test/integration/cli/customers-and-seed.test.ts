import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CrmTables } from '../../../src/crm/migrations.js';
import { crmService } from '../../../src/crm/service.js';
import { runCli } from '../../../src/integration/cli.js';
import { createTestApp, type TestApp } from '../../support/apps.js';
import { mip } from '../../support/mip.js';
import { freePort } from '../../support/processes.js';

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
