import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { IntegrationTables } from '../../src/integration/migrations.js';
import type { TestApp } from '../support/apps.js';
import { expectProblem } from '../support/apps.js';
import { FaultProxy } from '../support/fault-proxy.js';
import {
  createCustomers,
  packageRequestsByCustomer,
  startIntegration,
  startUpstreams,
  waitUntil,
  type Upstreams,
} from '../support/platform.js';

let upstreams: Upstreams;
let integration: TestApp<IntegrationTables> | undefined;
beforeEach(async () => {
  upstreams = await startUpstreams();
});
afterEach(async () => {
  await integration?.close();
  integration = undefined;
  await upstreams.close();
});

const status = async () =>
  (await integration!.app.inject({ method: 'GET', url: '/api/status' })).json() as {
    cursor: number;
    circuit: string;
    deliveries: Record<string, number>;
    instance_id: string;
    poll: { leader: boolean; lease_holder: string | null; last_success_at: string | null };
  };

const delivered = async () => (await status()).deliveries.delivered;

describe('the integration service in poll mode', () => {
  it('creates exactly one welcome package per new customer, keyed welcome-package:<id>', async () => {
    integration = await startIntegration(upstreams);
    const ids = await createCustomers(upstreams.crmUrl, 40);
    await waitUntil(async () => (await delivered()) === 40, 15_000, '40 deliveries');
    const requests = await packageRequestsByCustomer(upstreams.inventory);
    expect([...requests.keys()].sort()).toEqual([...ids].sort());
    expect([...requests.values()].every((n) => n === 1)).toBe(true);
    // Each customer was sent once (alone or in a batch), under its own idempotency key.
    const sent = upstreams.proxy.calls.filter((c) => c.method === 'POST').flatMap((c) => c.items);
    expect(sent).toHaveLength(40);
    expect(sent.every((i) => i.idempotencyKey === `welcome-package:${i.customerId}`)).toBe(true);
    const s = await status();
    expect(s.cursor).toBeGreaterThanOrEqual(40);
    expect(s.poll.leader).toBe(true);
    expect(s.poll.lease_holder).toBe(s.instance_id);
    expect(s.poll.last_success_at).not.toBeNull();
    const metrics = (await integration.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(
      /integration_customers_seen_total\{source="poll",service="integration"\} 40/,
    );
    expect(metrics).toMatch(
      /integration_deliveries_total\{[^}]*operation="create",outcome="created"[^}]*\} 40/,
    );
    expect(metrics).toMatch(
      /integration_end_to_end_lag_seconds_count\{[^}]*operation="create"[^}]*\} 40/,
    );
    expect(metrics).toMatch(/integration_deliveries\{state="delivered",service="integration"\} 40/);
  });

  it("applies a customer's change and deletion read from the feed to its one package", async () => {
    integration = await startIntegration(upstreams);
    const [id] = await createCustomers(upstreams.crmUrl, 1);
    const { db } = upstreams.inventory.database;
    const packageOf = () =>
      db.selectFrom('package_requests').selectAll().where('customer_id', '=', id!).execute();
    await waitUntil(async () => (await packageOf()).length === 1, 10_000, 'the package');
    const changed = await fetch(`${upstreams.crmUrl}/customers/${id}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'changed@example.com' }),
    });
    expect(changed.status).toBe(200);
    await waitUntil(
      async () => (await packageOf())[0]?.recipient_email === 'changed@example.com',
      10_000,
      'the recipient changed',
    );
    expect(await packageOf()).toMatchObject([{ customer_version: 2, status: 'pending' }]);
    const deleted = await fetch(`${upstreams.crmUrl}/customers/${id}`, { method: 'DELETE' });
    expect(deleted.status).toBe(204);
    await waitUntil(
      async () => (await packageOf())[0]?.status === 'cancelled',
      10_000,
      'the package cancelled',
    );
    await waitUntil(async () => (await status()).cursor === 3, 10_000, 'the cursor past both');
    const delivery = (await integration.app.inject({ method: 'GET', url: '/api/deliveries' }))
      .json<{ customer_id: string }[]>()
      .find((row) => row.customer_id === id);
    expect(delivery).toMatchObject({
      state: 'delivered',
      operation: 'cancel',
      outcome: 'cancelled',
      customer_version: 3,
      customer_deleted: true,
      customer_name: '',
    });
    expect((await packageRequestsByCustomer(upstreams.inventory)).get(id!)).toBe(1);
  });

  it("refuses a deleted customer's create that reaches Inventory after the deletion was handled", async () => {
    integration = await startIntegration(upstreams);
    // The create is held on the wire (past the integration's timeout) until let go.
    let letGo!: () => void;
    const held = new Promise<void>((resolve) => (letGo = resolve));
    upstreams.proxy.plan = { rate: 1, kinds: ['delay'], delayUntil: held };
    const [id] = await createCustomers(upstreams.crmUrl, 1);
    await waitUntil(() => upstreams.proxy.calls.length > 0, 10_000, 'the create on the wire');
    upstreams.proxy.plan = { rate: 0, kinds: [] };
    const deleted = await fetch(`${upstreams.crmUrl}/customers/${id}`, { method: 'DELETE' });
    expect(deleted.status).toBe(204);
    // The deletion is handled while the create is still on its way.
    await waitUntil(async () => (await delivered()) === 1, 10_000, 'the deletion delivered');
    letGo();
    const [create] = upstreams.proxy.calls;
    await waitUntil(() => create!.status !== undefined, 10_000, 'the held create answered');
    // Refused: its key was taken by the fence, whose package (nothing personal) was cancelled.
    expect(create!.status).toBe(422);
    const packages = await upstreams.inventory.database.db
      .selectFrom('package_requests')
      .select(['status', 'recipient_name', 'recipient_email'])
      .where('customer_id', '=', id!)
      .execute();
    expect(packages).toEqual([
      { status: 'cancelled', recipient_name: null, recipient_email: null },
    ]);
  });

  it('picks up customers created before it started, from the start of the feed', async () => {
    const ids = await createCustomers(upstreams.crmUrl, 15);
    integration = await startIntegration(upstreams);
    await waitUntil(async () => (await delivered()) === 15, 15_000, '15 deliveries');
    expect((await packageRequestsByCustomer(upstreams.inventory)).size).toBe(ids.length);
  });

  it('rides out resets, 503s, 429s and lost answers with no duplicate and no dead letter', async () => {
    upstreams.proxy.plan = {
      rate: 0.5,
      kinds: ['status_503', 'status_429', 'reset', 'commit_then_drop'],
      retryAfterSeconds: 0,
    };
    integration = await startIntegration(upstreams);
    const ids = await createCustomers(upstreams.crmUrl, 60);
    await waitUntil(async () => (await delivered()) === 60, 30_000, '60 deliveries through faults');
    const requests = await packageRequestsByCustomer(upstreams.inventory);
    expect(requests.size).toBe(60);
    expect([...requests.values()].every((n) => n === 1)).toBe(true);
    expect(new Set(ids)).toEqual(new Set(requests.keys()));
    expect((await status()).deliveries.dead).toBe(0);
    // Some calls were answered by a replay of the first answer (the lost-answer case).
    expect(upstreams.proxy.calls.some((c) => c.outcome === 'commit_then_drop')).toBe(true);
  });

  it('waits at least Retry-After before calling again', async () => {
    let first = true;
    upstreams.proxy.answer = () => {
      if (!first) return undefined;
      first = false;
      return { status: 429, body: { detail: 'slow down' }, headers: { 'retry-after': '2' } };
    };
    integration = await startIntegration(upstreams);
    const [id] = await createCustomers(upstreams.crmUrl, 1);
    await waitUntil(async () => (await delivered()) === 1, 15_000, 'the delivery');
    const calls = upstreams.proxy.calls.filter((c) => c.customerId === id);
    expect(calls).toHaveLength(2);
    expect(calls[1]!.at - calls[0]!.at).toBeGreaterThanOrEqual(2_000);
  });

  it('reads the CRM feed again only after a Retry-After the CRM sent (its rate limit)', async () => {
    const crmProxy = new FaultProxy(upstreams.crmUrl);
    const crmProxyUrl = await crmProxy.start();
    try {
      let refused = false;
      crmProxy.answer = (call) => {
        if (refused || !call.path.startsWith('/events')) return undefined;
        refused = true;
        return {
          status: 429,
          body: { title: 'Too Many Requests', status: 429, code: 'rate_limited' },
          headers: { 'retry-after': '2' },
        };
      };
      integration = await startIntegration(upstreams, { CRM_URL: crmProxyUrl });
      await createCustomers(upstreams.crmUrl, 3);
      await waitUntil(async () => (await delivered()) === 3, 15_000, '3 deliveries');
      const reads = crmProxy.calls.filter((c) => c.path.startsWith('/events'));
      expect(reads[0]!.status).toBe(429);
      expect(reads[1]!.at - reads[0]!.at).toBeGreaterThanOrEqual(2_000);
    } finally {
      await crmProxy.stop();
    }
  });

  it('opens the circuit while Inventory fails, stops calling it, and recovers', async () => {
    upstreams.proxy.plan = { rate: 1, kinds: ['status_503'] };
    integration = await startIntegration(upstreams, { CIRCUIT_RESET_MS: '1000' });
    await createCustomers(upstreams.crmUrl, 20);
    await waitUntil(async () => (await status()).circuit === 'open', 15_000, 'the circuit to open');
    // While open, only a probe per reset period (1 s) gets through, instead of a call per retry
    // of each of the 20 deliveries. Calls already in flight when it opened are let finish first.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const before = upstreams.proxy.calls.length;
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(upstreams.proxy.calls.length - before).toBeLessThanOrEqual(4);
    upstreams.proxy.plan = { rate: 0, kinds: [] };
    await waitUntil(async () => (await delivered()) === 20, 20_000, 'recovery');
    expect((await status()).circuit).toBe('closed');
    expect((await status()).deliveries.dead).toBe(0);
    expect((await packageRequestsByCustomer(upstreams.inventory)).size).toBe(20);
  });

  it('dead-letters a permanent 422 after one attempt; a replay after the fix delivers it once', async () => {
    let poisoned: string | undefined;
    upstreams.proxy.answer = (call) =>
      call.customerId === poisoned
        ? { status: 422, body: { detail: 'customer is blocked', code: 'blocked' } }
        : undefined;
    const [healthy] = await createCustomers(upstreams.crmUrl, 1, { prefix: 'healthy' });
    const [poison] = await createCustomers(upstreams.crmUrl, 1, { prefix: 'poison' });
    poisoned = poison;
    integration = await startIntegration(upstreams);
    await waitUntil(
      async () => {
        const s = await status();
        return s.deliveries.dead === 1 && s.deliveries.delivered === 1;
      },
      15_000,
      'one delivery and one dead letter',
    );
    expect((await packageRequestsByCustomer(upstreams.inventory)).get(healthy!)).toBe(1);
    const poisonItems = upstreams.proxy.calls.flatMap((c) => c.items);
    expect(poisonItems.filter((i) => i.customerId === poison)).toHaveLength(1);
    const list = await integration.app.inject({ method: 'GET', url: '/api/dead-letters' });
    const letters = list.json() as {
      customer_id: string;
      attempts: number;
      last_status: number;
      last_error: string;
    }[];
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({ customer_id: poison, attempts: 1, last_status: 422 });
    expect(letters[0]!.last_error).toContain('customer is blocked');

    poisoned = undefined; // the cause is fixed
    const replay = await integration.app.inject({
      method: 'POST',
      url: `/api/dead-letters/${poison}/replay`,
    });
    expect(replay.statusCode).toBe(200);
    const again = await integration.app.inject({
      method: 'POST',
      url: `/api/dead-letters/${poison}/replay`,
    });
    expect(expectProblem(again, 409).code).toBe('not_a_dead_letter');
    await waitUntil(async () => (await delivered()) === 2, 15_000, 'the replayed delivery');
    expect((await packageRequestsByCustomer(upstreams.inventory)).get(poison!)).toBe(1);
    const all = await integration.app.inject({ method: 'POST', url: '/api/dead-letters/replay' });
    expect(all.json()).toEqual({ matched: 0, replayed: 0, dry_run: false });
  });
});
