import { Webhook } from 'standardwebhooks';
import { afterEach, describe, expect, it } from 'vitest';
import type { CrmTables } from '../../src/crm/migrations.js';
import { crmService } from '../../src/crm/service.js';
import { isPublicAddress } from '../../src/core/webhooks/target-addresses.js';
import { checkWebhookTarget } from '../../src/core/webhooks/targets.js';
import { createTestApp, expectProblem, type TestApp } from '../support/apps.js';
import { waitUntil } from '../support/platform.js';
import { startReceiver } from '../support/webhook-receiver.js';

let t: TestApp<CrmTables> | undefined;
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await t?.close();
  t = undefined;
  for (const close of closers.splice(0)) await close();
});

const start = async (env: Record<string, string> = {}) => {
  t = await createTestApp(crmService, {
    env: { WEBHOOK_RETRY_BASE_MS: '20', WEBHOOK_RETRY_MAX_DELAY_MS: '50', ...env },
  });
  await t.runtime.start?.({ url: 'http://127.0.0.1:9' });
  return t;
};

const post = (path: string, body: unknown) =>
  t!.app.inject({
    method: 'POST',
    url: path,
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify(body),
  });

const endpointStatus = async (id: string) =>
  (await t!.app.inject({ method: 'GET', url: `/webhook-endpoints/${id}` })).json().status as string;

const waitForDisabled = (id: string) =>
  waitUntil(
    async () => (await endpointStatus(id)) === 'disabled',
    5_000,
    'the endpoint to be disabled',
  );

const createCustomer = async (email = 'jane.doe@example.com') =>
  (await post('/customers', { name: 'Jane Doe', email })).json() as { id: string };

describe('webhook endpoints', () => {
  it('creates an endpoint with a whsec_ secret, refuses the same URL twice, lists and deletes', async () => {
    await start();
    const created = await post('/webhook-endpoints', { url: 'https://example.com/hooks' });
    expect(created.statusCode).toBe(201);
    const endpoint = created.json();
    expect(endpoint.secret).toMatch(/^whsec_[A-Za-z0-9+/=]{32}$/);
    expect(endpoint.status).toBe('active');
    expect(
      expectProblem(await post('/webhook-endpoints', { url: 'https://example.com/hooks' }), 409)
        .existing_endpoint_id,
    ).toBe(endpoint.id);
    const list = (await t!.app.inject({ method: 'GET', url: '/webhook-endpoints' })).json();
    expect(list).toHaveLength(1);
    expect(list[0]).not.toHaveProperty('secret');
    const secret = (
      await t!.app.inject({ method: 'GET', url: `/webhook-endpoints/${endpoint.id}/secret` })
    ).json();
    expect(secret.secret).toBe(endpoint.secret);
    expect(
      (await t!.app.inject({ method: 'DELETE', url: `/webhook-endpoints/${endpoint.id}` }))
        .statusCode,
    ).toBe(204);
    expectProblem(
      await t!.app.inject({ method: 'GET', url: `/webhook-endpoints/${endpoint.id}` }),
      404,
    );
  });

  it("names a duplicate's URL with its query values masked (callers log the detail)", async () => {
    await start();
    const url = 'https://example.com/hooks?token=s3cr3t-in-query';
    expect((await post('/webhook-endpoints', { url })).statusCode).toBe(201);
    const problem = expectProblem(await post('/webhook-endpoints', { url }), 409);
    expect(problem.detail).toContain('https://example.com/hooks?token=***');
    expect(JSON.stringify(problem)).not.toContain('s3cr3t-in-query');
  });

  it.each([
    ['ftp://example.com/x'],
    ['not a url'],
    ['https://user:pass@example.com/x'],
    ['http://127.0.0.1:9/x'],
    ['http://localhost/x'],
    ['http://10.0.0.1/x'],
    ['http://192.168.1.1/x'],
    ['http://169.254.169.254/latest/meta-data'],
    ['http://[::1]/x'],
    ['http://[::ffff:127.0.0.1]/x'],
    ['http://[fd00::1]/x'],
    ['http://0.0.0.0/x'],
  ])('refuses %s with 422 when private targets are not allowed', async (url) => {
    await start({ WEBHOOK_ALLOW_PRIVATE_TARGETS: 'false' });
    const problem = expectProblem(await post('/webhook-endpoints', { url }), 422);
    expect(problem.code).toBe('webhook_target_refused');
    expect((await t!.app.inject({ method: 'GET', url: '/webhook-endpoints' })).json()).toEqual([]);
  });

  it('classifies addresses: only public unicast is public', async () => {
    expect(isPublicAddress('93.184.216.34')).toBe(true);
    expect(isPublicAddress('2606:4700::1111')).toBe(true);
    for (const address of [
      '127.0.0.1',
      '10.1.2.3',
      '172.16.0.1',
      '192.168.0.1',
      '169.254.169.254',
      '::1',
      'fe80::1',
      '::ffff:10.0.0.1',
      '100.64.0.1',
      'nonsense',
    ]) {
      expect(isPublicAddress(address), address).toBe(false);
    }
    await expect(
      checkWebhookTarget('http://127.0.0.1/x', { allowPrivate: true }),
    ).resolves.toBeInstanceOf(URL);
  });
});

describe('webhook delivery', () => {
  it('POSTs each new customer, signed per Standard Webhooks, verifiable with the reference library', async () => {
    const receiver = await startReceiver();
    closers.push(receiver.close);
    await start();
    const { secret } = (await post('/webhook-endpoints', { url: receiver.url })).json();
    const customer = await createCustomer();
    await waitUntil(() => receiver.calls.length === 1, 5_000, 'the webhook');
    const [call] = receiver.calls;
    const payload = new Webhook(secret).verify(
      call!.body,
      call!.headers as Record<string, string>,
    ) as {
      type: string;
      timestamp: string;
      position: number;
      data: { id: string; name: string };
    };
    expect(payload.type).toBe('customer.created');
    expect(payload.data).toMatchObject({ id: customer.id, name: 'Jane Doe' });
    expect(call!.headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/=]+$/);
    expect(Math.abs(Number(call!.headers['webhook-timestamp']) - Date.now() / 1000)).toBeLessThan(
      10,
    );
    // webhook-id is the event id, the same on every retry: receivers deduplicate on it.
    const events = (await t!.app.inject({ method: 'GET', url: '/events' })).json();
    expect(call!.headers['webhook-id']).toBe(events[0].id);
    // The feed position, to read again what a receiver missed.
    expect(payload.position).toBe(events[0].position);
    // A tampered body does not verify.
    expect(() =>
      new Webhook(secret).verify(
        call!.body.replace('Jane', 'John'),
        call!.headers as Record<string, string>,
      ),
    ).toThrow();
  });

  it('POSTs a change as customer.updated with the whole new state and the changed fields, after the creation', async () => {
    const receiver = await startReceiver();
    closers.push(receiver.close);
    await start();
    const { secret } = (await post('/webhook-endpoints', { url: receiver.url })).json();
    const customer = await createCustomer();
    const changed = await t!.app.inject({
      method: 'PATCH',
      url: `/customers/${customer.id}`,
      headers: { 'content-type': 'application/json' },
      payload: { email: 'jane.roe@example.com' },
    });
    await waitUntil(() => receiver.calls.length === 2, 5_000, 'both webhooks');
    const payloads = receiver.calls.map((call) =>
      new Webhook(secret).verify(call.body, call.headers as Record<string, string>),
    );
    expect(payloads[1]).toEqual({
      type: 'customer.updated',
      timestamp: expect.any(String),
      position: (payloads[0] as { position: number }).position + 1,
      data: changed.json(),
      changed_fields: ['email'],
    });
  });

  it('retries failures with backoff until a 2xx, recording every attempt', async () => {
    const receiver = await startReceiver((n) => ({ status: n <= 2 ? 500 : 204 }));
    closers.push(receiver.close);
    await start();
    const { id } = (await post('/webhook-endpoints', { url: receiver.url })).json();
    await createCustomer();
    await waitUntil(() => receiver.calls.length === 3, 5_000, 'three calls');
    await waitUntil(
      async () =>
        (await t!.app.inject({ method: 'GET', url: `/webhook-endpoints/${id}/attempts` })).json()
          .length === 3,
      5_000,
      'three recorded attempts',
    );
    const attempts = (
      await t!.app.inject({ method: 'GET', url: `/webhook-endpoints/${id}/attempts` })
    ).json();
    expect(attempts.map((a: { status: number }) => a.status)).toEqual([204, 500, 500]);
    expect(new Set(receiver.calls.map((c) => c.headers['webhook-id'])).size).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(receiver.calls).toHaveLength(3);
  });

  it('does not follow redirects: a 3xx is a failed attempt', async () => {
    const target = await startReceiver();
    closers.push(target.close);
    const redirecting = await startReceiver(() => ({
      status: 307,
      headers: { location: target.url },
    }));
    closers.push(redirecting.close);
    await start({ WEBHOOK_MAX_ATTEMPTS: '2' });
    const { id } = (await post('/webhook-endpoints', { url: redirecting.url })).json();
    await createCustomer();
    await waitUntil(() => redirecting.calls.length === 2, 5_000, 'two attempts');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(target.calls).toHaveLength(0);
    const attempts = (
      await t!.app.inject({ method: 'GET', url: `/webhook-endpoints/${id}/attempts` })
    ).json();
    expect(attempts[0]).toMatchObject({ status: 307, error: 'HTTP 307' });
  });

  it('disables an endpoint that answers 410 Gone', async () => {
    const receiver = await startReceiver(() => ({ status: 410 }));
    closers.push(receiver.close);
    await start();
    const { id } = (await post('/webhook-endpoints', { url: receiver.url })).json();
    await createCustomer();
    await waitForDisabled(id);
    await createCustomer('second@example.com');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(receiver.calls).toHaveLength(1);
    const enabled = await t!.app.inject({ method: 'POST', url: `/webhook-endpoints/${id}/enable` });
    expect(enabled.json().status).toBe('active');
  });

  it('disables an endpoint after a long run of failures', async () => {
    const receiver = await startReceiver(() => ({ status: 503 }));
    closers.push(receiver.close);
    await start({ WEBHOOK_DISABLE_AFTER_MS: '300' });
    const { id } = (await post('/webhook-endpoints', { url: receiver.url })).json();
    await createCustomer();
    await waitForDisabled(id);
    const endpoint = (
      await t!.app.inject({ method: 'GET', url: `/webhook-endpoints/${id}` })
    ).json();
    expect(endpoint.disabled_reason).toContain('HTTP 503');
  });

  it('signs with the old and the new secret during a rotation', async () => {
    const receiver = await startReceiver();
    closers.push(receiver.close);
    await start();
    const { id, secret: oldSecret } = (
      await post('/webhook-endpoints', { url: receiver.url })
    ).json();
    const rotated = (
      await t!.app.inject({ method: 'POST', url: `/webhook-endpoints/${id}/rotate-secret` })
    ).json();
    expect(rotated.previous_secret).toBe(oldSecret);
    expect(rotated.secret).not.toBe(oldSecret);
    await createCustomer();
    await waitUntil(() => receiver.calls.length === 1, 5_000, 'the webhook');
    const [call] = receiver.calls;
    expect(String(call!.headers['webhook-signature']).split(' ')).toHaveLength(2);
    for (const secret of [oldSecret, rotated.secret]) {
      expect(() =>
        new Webhook(secret).verify(call!.body, call!.headers as Record<string, string>),
      ).not.toThrow();
    }
  });
});

describe('webhook messages', () => {
  const messages = async (id: string, query = '') =>
    (
      await t!.app.inject({ method: 'GET', url: `/webhook-endpoints/${id}/messages${query}` })
    ).json();
  const replay = (id: string, query = '') =>
    t!.app.inject({ method: 'POST', url: `/webhook-endpoints/${id}/messages/replay${query}` });
  /** The event ids a receiver got, each once however often it was sent. */
  const eventIdsAt = (receiver: { calls: { headers: Record<string, unknown> }[] }) =>
    new Set(receiver.calls.map((call) => String(call.headers['webhook-id'])));

  it('records each message sent in one batch with one attempt and the status its own call got', async () => {
    const statusOf = (call: number) => (call % 2 === 1 ? 202 : 200);
    const receiver = await startReceiver((call) => ({ status: statusOf(call) }));
    closers.push(receiver.close);
    await start();
    const { id } = (await post('/webhook-endpoints', { url: receiver.url })).json();
    await Promise.all(Array.from({ length: 8 }, (_, n) => createCustomer(`batch${n}@example.com`)));
    await waitUntil(
      async () => (await messages(id, '?state=succeeded')).length === 8,
      5_000,
      'every event sent',
    );
    const answered = new Map(
      receiver.calls.map((call, index) => [
        String(call.headers['webhook-id']),
        statusOf(index + 1),
      ]),
    );
    const sent = (await messages(id)) as {
      event_id: string;
      attempts: number;
      last_status: number;
    }[];
    expect(sent.map((message) => message.attempts)).toEqual(Array(8).fill(1));
    expect(new Set(sent.map((message) => message.last_status))).toEqual(new Set([200, 202]));
    for (const message of sent) expect(message.last_status).toBe(answered.get(message.event_id));
  });

  it('lists what the CRM gave up on, and sends it again on replay', async () => {
    let failing = true;
    const receiver = await startReceiver(() => ({ status: failing ? 500 : 200 }));
    closers.push(receiver.close);
    await start({ WEBHOOK_MAX_ATTEMPTS: '2' });
    const { id } = (await post('/webhook-endpoints', { url: receiver.url })).json();
    await createCustomer();
    await waitUntil(
      async () => (await messages(id, '?state=failed')).length === 1,
      5_000,
      'the message to be given up on',
    );
    const [failed] = await messages(id, '?state=failed');
    expect(failed).toMatchObject({ state: 'failed', attempts: 2, last_status: 500 });
    expect(await messages(id, '?state=pending')).toEqual([]);

    failing = false;
    expect((await replay(id)).json()).toEqual({ replayed: 1 });
    await waitUntil(
      async () => (await messages(id, '?state=succeeded')).length === 1,
      5_000,
      'the replayed message to be sent',
    );
    expect(eventIdsAt(receiver)).toEqual(new Set([failed.event_id]));
    expect((await replay(id)).json()).toEqual({ replayed: 0 });
  });

  it('catches a re-enabled endpoint up from where it stopped: what was cancelled and what came meanwhile', async () => {
    let gone = true;
    const receiver = await startReceiver(() => ({ status: gone ? 410 : 200 }));
    closers.push(receiver.close);
    await start();
    const { id } = (await post('/webhook-endpoints', { url: receiver.url })).json();
    await createCustomer('first@example.com');
    await waitForDisabled(id);
    await createCustomer('second@example.com');
    await createCustomer('third@example.com');
    // Replaying a disabled endpoint would send nothing: the answer says to enable it.
    expect(expectProblem(await replay(id), 409).code).toBe('endpoint_disabled');

    gone = false;
    await t!.app.inject({ method: 'POST', url: `/webhook-endpoints/${id}/enable` });
    const events = (await t!.app.inject({ method: 'GET', url: '/events' })).json() as {
      id: string;
    }[];
    await waitUntil(
      async () => (await messages(id, '?state=succeeded')).length === 3,
      5_000,
      'every event sent',
    );
    expect(eventIdsAt(receiver)).toEqual(new Set(events.map((event) => event.id)));
    // Enabling an active endpoint again sends nothing twice.
    await t!.app.inject({ method: 'POST', url: `/webhook-endpoints/${id}/enable` });
    expect(await messages(id)).toHaveLength(3);
  });

  it('answers 404 for an unknown endpoint and 400 for a state it does not have', async () => {
    await start();
    const unknown = '00000000-0000-4000-8000-000000000000';
    expectProblem(
      await t!.app.inject({ method: 'GET', url: `/webhook-endpoints/${unknown}/messages` }),
      404,
    );
    expectProblem(await replay(unknown), 404);
    const { id } = (await post('/webhook-endpoints', { url: 'https://example.com/hooks' })).json();
    expectProblem(
      await t!.app.inject({ method: 'GET', url: `/webhook-endpoints/${id}/messages?state=lost` }),
      400,
    );
    expectProblem(await replay(id, '?state=succeeded'), 400);
  });
});
