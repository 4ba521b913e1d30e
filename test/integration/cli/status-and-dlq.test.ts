import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { IntegrationTables } from '../../../src/integration/migrations.js';
import { integrationService } from '../../../src/integration/service.js';
import { deliveryStateOf, seedDeadLetter as seedDeadLetterIn } from '../../support/dead-letters.js';
import { createTestApp, type TestApp } from '../../support/apps.js';
import { mip } from '../../support/mip.js';
import { freePort } from '../../support/processes.js';

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

const seedDeadLetter = (
  name: string,
  state?: 'dead' | 'delivered',
  last?: Parameters<typeof seedDeadLetterIn>[3],
) => seedDeadLetterIn(t.database, name, state, last);
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
    expect(JSON.parse(none.stdout)).toEqual({ matched: 0, replayed: 0, dry_run: false });
  });

  it('replays only the dead letters --since, --status and --error-contains take, counting first with --dry-run', async () => {
    const refused = await seedDeadLetter('Refused Rita');
    const failing = await seedDeadLetter('Failing Fred', 'dead', {
      status: 503,
      error: 'Inventory answered 503: 50% of nodes down',
    });
    const old = await seedDeadLetter('Old Olga', 'dead', {
      status: 503,
      error: 'Inventory answered 503: request TIMED OUT',
      at: Date.now() - 3 * 3_600_000,
    });
    const states = async () =>
      Promise.all([refused, failing, old].map((customerId) => stateOf(customerId)));

    const dry = await mip(url, ['dlq', 'replay', '--all', '--status', '503', '--dry-run']);
    expect(dry).toMatchObject({ code: 0, stderr: '' });
    expect(dry.stdout).toBe(
      '2 dead letters match; nothing replayed (a dry run: leave out --dry-run to replay them).\n',
    );
    expect(await states()).toEqual(['dead', 'dead', 'dead']);

    const recent = await mip(url, ['dlq', 'replay', '--all', '--status', '503', '--since', '1h']);
    expect(recent.stdout).toBe(
      'Replayed 1 dead letter of 1 that matched; they will be delivered again shortly.\n',
    );
    expect(await states()).toEqual(['dead', 'pending', 'dead']);

    // `%` and `_` are matched as themselves, and letter case does not matter.
    const percent = await mip(url, ['dlq', 'replay', '--all', '--error-contains', '0%', '--json']);
    expect(JSON.parse(percent.stdout)).toEqual({ matched: 0, replayed: 0, dry_run: false });
    const underscore = await mip(url, [
      '--json',
      'dlq',
      'replay',
      '--all',
      '--error-contains',
      'r_',
      '--dry-run',
    ]);
    // Only "customer_id" has it: as a wildcard, "r_" would match "re" and "er" in every error.
    expect(JSON.parse(underscore.stdout)).toEqual({ matched: 1, replayed: 0, dry_run: true });
    const timedOut = await mip(url, ['dlq', 'replay', '--all', '--error-contains', 'timed out']);
    expect(timedOut.stdout).toContain('Replayed 1 dead letter of 1 that matched');
    expect(await states()).toEqual(['dead', 'pending', 'pending']);

    const since = new Date(Date.now() - 60_000).toISOString();
    const iso = await mip(url, ['--json', 'dlq', 'replay', '--all', '--since', since, '--dry-run']);
    expect(JSON.parse(iso.stdout)).toEqual({ matched: 1, replayed: 0, dry_run: true });
  });

  it('refuses a filter it cannot read, or a filter beside a customer id (exit 2)', async () => {
    const badTime = await mip(url, ['dlq', 'replay', '--all', '--since', 'yesterday']);
    expect(badTime.code).toBe(2);
    expect(badTime.stderr).toContain('a time such as 2026-12-03T09:00:00Z, or a span ago');
    const badStatus = await mip(url, ['dlq', 'replay', '--all', '--status', '99']);
    expect(badStatus.code).toBe(2);
    expect(badStatus.stderr).toContain('a whole number from 100 to 599');
    const withId = await mip(url, ['dlq', 'replay', randomUUID(), '--status', '503']);
    expect(withId.code).toBe(2);
    expect(withId.stderr).toContain('give either a customer id, or --all with its filters');
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
    expect(both.stderr).toMatch(
      /^mip: give either a customer id, or --all with its filters .*, not both\./,
    );
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
