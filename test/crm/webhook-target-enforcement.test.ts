import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import type { CrmTables } from '../../src/crm/migrations.js';
import { crmService } from '../../src/crm/service.js';
import { lookupWebhookTarget } from '../../src/core/webhooks/targets.js';
import { createTestApp, expectProblem, type TestApp } from '../support/apps.js';
import { createTestDatabase } from '../support/databases.js';
import { waitUntil } from '../support/platform.js';
import { startReceiver } from '../support/webhook-receiver.js';

// Through the CRM: registration, the socket's own lookup, the re-check before every call,
// redirects. The rules themselves are in webhook-targets.test.ts.

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const FAST_RETRIES = { WEBHOOK_RETRY_BASE_MS: '20', WEBHOOK_RETRY_MAX_DELAY_MS: '50' };

/** The CRM app on a fresh database (or `database`), closed after the test. */
async function startCrm(
  env: Record<string, string>,
  database?: TestApp<CrmTables>['database'],
): Promise<TestApp<CrmTables>> {
  const crm = await createTestApp(crmService, { env: { ...FAST_RETRIES, ...env }, database });
  closers.push(crm.close);
  return crm;
}

const post = (crm: TestApp<CrmTables>, path: string, body: unknown) =>
  crm.app.inject({
    method: 'POST',
    url: path,
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify(body),
  });

interface Attempt {
  status: number | null;
  error: string | null;
}

const attemptsOf = async (crm: TestApp<CrmTables>, endpointId: string): Promise<Attempt[]> =>
  (
    await crm.app.inject({ method: 'GET', url: `/webhook-endpoints/${endpointId}/attempts` })
  ).json();

/** `crm_webhook_attempts_total{outcome}` from the CRM's /metrics. */
async function attemptsCounted(crm: TestApp<CrmTables>, outcome: string): Promise<number> {
  const text = (await crm.app.inject({ method: 'GET', url: '/metrics' })).body;
  const line = new RegExp(
    `^crm_webhook_attempts_total\\{[^}]*outcome="${outcome}"[^}]*\\} (\\d+)$`,
    'm',
  );
  return Number(line.exec(text)?.[1] ?? 0);
}

describe('POST /webhook-endpoints', () => {
  it('answers 422 for private targets in any notation and stores none', async () => {
    const crm = await startCrm({ WEBHOOK_ALLOW_PRIVATE_TARGETS: 'false' });
    for (const url of [
      'http://2130706433/x',
      'http://0x7f000001/x',
      'http://0177.0.0.1/x',
      'http://127.1/x',
      'http://[::127.0.0.1]/x',
      'http://[::ffff:7f00:1]/x',
      'http://[::ffff:169.254.169.254]/latest/meta-data/',
      'http://[fd00:ec2::254]/latest/meta-data/',
      'http://100.64.0.1/x',
      'http://localhost:8000/x',
      'gopher://example.com/x',
      'javascript:alert(1)',
    ]) {
      const problem = expectProblem(await post(crm, '/webhook-endpoints', { url }), 422);
      expect(problem.code, url).toBe('webhook_target_refused');
    }
    expect((await crm.app.inject({ method: 'GET', url: '/webhook-endpoints' })).json()).toEqual([]);
    // A public address is still accepted (no DNS needed for an address).
    expect(
      (await post(crm, '/webhook-endpoints', { url: 'http://93.184.216.34/x' })).statusCode,
    ).toBe(201);
  });
});

describe("lookupWebhookTarget (the sender's connections)", () => {
  it('refuses to connect to a name that resolves to loopback at connection time (DNS rebinding)', async () => {
    // The check before the call can be passed by a name that answers a public address first and a
    // private one when the socket connects; the socket's own lookup is the last word.
    const receiver = await startReceiver();
    closers.push(receiver.close);
    const agent = new Agent({ connect: { lookup: lookupWebhookTarget({ allowPrivate: false }) } });
    closers.push(() => agent.close());
    const { port } = new URL(receiver.url);
    const error = await request(`http://localhost:${port}/hooks`, {
      method: 'POST',
      dispatcher: agent,
      body: '{}',
    }).then(
      () => undefined,
      (caught: unknown) => caught as { code?: string; message?: string },
    );
    expect(error?.code).toBe('EWEBHOOKTARGET');
    expect(error?.message).toMatch(/"localhost" resolves to (127\.0\.0\.1|::1), a private/);
    expect(receiver.calls).toHaveLength(0);
    // The same agent without the guard does reach it: the refusal above is the guard's doing.
    const open = new Agent();
    closers.push(() => open.close());
    const answer = await request(`http://localhost:${port}/hooks`, {
      method: 'POST',
      dispatcher: open,
      body: '{}',
    });
    await answer.body.dump();
    expect(answer.statusCode).toBe(200);
  });
});

describe('the webhook sender', () => {
  it('checks the target again before every call: one that is no longer allowed is not called', async () => {
    const receiver = await startReceiver();
    closers.push(receiver.close);
    const database = await createTestDatabase<CrmTables>('crm');
    closers.push(() => database.drop());

    // Registered while private targets were allowed…
    const before = await createTestApp(crmService, {
      env: { WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true' },
      database,
    });
    const created = await post(before, '/webhook-endpoints', { url: receiver.url });
    expect(created.statusCode).toBe(201);
    const { id } = created.json() as { id: string };
    await before.close();

    // …then sent by a CRM that refuses them (as when a name's DNS answer turned private).
    const crm = await startCrm(
      { WEBHOOK_ALLOW_PRIVATE_TARGETS: 'false', WEBHOOK_MAX_ATTEMPTS: '2' },
      database,
    );
    await crm.runtime.start?.({ url: 'http://127.0.0.1:9' });
    expect(
      (await post(crm, '/customers', { name: 'Jane Doe', email: 'jane@example.com' })).statusCode,
    ).toBe(201);
    const message = () =>
      database.db
        .selectFrom('webhook_messages')
        .select(['state', 'attempts'])
        .where('endpoint_id', '=', id)
        .executeTakeFirstOrThrow();
    await waitUntil(
      async () => (await message()).state !== 'pending',
      10_000,
      'the message to be given up on or delivered',
    );
    expect(await message()).toEqual({ state: 'failed', attempts: 2 });
    const attempts = await attemptsOf(crm, id);
    expect(attempts).toHaveLength(2);
    for (const attempt of attempts) {
      expect(attempt.status).toBeNull();
      expect(attempt.error).toMatch(/"127\.0\.0\.1" resolves to 127\.0\.0\.1, a private/);
    }
    expect(await attemptsCounted(crm, 'failure')).toBe(2);
    expect(await attemptsCounted(crm, 'success')).toBe(0);
    expect(receiver.calls).toHaveLength(0);
  });

  /**
   * One endpoint per case, each answering with a redirect to `location`; one customer is created
   * and each endpoint's single attempt must be a failure carrying the redirect's own status.
   */
  async function expectRedirectsNotFollowed(
    crm: TestApp<CrmTables>,
    cases: { status: number; location: string }[],
  ): Promise<void> {
    const endpoints: { status: number; id: string }[] = [];
    for (const { status, location } of cases) {
      const redirecting = await startReceiver(() => ({ status, headers: { location } }));
      closers.push(redirecting.close);
      const created = await post(crm, '/webhook-endpoints', { url: redirecting.url });
      endpoints.push({ status, id: (created.json() as { id: string }).id });
    }
    await post(crm, '/customers', { name: 'Jane Doe', email: 'jane@example.com' });
    for (const { status, id } of endpoints) {
      await waitUntil(async () => (await attemptsOf(crm, id)).length === 1, 10_000, `${status}`);
      expect(await attemptsOf(crm, id), String(status)).toEqual([
        expect.objectContaining({ status, error: `HTTP ${status}` }),
      ]);
    }
    expect(await attemptsCounted(crm, 'failure')).toBe(cases.length);
  }

  it('does not follow redirects to another local server, whatever the 3xx', async () => {
    const followed = await startReceiver();
    closers.push(followed.close);
    const crm = await startCrm({ WEBHOOK_MAX_ATTEMPTS: '1' });
    await crm.runtime.start?.({ url: 'http://127.0.0.1:9' });
    await expectRedirectsNotFollowed(
      crm,
      [301, 302, 303, 307, 308].map((status) => ({
        status,
        location: `${followed.url}?from=${status}`,
      })),
    );
    // Late calls would come within milliseconds of the redirect; give them time to show.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(followed.calls).toHaveLength(0);
  });

  it('does not follow redirects to cloud metadata addresses', async () => {
    // Connecting to 169.254.169.254 here would hang until the timeout or fail to route: either
    // way the attempt's error would not be the redirect's own status.
    const crm = await startCrm({ WEBHOOK_MAX_ATTEMPTS: '1', WEBHOOK_TIMEOUT_MS: '3000' });
    await crm.runtime.start?.({ url: 'http://127.0.0.1:9' });
    await expectRedirectsNotFollowed(crm, [
      {
        status: 302,
        location: 'http://169.254.169.254/latest/meta-data/iam/security-credentials/',
      },
      { status: 307, location: 'http://[fd00:ec2::254]/latest/meta-data/' },
      { status: 302, location: 'http://metadata.google.internal/computeMetadata/v1/' },
    ]);
  });
});
