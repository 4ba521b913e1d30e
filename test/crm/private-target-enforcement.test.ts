import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import type { CrmTables } from '../../src/crm/migrations.js';
import { createCrmService } from '../../src/crm/service.js';
import {
  lookupWebhookTarget,
  type ResolveHost,
  type WebhookTargetPolicy,
} from '../../src/core/webhooks/targets.js';
import { createTestApp, expectProblem, type TestApp } from '../support/apps.js';
import { countRows } from '../support/databases.js';
import { waitUntil } from '../support/platform.js';
import { allowList, dns, NEVER_ALLOWED, PRIVATE_REFUSED } from '../support/private-targets.js';
import { startReceiver } from '../support/webhook-receiver.js';
import { fixedDns } from '../support/webhook-targets.js';

// The private-target settings applied by the socket lookup and by the CRM itself. What they admit
// is in private-target-allow-list.test.ts.

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** POSTs through `agent` to `url`; answers the status, or the error's code and message. */
async function connect(agent: Agent, url: string) {
  try {
    const answer = await request(url, { method: 'POST', dispatcher: agent, body: '{}' });
    await answer.body.dump();
    return { status: answer.statusCode };
  } catch (caught) {
    const error = caught as { code?: string; message?: string };
    return { code: error.code, message: error.message };
  }
}

describe("lookupWebhookTarget (the sender's connections)", () => {
  it('refuses a name rebound to a metadata address even with private targets allowed, and admits listed names on any port', async () => {
    const receiver = await startReceiver();
    closers.push(receiver.close);
    const { port } = new URL(receiver.url);
    const agent = (policy: WebhookTargetPolicy) => {
      const created = new Agent({ connect: { lookup: lookupWebhookTarget(policy) } });
      closers.push(() => created.close());
      return created;
    };
    const names = fixedDns({
      'rebound.test': ['169.254.169.254'],
      'mapped.test': ['::ffff:169.254.169.254'],
      'receiver.test': ['127.0.0.1'],
      'other.test': ['127.0.0.1'],
    });
    const permissive = agent({ allowPrivate: true, resolve: names });
    for (const host of ['rebound.test', 'mapped.test']) {
      const refused = await connect(permissive, `http://${host}:${port}/hooks`);
      expect(refused.code, host).toBe('EWEBHOOKTARGET');
      expect(refused.message, host).toMatch(NEVER_ALLOWED);
    }
    // The same permissive guard does connect to a private address: the refusals are about metadata.
    expect(await connect(permissive, `http://receiver.test:${port}/hooks`)).toEqual({
      status: 200,
    });

    const listed = agent({
      allowPrivate: false,
      allowList: allowList('receiver.test:1'),
      resolve: names,
    });
    expect(await connect(listed, `http://receiver.test:${port}/hooks`)).toEqual({ status: 200 });
    const other = await connect(listed, `http://other.test:${port}/hooks`);
    expect(other.code).toBe('EWEBHOOKTARGET');
    expect(other.message).toMatch(/add "other.test" \(or a CIDR block holding 127\.0\.0\.1\)/);
    expect(receiver.calls).toHaveLength(2);
  });
});

const FAST_RETRIES = { WEBHOOK_RETRY_BASE_MS: '20', WEBHOOK_RETRY_MAX_DELAY_MS: '50' };

/** The CRM app with `resolveHost` for webhook hosts, on a fresh database, closed after the test. */
async function startCrm(
  env: Record<string, string>,
  resolveHost: ResolveHost,
): Promise<TestApp<CrmTables>> {
  const crm = await createTestApp(createCrmService({ resolveHost }), {
    env: { ...FAST_RETRIES, ...env },
  });
  closers.push(crm.close);
  return crm;
}

const subscribe = (crm: TestApp<CrmTables>, url: string) =>
  crm.app.inject({
    method: 'POST',
    url: '/webhook-endpoints',
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify({ url }),
  });

describe('the CRM with WEBHOOK_ALLOWED_PRIVATE_TARGETS', () => {
  it('subscribes listed private targets only, refusing the rest with 422 naming the setting', async () => {
    const crm = await startCrm(
      {
        HOST: '0.0.0.0',
        WEBHOOK_ALLOWED_PRIVATE_TARGETS: 'integration:8002,10.9.0.0/16',
      },
      dns,
    );
    for (const url of ['http://integration:8002/webhooks/crm', 'http://10.9.1.1/hooks']) {
      expect((await subscribe(crm, url)).statusCode, url).toBe(201);
    }
    for (const [url, detail] of [
      ['http://10.0.0.7/', PRIVATE_REFUSED],
      ['http://integration:9999/webhooks/crm', PRIVATE_REFUSED],
      ['http://hooks.internal/', PRIVATE_REFUSED],
      ['http://169.254.169.254/latest/meta-data/', NEVER_ALLOWED],
      ['http://metadata.google.internal/computeMetadata/v1/', NEVER_ALLOWED],
    ] as const) {
      const problem = expectProblem(await subscribe(crm, url), 422);
      expect(problem.code, url).toBe('webhook_target_refused');
      expect(problem.detail, url).toMatch(detail);
    }
    expect(await countRows(crm.database.db, 'webhook_endpoints')).toBe(2);
  });

  it('delivers to a listed name, through the guarded connections', async () => {
    const receiver = await startReceiver();
    closers.push(receiver.close);
    const { port } = new URL(receiver.url);
    const crm = await startCrm(
      {
        WEBHOOK_ALLOW_PRIVATE_TARGETS: 'false',
        WEBHOOK_ALLOWED_PRIVATE_TARGETS: 'receiver.internal',
      },
      fixedDns({ 'receiver.internal': ['127.0.0.1'] }),
    );
    await crm.runtime.start?.({ url: 'http://127.0.0.1:9' });
    expect((await subscribe(crm, `http://receiver.internal:${port}/hooks`)).statusCode).toBe(201);
    await crm.app.inject({
      method: 'POST',
      url: '/customers',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ name: 'Jane Doe', email: 'jane@example.com' }),
    });
    await waitUntil(() => receiver.calls.length === 1, 10_000, 'the webhook');
  });
});

describe('the CRM with WEBHOOK_ALLOW_PRIVATE_TARGETS=true', () => {
  it('still refuses metadata targets, at subscription and when a name is rebound before a call', async () => {
    // Public while subscribing and at the check before the call, metadata when the socket
    // connects: only the connection's own lookup can catch that.
    let lookups = 0;
    const rebinding: ResolveHost = async () =>
      ++lookups <= 2 ? ['93.184.216.34'] : ['169.254.169.254'];
    const crm = await startCrm(
      { WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true', WEBHOOK_MAX_ATTEMPTS: '1' },
      rebinding,
    );
    for (const url of [
      'http://169.254.169.254/latest/meta-data/',
      'http://[::ffff:a9fe:a9fe]/',
      'http://[fd00:ec2::254]/latest/meta-data/',
      'http://100.100.100.200/latest/meta-data/',
    ]) {
      const problem = expectProblem(await subscribe(crm, url), 422);
      expect(problem.detail, url).toMatch(NEVER_ALLOWED);
    }
    expect(await countRows(crm.database.db, 'webhook_endpoints')).toBe(0);
    const privateEndpoint = await subscribe(crm, 'http://10.0.0.7/');
    expect(privateEndpoint.statusCode).toBe(201);
    // Not called below: nothing answers there, and its call would hold the batch until the timeout.
    const privateId = (privateEndpoint.json() as { id: string }).id;
    await crm.app.inject({ method: 'DELETE', url: `/webhook-endpoints/${privateId}` });

    await crm.runtime.start?.({ url: 'http://127.0.0.1:9' });
    const created = await subscribe(crm, 'http://rebinding.example.test/hooks');
    expect(created.statusCode).toBe(201);
    const { id } = created.json() as { id: string };
    await crm.app.inject({
      method: 'POST',
      url: '/customers',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ name: 'Jane Doe', email: 'jane@example.com' }),
    });
    const attempts = async () =>
      (
        await crm.app.inject({ method: 'GET', url: `/webhook-endpoints/${id}/attempts` })
      ).json() as {
        error: string | null;
      }[];
    await waitUntil(async () => (await attempts()).length === 1, 10_000, 'the attempt');
    expect((await attempts())[0]!.error).toMatch(
      /"rebinding.example.test" resolves to 169\.254\.169\.254, a link-local or cloud metadata address/,
    );
  });
});
