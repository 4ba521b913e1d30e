import { afterEach, describe, expect, it } from 'vitest';
import type { CrmTables } from '../../src/crm/migrations.js';
import { crmService } from '../../src/crm/service.js';
import { Agent, request } from 'undici';
import { isPublicAddress } from '../../src/crm/target-addresses.js';
import { checkWebhookTarget, lookupWebhookTarget } from '../../src/crm/webhook-targets.js';
import { createTestApp, expectProblem, type TestApp } from '../support/apps.js';
import { createTestDatabase } from '../support/databases.js';
import { waitUntil } from '../support/platform.js';
import { fixedDns, refusal } from '../support/webhook-targets.js';
import { startReceiver } from '../support/webhook-receiver.js';

const PRIVATE_REFUSED = /a private, loopback or reserved address/;
const NEVER_ALLOWED = /a link-local or cloud metadata address; those are never allowed/;

describe('checkWebhookTarget, private targets not allowed', () => {
  it.each([
    // loopback
    ['loopback', 'http://127.0.0.1/x'],
    ['loopback', 'http://127.1.2.3:8080/x'],
    ['loopback', 'http://[::1]/x'],
    ['loopback', 'http://[0:0:0:0:0:0:0:1]/x'],
    ['unspecified (reaches loopback)', 'http://0.0.0.0/x'],
    ['unspecified (reaches loopback)', 'http://[::]/x'],
    ['"this network"', 'http://0.1.2.3/x'],
    // private
    ['private 10/8', 'http://10.0.0.1/x'],
    ['private 10/8', 'http://10.255.255.254/x'],
    ['private 172.16/12', 'http://172.16.0.1/x'],
    ['private 172.16/12', 'http://172.31.255.254/x'],
    ['private 192.168/16', 'http://192.168.0.1/x'],
    ['private 192.168/16', 'https://192.168.255.254:8443/x'],
    ['unique local fc00::/7', 'http://[fc00::1]/x'],
    ['unique local fc00::/7', 'http://[fdff:ffff::1]/x'],
    // carrier-grade NAT
    ['CGNAT 100.64/10', 'http://100.64.0.1/x'],
    ['CGNAT 100.64/10', 'http://100.127.255.254/x'],
    // IPv4 inside IPv6
    ['IPv4-mapped', 'http://[::ffff:127.0.0.1]/x'],
    ['IPv4-mapped, hex', 'http://[::ffff:7f00:1]/x'],
    ['IPv4-mapped private', 'http://[::ffff:10.0.0.1]/x'],
    ['IPv4-compatible (deprecated)', 'http://[::127.0.0.1]/x'],
    ['IPv4-translated (SIIT)', 'http://[::ffff:0:7f00:1]/x'],
    ['NAT64', 'http://[64:ff9b::7f00:1]/x'],
    ['6to4', 'http://[2002:7f00:1::]/x'],
    ['Teredo', 'http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x'],
    // other IPv4 notations, which the WHATWG URL parser turns into 127.0.0.1 / 10.0.0.1
    ['decimal', 'http://2130706433/x'],
    ['hexadecimal', 'http://0x7f000001/x'],
    ['octal', 'http://0177.0.0.1/x'],
    ['short form', 'http://127.1/x'],
    ['mixed hex form', 'http://0x7f.1/x'],
    ['trailing dot', 'http://127.0.0.1./x'],
    ['full-width digits', 'http://１２７.０.０.１/x'],
    ['decimal private', 'http://167772161/x'],
    ['zero', 'http://0/x'],
    // multicast, broadcast, reserved, documentation, unallocated
    ['multicast', 'http://224.0.0.1/x'],
    ['multicast', 'http://239.255.255.250/x'],
    ['multicast', 'http://[ff02::1]/x'],
    ['broadcast', 'http://255.255.255.255/x'],
    ['reserved 240/4', 'http://240.0.0.1/x'],
    ['IETF protocol assignments', 'http://192.0.0.8/x'],
    ['documentation', 'http://192.0.2.1/x'],
    ['documentation', 'http://[2001:db8::1]/x'],
    ['benchmarking', 'http://198.18.0.1/x'],
    ['discard-only', 'http://[100::1]/x'],
    ['unallocated IPv6', 'http://[4000::1]/x'],
  ])('refuses %s: %s', async (_kind, url) => {
    expect(await refusal(url)).toMatch(PRIVATE_REFUSED);
  });

  it('refuses names that resolve to loopback (through the system resolver)', async () => {
    // localhost resolves from /etc/hosts, so this needs no DNS server.
    for (const url of ['http://localhost/x', 'http://LOCALHOST:8000/x']) {
      expect(await refusal(url)).toMatch(/"localhost" resolves to (127\.0\.0\.1|::1)/);
    }
  });

  it('refuses a name if any of its addresses is not public, and names that do not resolve', async () => {
    const resolve = fixedDns({
      'metadata.google.internal': ['169.254.169.254'],
      'mixed.example.test': ['93.184.216.34', '10.0.0.7'],
      'mapped.example.test': ['::ffff:127.0.0.1'],
      'compatible.example.test': ['::7f00:1'],
      'empty.example.test': [],
    });
    const options = { allowPrivate: false, resolve };
    expect(await refusal('http://metadata.google.internal/computeMetadata/v1/', options)).toMatch(
      /"metadata.google.internal" resolves to 169\.254\.169\.254, a link-local or cloud metadata/,
    );
    expect(await refusal('http://metadata.google.internal/', options)).toMatch(NEVER_ALLOWED);
    expect(await refusal('https://mixed.example.test/x', options)).toMatch(
      /resolves to 10\.0\.0\.7, a private/,
    );
    expect(await refusal('https://mapped.example.test/x', options)).toMatch(PRIVATE_REFUSED);
    expect(await refusal('https://compatible.example.test/x', options)).toMatch(PRIVATE_REFUSED);
    expect(await refusal('https://empty.example.test/x', options)).toMatch(/does not resolve/);
    expect(await refusal('https://unknown.example.test/x', options)).toMatch(/does not resolve/);
  });

  it.each([
    ['http://93.184.216.34/hooks'],
    ['https://8.8.8.8:8443/hooks?tenant=1'],
    ['http://172.32.0.1/x'], // just past 172.16/12
    ['http://100.128.0.1/x'], // just past 100.64/10
    ['http://[2606:4700:4700::1111]/hooks'],
    ['http://[::ffff:93.184.216.34]/hooks'],
  ])('accepts the public address in %s', async (url) => {
    const accepted = await checkWebhookTarget(url, { allowPrivate: false });
    expect(accepted.href).toBe(new URL(url).href);
  });

  it('accepts a name whose every address is public', async () => {
    const resolve = fixedDns({ 'hooks.example.test': ['93.184.216.34', '2606:2800:220:1::1'] });
    const accepted = await checkWebhookTarget('https://hooks.example.test/in', {
      allowPrivate: false,
      resolve,
    });
    expect(accepted.hostname).toBe('hooks.example.test');
  });
});

describe('checkWebhookTarget, whatever the private-target setting', () => {
  it.each([
    ['file:///etc/passwd', /not file/],
    ['gopher://127.0.0.1:6379/_INFO', /not gopher/],
    ['ftp://example.com/x', /not ftp/],
    ['javascript:alert(1)', /not javascript/],
    ['data:text/plain,hello', /not data/],
    ['ws://example.com/x', /not ws/],
    ['https://user:pass@example.com/x', /must not contain credentials/],
    ['https://user@example.com/x', /must not contain credentials/],
    ['https://:pass@example.com/x', /must not contain credentials/],
    ['not a url', /is not a URL/],
    ['/relative/path', /is not a URL/],
    ['http://[fe80::1%25eth0]/x', /is not a URL/],
  ])('refuses %s', async (url, reason) => {
    for (const allowPrivate of [false, true]) {
      expect(await refusal(url, { allowPrivate })).toMatch(reason);
    }
  });

  it('accepts private addresses when they are allowed', async () => {
    for (const url of ['http://127.0.0.1:9/x', 'http://10.0.0.7/', 'http://[::1]/x']) {
      await expect(checkWebhookTarget(url, { allowPrivate: true })).resolves.toBeInstanceOf(URL);
    }
  });
});

describe('isPublicAddress', () => {
  it('is true only for public unicast addresses', () => {
    for (const address of ['93.184.216.34', '1.1.1.1', '2606:4700:4700::1111', '2a00:1450::1']) {
      expect(isPublicAddress(address), address).toBe(true);
    }
    for (const address of [
      '127.0.0.1',
      '::1',
      '0.0.0.0',
      '::',
      '10.0.0.1',
      '172.16.0.1',
      '192.168.0.1',
      'fc00::1',
      '169.254.169.254',
      'fe80::1',
      '100.64.0.1',
      '::ffff:127.0.0.1',
      '::ffff:7f00:1',
      '::127.0.0.1',
      '::7f00:1',
      '224.0.0.1',
      'ff02::1',
      '255.255.255.255',
      '240.0.0.1',
      '4000::1',
      '',
      'localhost',
      'not-an-address',
    ]) {
      expect(isPublicAddress(address), address).toBe(false);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Through the CRM: registration, the re-check before every call, redirects
// ---------------------------------------------------------------------------------------------

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
