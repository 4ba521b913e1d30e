import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { mip } from '../../support/mip.js';
import { usePlatform, waitUntil } from '../../support/platform.js';

const start = usePlatform();

const stateOf = async (
  integration: Awaited<ReturnType<typeof start>>['integration'],
  customerId: string,
) =>
  integration.database.db
    .selectFrom('deliveries')
    .select(['state', 'attempts', 'customer_version'])
    .where('customer_id', '=', customerId)
    .executeTakeFirst();

describe('mip trace', () => {
  it('shows what happened to a customer found by email: each event, each attempt with its failure, in order', async () => {
    // Inventory is failing when the customer arrives: the first attempts are retried.
    const { upstreams, integration, url } = await start({}, (upstreams) => {
      upstreams.proxy.plan = { rate: 1, kinds: ['status_503'], retryAfterSeconds: 0 };
    });
    const email = `trace-${randomUUID().slice(0, 8)}@example.com`;
    const created = await fetch(`${upstreams.crmUrl}/customers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Tracy Trace', email }),
    });
    const { id } = (await created.json()) as { id: string };
    await waitUntil(
      async () => ((await stateOf(integration, id))?.attempts ?? 0) >= 1,
      10_000,
      'a failed try',
    );
    upstreams.proxy.plan = { rate: 0, kinds: [] };
    await waitUntil(
      async () => (await stateOf(integration, id))?.state === 'delivered',
      10_000,
      'the create',
    );
    await fetch(`${upstreams.crmUrl}/customers/${id}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Tracy Renamed' }),
    });
    await waitUntil(
      async () => {
        const row = await stateOf(integration, id);
        return row?.state === 'delivered' && Number(row.customer_version) === 2;
      },
      10_000,
      'the update',
    );

    const human = await mip(url, ['trace', email]);
    expect(human).toMatchObject({ code: 0, stderr: '' });
    const lines = human.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`Customer ${id}`);
    expect(lines[1]).toMatch(
      /^ {2}Tracy Renamed, version 2: delivered \(updated\), package request /,
    );
    const steps = lines.slice(2).map((line) => line.replace(/^\S+Z {2}/, ''));
    const time = /^\d{4}-\d\d-\d\dT[\d:.]+Z {2}/;
    expect(lines.slice(2).every((line) => time.test(line))).toBe(true);
    expect(steps[0]).toBe('received customer.created v1 (poll): taken');
    const failed = steps.filter((step) => step.startsWith('attempt create v1: retrying'));
    expect(failed.length).toBeGreaterThanOrEqual(1);
    expect(failed[0]).toMatch(
      /^attempt create v1: retrying — 503 .+ \(\d+ ms, trace [0-9a-f]{32}, on \S+\)$/,
    );
    const rest = steps.slice(1 + failed.length);
    expect(rest[0]).toMatch(/^attempt create v1: delivered \(created\) \(\d+ ms, trace /);
    expect(rest[1]).toBe('received customer.updated v2 (poll): taken');
    expect(rest[2]).toMatch(/^attempt update v2: delivered \(updated\) \(/);
    expect(rest).toHaveLength(3);

    const json = await mip(url, ['--json', 'trace', id]);
    expect(json.code).toBe(0);
    const timeline = JSON.parse(json.stdout) as {
      delivery: { state: string; customer_version: number };
      entries: { kind: string; result: string }[];
    };
    expect(timeline.delivery).toMatchObject({ state: 'delivered', customer_version: 2 });
    expect(timeline.entries.map((entry) => `${entry.kind}:${entry.result}`)).toEqual(
      steps.map((step) =>
        step.startsWith('received')
          ? 'event:taken'
          : `attempt:${step.includes(': retrying') ? 'retrying' : 'delivered'}`,
      ),
    );
  }, 60_000);

  it('says what is wrong with an unknown email, an unknown id, or an argument that is neither', async () => {
    const { integration, url } = await start();

    const noEmail = await mip(url, ['trace', 'nobody@example.com']);
    expect(noEmail.code).toBe(1);
    expect(noEmail.stderr).toBe(
      "mip: No customer in the CRM has the email nobody@example.com. A deleted customer's email is erased: trace them by id.\n",
    );
    const unknown = randomUUID();
    const noId = await mip(url, ['trace', unknown]);
    expect(noId.code).toBe(1);
    expect(noId.stderr).toContain(`has no record of customer ${unknown}`);
    // The API: an id in capitals is the same customer; a cursor past any seq is refused.
    const upper = await integration.app.inject({
      method: 'GET',
      url: `/api/customers/${unknown.toUpperCase()}/timeline`,
    });
    expect(upper.statusCode).toBe(404);
    expect(upper.json().detail).toContain(unknown);
    const huge = await integration.app.inject({
      method: 'GET',
      url: `/api/customers/${unknown}/timeline?after=1e21`,
    });
    expect(huge.statusCode).toBe(400);
    const neither = await mip(url, ['trace', 'jane']);
    expect(neither.code).toBe(2);
    expect(neither.stderr).toContain(
      '"jane" is neither a customer id (a UUID) nor an email address.',
    );
  }, 30_000);
});
