import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { CrmTables } from '../../src/crm/migrations.js';
import type { IntegrationTables } from '../../src/integration/migrations.js';
import type { InventoryTables } from '../../src/inventory/migrations.js';
import { AMQP_URL, closeBrokerConnections, countDeadLettered, deleteTopology } from './amqp.js';
import { createTestDatabase, type TestDatabase } from './databases.js';
import { FaultProxy } from './fault-proxy.js';
import { packageRequestsByCustomer } from './platform.js';
import { freePort, sleep } from './processes.js';
import { ManagedProcess } from './managed-process.js';
import type { Counts } from './scenario-report.js';

export { sleep };

export type SyncMode = 'poll' | 'webhook' | 'amqp' | 'hybrid';
export const SYNC_MODES: readonly SyncMode[] = ['poll', 'webhook', 'amqp', 'hybrid'];

/** `CHAOS_SCALE=full` (npm run chaos) runs issue 8's sizes; the default is CI's reduced battery. */
export const FULL_SCALE = process.env.CHAOS_SCALE === 'full';

/** Picks the reduced or the full figure. */
export const scaled = <T>(reduced: T, full: T): T => (FULL_SCALE ? full : reduced);

export interface ChaosPlatformOptions {
  mode: SyncMode;
  /** Seeds the fault proxy. */
  seed: number;
  /** Integration instances sharing one database. Default 1. */
  instances?: number;
  /** Extra environment for the integration instances. */
  integrationEnv?: Record<string, string>;
  /** Extra environment for the CRM (e.g. its webhook sender's settings). */
  crmEnv?: Record<string, string>;
}

/**
 * The three services as separate processes on their own test databases, a fault proxy in front of
 * Inventory, and (amqp mode) a private set of RabbitMQ exchanges and queues. Outcomes are counted
 * from the databases, never from logs.
 */
export class ChaosPlatform {
  readonly proxy: FaultProxy;
  readonly instances: ManagedProcess[] = [];

  private constructor(
    readonly mode: SyncMode,
    readonly crm: ManagedProcess,
    readonly inventory: ManagedProcess,
    /** The test's own connections to each service's database, to count outcomes in. */
    readonly databases: {
      crm: TestDatabase<CrmTables>;
      inventory: TestDatabase<InventoryTables>;
      integration: TestDatabase<IntegrationTables>;
    },
    proxy: FaultProxy,
    private readonly amqpPrefix: string | undefined,
    private readonly integrationEnvironment: Record<string, string>,
  ) {
    this.proxy = proxy;
  }

  static async start(options: ChaosPlatformOptions): Promise<ChaosPlatform> {
    const databases = {
      crm: await createTestDatabase<CrmTables>('crm'),
      inventory: await createTestDatabase<InventoryTables>('inventory'),
      integration: await createTestDatabase<IntegrationTables>('integration'),
    };
    const amqpPrefix = options.mode === 'amqp' ? `chaos-${randomUUID().slice(0, 8)}.` : undefined;
    const amqp: Record<string, string> = amqpPrefix
      ? { AMQP_URL, AMQP_NAME_PREFIX: amqpPrefix }
      : {};
    const crm = new ManagedProcess('crm/main.js', 'CRM_PORT', await freePort(), {
      ...databases.crm.env,
      ...amqp,
      // A compressed webhook retry schedule, so outages are ridden out within the test.
      WEBHOOK_RETRY_BASE_MS: '50',
      WEBHOOK_RETRY_MAX_DELAY_MS: '1000',
      WEBHOOK_MAX_ATTEMPTS: '100',
      WEBHOOK_TIMEOUT_MS: '2000',
      ...options.crmEnv,
    });
    const inventory = new ManagedProcess(
      'inventory/main.js',
      'INVENTORY_PORT',
      await freePort(),
      databases.inventory.env,
    );
    await Promise.all([crm.start(), inventory.start()]);
    const proxy = new FaultProxy(inventory.url, options.seed);
    const proxyUrl = await proxy.start();
    const platform = new ChaosPlatform(options.mode, crm, inventory, databases, proxy, amqpPrefix, {
      ...databases.integration.env,
      ...amqp,
      SYNC_MODE: options.mode,
      CRM_URL: crm.url,
      INVENTORY_URL: proxyUrl,
      POLL_INTERVAL_MS: '1000',
      RETRY_BASE_MS: '50',
      RETRY_MAX_DELAY_MS: '1000',
      CIRCUIT_RESET_MS: '500',
      REQUEST_TIMEOUT_MS: '1000',
      LEASE_MS: '2000',
      ...options.integrationEnv,
    });
    for (let i = 0; i < (options.instances ?? 1); i += 1) await platform.addInstance();
    if (options.mode === 'webhook' || options.mode === 'hybrid') {
      // Webhooks carry only events after the subscription: wait for it before creating customers.
      await platform.waitUntil(async () => {
        const endpoints = (await (await fetch(`${crm.url}/webhook-endpoints`)).json()) as {
          status: string;
        }[];
        return endpoints.some((endpoint) => endpoint.status === 'active');
      }, 'the webhook subscription');
    }
    return platform;
  }

  async waitUntil(check: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(50);
    }
  }

  /** Starts one more integration instance on the shared database. */
  async addInstance(env: Record<string, string> = {}): Promise<ManagedProcess> {
    const instance = new ManagedProcess(
      'integration/main.js',
      'INTEGRATION_PORT',
      await freePort(),
      {
        ...this.integrationEnvironment,
        ...env,
      },
    );
    await instance.start();
    this.instances.push(instance);
    return instance;
  }

  /** Creates `count` customers at about `perSecond`, `concurrency` requests at a time. */
  async createCustomers(
    count: number,
    perSecond: number,
    options: { prefix?: string; retry?: boolean } = {},
  ): Promise<{ ids: string[]; failed: number; cut: number; failures: Record<string, number> }> {
    const prefix = options.prefix ?? `chaos-${randomUUID().slice(0, 8)}`;
    const ids: string[] = [];
    let failed = 0;
    // Why creates failed (an answer's status and code, or the network error), for the report.
    const failures: Record<string, number> = {};
    const noteFailure = (reason: string) => (failures[reason] = (failures[reason] ?? 0) + 1);
    // Creates the CRM carried out whose answer never reached the client: found out when the
    // retry of a failed call answers 409 (the email is taken, by that very call). A call that
    // failed before the CRM read it (a refused connection, an idle keep-alive connection closed
    // under it) is simply retried and is not counted.
    let cut = 0;
    const started = performance.now();
    const inFlight = new Set<Promise<void>>();
    for (let i = 0; i < count; i += 1) {
      const dueAt = (i / perSecond) * 1000;
      const wait = dueAt - (performance.now() - started);
      if (wait > 0) await sleep(wait);
      const create = (async () => {
        for (let attempt = 0; ; attempt += 1) {
          try {
            const response = await fetch(`${this.crm.url}/customers`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ name: `Chaos ${i}`, email: `${prefix}-${i}@example.com` }),
            });
            const body = (await response.json()) as { id?: string; code?: string };
            if (response.status === 201 && body.id) {
              ids.push(body.id);
              return;
            }
            // 409: an earlier attempt's answer was lost after the CRM created the customer.
            if (response.status === 409 && attempt > 0) {
              cut += 1;
              return;
            }
            noteFailure(`${response.status} ${body.code ?? ''}`.trim());
          } catch (error) {
            // Down, or the connection dropped: retried below when asked to.
            const cause = (error as { cause?: { code?: string } }).cause;
            noteFailure(cause?.code ?? (error as Error).message);
          }
          if (!options.retry || attempt > 200) {
            failed += 1;
            return;
          }
          await sleep(200);
        }
      })();
      inFlight.add(create);
      void create.finally(() => inFlight.delete(create));
    }
    await Promise.all(inFlight);
    return { ids, failed, cut, failures };
  }

  /**
   * Makes RabbitMQ drop this platform's connections (the CRM's relay, the integration's consumer),
   * as a broker restart or a network cut would; answers how many it closed (0 outside amqp mode).
   */
  killBrokerConnections(): Promise<number> {
    return this.amqpPrefix ? closeBrokerConnections(this.amqpPrefix) : Promise.resolve(0);
  }

  /** Package requests per customer, read from Inventory's own database. */
  packageRequestsByCustomer(): Promise<Map<string, number>> {
    return packageRequestsByCustomer({ database: this.databases.inventory });
  }

  /** Every customer the CRM holds, from its own database. */
  async customerIds(): Promise<string[]> {
    const rows = await this.databases.crm.db.selectFrom('customers').select('id').execute();
    return rows.map((row) => row.id);
  }

  async deliveryStates(): Promise<Record<string, number>> {
    return this.countDeliveriesBy('state');
  }

  /**
   * Takes the integration database away from the service for `ms`: a transaction here holds its
   * tables (SQLite: the write lock, so the service's writes fail busy; PostgreSQL: an exclusive
   * lock on the table of deliveries, so its writes and claims wait).
   */
  async holdIntegrationDatabase(ms: number): Promise<void> {
    const { db, dialect } = this.databases.integration;
    await db.connection().execute(async (connection) => {
      await sql`begin ${sql.raw(dialect === 'sqlite' ? 'exclusive' : '')}`.execute(connection);
      try {
        if (dialect === 'postgres') {
          // One table, so no lock order with the service's transactions can deadlock. EXCLUSIVE,
          // not ACCESS EXCLUSIVE: that one is WAL-logged, which gives this transaction an id,
          // and a running transaction id holds back feed readers of every CRM on the server.
          await sql`lock table deliveries in exclusive mode`.execute(connection);
        }
        await sleep(ms);
      } finally {
        await sql`rollback`.execute(connection);
      }
    });
  }

  /** Messages RabbitMQ has dead-lettered (amqp mode), out of the platform's sight. */
  async brokerDeadLetters(): Promise<number> {
    return this.amqpPrefix ? countDeadLettered(this.amqpPrefix) : 0;
  }

  /** Deliveries by the source that recorded them first (`webhook`, `reconcile`, …). */
  async deliverySources(): Promise<Record<string, number>> {
    return this.countDeliveriesBy('source');
  }

  private async countDeliveriesBy(column: 'state' | 'source'): Promise<Record<string, number>> {
    const rows = await this.databases.integration.db
      .selectFrom('deliveries')
      .select(column)
      .execute();
    const counts: Record<string, number> = {};
    for (const row of rows) {
      const key = row[column as keyof typeof row] as string;
      counts[key] = (counts[key] ?? 0) + 1;
    }
    return counts;
  }

  /** Deliveries `instanceId` has claimed and not yet settled. */
  async claimedBy(instanceId: string): Promise<number> {
    const rows = await this.databases.integration.db
      .selectFrom('deliveries')
      .select('customer_id')
      .where('state', '=', 'delivering')
      .where('locked_by', '=', instanceId)
      .execute();
    return rows.length;
  }

  /** Waits until every CRM customer has a package request; answers the ms it took, or null. */
  async waitForAll(timeoutMs: number): Promise<number | null> {
    const started = performance.now();
    for (;;) {
      const expected = (await this.customerIds()).length;
      const have = (await this.packageRequestsByCustomer()).size;
      const states = await this.deliveryStates();
      if (have >= expected && (states.delivered ?? 0) + (states.dead ?? 0) >= expected) {
        return performance.now() - started;
      }
      if (performance.now() - started > timeoutMs) return null;
      await sleep(200);
    }
  }

  /** The outcome counts, from the three databases. */
  async outcome(): Promise<Counts> {
    const ids = await this.customerIds();
    const requests = await this.packageRequestsByCustomer();
    const states = await this.deliveryStates();
    let duplicates = 0;
    let missing = 0;
    for (const id of ids) {
      const n = requests.get(id) ?? 0;
      if (n === 0) missing += 1;
      if (n > 1) duplicates += n - 1;
    }
    const known = new Set(ids);
    const strays = [...requests.keys()].filter((id) => !known.has(id)).length;
    return {
      created: ids.length,
      delivered: ids.length - missing,
      duplicates,
      missing,
      strays,
      dead_letters: states.dead ?? 0,
    };
  }

  /**
   * Stops every process with SIGTERM, as an operator would: each closes its database (on SQLite
   * the last connection to close checkpoints the write-ahead log). Answers the exit codes.
   */
  async stopGracefully(): Promise<(number | null)[]> {
    const instances = await Promise.all(this.instances.map((instance) => instance.stop('SIGTERM')));
    return [...instances, await this.crm.stop('SIGTERM'), await this.inventory.stop('SIGTERM')];
  }

  async stop(): Promise<void> {
    await Promise.all(this.instances.map((instance) => instance.stop('SIGKILL')));
    await Promise.all([this.crm.stop('SIGKILL'), this.inventory.stop('SIGKILL')]);
    await this.proxy.stop();
    for (const database of Object.values(this.databases)) await database.drop();
    if (this.amqpPrefix) await deleteTopology(this.amqpPrefix);
  }
}
