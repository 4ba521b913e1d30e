import { afterEach, describe, expect, it } from 'vitest';
import type { Kysely } from 'kysely';
import type { IntegrationTables } from '../../src/integration/migrations.js';
import { createTestDatabase, postgresUrlFor, type TestDatabase } from '../support/databases.js';
import { seededRandom } from '../support/fault-proxy.js';
import {
  createCustomers,
  integrationEnv,
  packageRequestsByCustomer,
  startUpstreams,
  waitUntil,
  type Upstreams,
} from '../support/platform.js';
import { startServiceProcess, type ServiceProcess } from '../support/processes.js';

// Counts are read from the databases at the end, never from logs.
let upstreams: Upstreams | undefined;
let database: TestDatabase<IntegrationTables> | undefined;
const processes = new Set<ServiceProcess>();

afterEach(async () => {
  await Promise.all([...processes].map((p) => p.stop('SIGKILL')));
  processes.clear();
  await database?.drop();
  await upstreams?.close();
  database = undefined;
  upstreams = undefined;
});

async function startInstance(env: Record<string, string>): Promise<ServiceProcess> {
  const instance = await startServiceProcess('integration/main.js', env);
  processes.add(instance);
  return instance;
}

async function deliveryStates(db: Kysely<IntegrationTables>) {
  const rows = await db.selectFrom('deliveries').select(['state']).execute();
  const counts: Record<string, number> = {};
  for (const row of rows) counts[row.state] = (counts[row.state] ?? 0) + 1;
  return counts;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('crash safety', () => {
  it('delivers exactly 1,000 package requests while Inventory fails 30% of calls and the integration process is SIGKILLed every ~2 s', async () => {
    const seed = Number(process.env.CHAOS_SEED ?? 20261127);
    const random = seededRandom(seed);
    upstreams = await startUpstreams(seed);
    upstreams.proxy.plan = {
      rate: 0.3,
      kinds: ['status_503', 'status_429', 'reset', 'commit_then_drop'],
      retryAfterSeconds: 0,
    };
    database = await createTestDatabase<IntegrationTables>('integration');
    const env = {
      ...database.env,
      ...integrationEnv(upstreams),
      INTEGRATION_PORT: '0',
    };

    let instance = await startInstance(env);
    let creating = true;
    const created = (async () => {
      const ids: string[] = [];
      // About 100 customers a second, so kills land while customers are still arriving.
      for (let batch = 0; batch < 50; batch += 1) {
        ids.push(...(await createCustomers(upstreams!.crmUrl, 20, { prefix: `crash${batch}` })));
        await sleep(150);
      }
      creating = false;
      return ids;
    })();

    let kills = 0;
    const expected = 1000;
    const inventoryCount = async () => (await packageRequestsByCustomer(upstreams!.inventory)).size;
    while (creating || ((await inventoryCount()) < expected && kills < 30)) {
      await sleep(1000 + Math.floor(random() * 2000));
      await instance.stop('SIGKILL');
      processes.delete(instance);
      kills += 1;
      instance = await startInstance(env);
    }
    const ids = await created;
    expect(ids).toHaveLength(expected);
    expect(kills).toBeGreaterThanOrEqual(3);

    // Faults stop; the last instance must drain everything.
    upstreams.proxy.plan = { rate: 0, kinds: [] };
    await waitUntil(
      async () => (await inventoryCount()) >= expected,
      90_000,
      'all package requests',
    );
    await waitUntil(
      async () => (await deliveryStates(database!.db)).delivered === expected,
      30_000,
      'every delivery recorded as delivered',
    );

    const requests = await packageRequestsByCustomer(upstreams.inventory);
    const total = [...requests.values()].reduce((a, b) => a + b, 0);
    expect(total).toBe(expected);
    expect(new Set(requests.keys())).toEqual(new Set(ids));
    expect(await deliveryStates(database.db)).toEqual({ delivered: expected });
    // The faults really happened, including answers lost after Inventory committed.
    const outcomes = new Set(upstreams.proxy.calls.map((c) => c.outcome));
    expect(outcomes).toContain('commit_then_drop');
    expect(outcomes).toContain('reset');
  }, 240_000);
});

/** CRM, Inventory and an integration database that several instance processes share. */
async function startPlatformOnSharedDatabase() {
  const platform = (upstreams = await startUpstreams());
  const shared = (database = await createTestDatabase<IntegrationTables>('integration'));
  const env = { ...shared.env, ...integrationEnv(platform), INTEGRATION_PORT: '0' };
  return { env, platform, shared };
}

describe.runIf(postgresUrlFor('integration'))('several instances on one PostgreSQL', () => {
  it('three instances deliver 1,000 customers with no call reaching Inventory twice', async () => {
    const { env, platform, shared } = await startPlatformOnSharedDatabase();
    // One customer per call and two calls in flight per instance: no instance can drain a feed
    // page alone before the others' next look for work, so the claims really contend.
    const contended = { ...env, DELIVERY_BATCH_SIZE: '1', DELIVERY_CONCURRENCY: '2' };
    const instances = await Promise.all([
      startInstance(contended),
      startInstance(contended),
      startInstance(contended),
    ]);
    const ids = await createCustomers(platform.crmUrl, 1000, { concurrency: 8 });
    await waitUntil(
      async () => (await deliveryStates(shared.db)).delivered === 1000,
      90_000,
      '1,000 deliveries',
    );
    const calls = platform.proxy.deliveredCallsByCustomer();
    expect(calls.size).toBe(1000);
    expect([...calls.values()].every((n) => n === 1)).toBe(true);
    expect(new Set((await packageRequestsByCustomer(platform.inventory)).keys())).toEqual(
      new Set(ids),
    );
    // Work was shared: more than one instance made deliveries, and no claim is left behind.
    const busy = instances.filter((i) =>
      i.output().includes('Successfully created package request'),
    );
    expect(busy.length).toBeGreaterThanOrEqual(2);
    const claims = await shared.db.selectFrom('deliveries').select('locked_by').execute();
    expect(claims.every((row) => row.locked_by === null)).toBe(true);
  }, 180_000);

  it('a killed instance’s lease and claims are taken over when they expire', async () => {
    const { env, platform, shared } = await startPlatformOnSharedDatabase();
    const first = await startInstance(env);
    const second = await startInstance(env);
    await createCustomers(platform.crmUrl, 50);
    await waitUntil(
      async () => (await deliveryStates(shared.db)).delivered === 50,
      30_000,
      'first 50',
    );
    // Kill whichever holds the poll lease; the other must take over and deliver what follows.
    const holder = await shared.db.selectFrom('leases').select('holder').executeTakeFirstOrThrow();
    const leader = first.output().includes(holder.holder) ? first : second;
    await leader.stop('SIGKILL');
    processes.delete(leader);
    await createCustomers(platform.crmUrl, 50, { prefix: 'after-kill' });
    await waitUntil(
      async () => (await deliveryStates(shared.db)).delivered === 100,
      30_000,
      'next 50',
    );
    const newHolder = await shared.db
      .selectFrom('leases')
      .select('holder')
      .executeTakeFirstOrThrow();
    expect(newHolder.holder).not.toBe(holder.holder);
  }, 90_000);
});
