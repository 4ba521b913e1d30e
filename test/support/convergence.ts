/**
 * Whether Inventory matches the CRM, counted in their databases: each live customer has one
 * package that is not cancelled, with the CRM's latest name, email and version (or one that
 * shipped before the latest change); no deleted customer has a pending package.
 */
import type { ChaosPlatform } from './chaos.js';
import { sleep } from './processes.js';

export interface ConvergenceCounts {
  /** Customers the CRM holds. */
  live: number;
  /** Customers the CRM deleted (its tombstones). */
  deleted: number;
  /** Live customers whose package matches, and deleted ones with none pending. */
  converged: number;
  /** Live customers with no package that is not cancelled. */
  missing: number;
  /** Live customers whose pending package holds another name, email or version than the CRM. */
  stale: number;
  /** Live customers whose shipped package claims a newer version than the CRM has. */
  shipped_ahead: number;
  /** Deleted customers whose package is still pending. */
  pending_after_delete: number;
  /** Packages beyond the first of a customer. */
  duplicates: number;
  /** Packages for customers the CRM never had. */
  strays: number;
  /** Packages shipped by the warehouse. */
  shipped: number;
  /** Packages cancelled (their customers deleted). */
  cancelled: number;
  dead_letters: number;
  /** The integration's deliveries not yet settled (pending, delivering, retrying). */
  unsettled: number;
  /** Customers not converged yet (the first few), to explain a failure. */
  examples: string[];
}

/** The customers whose package shipped: it keeps its recipient as the shipping record. */
export async function shippedCustomers(platform: ChaosPlatform): Promise<Set<string>> {
  const rows = await platform.databases.inventory.db
    .selectFrom('package_requests')
    .select('customer_id')
    .where('status', '=', 'shipped')
    .execute();
  return new Set(rows.map((row) => row.customer_id));
}

export async function countConvergence(platform: ChaosPlatform): Promise<ConvergenceCounts> {
  const { crm, inventory, integration } = platform.databases;
  const customers = await crm.db
    .selectFrom('customers')
    .select(['id', 'name', 'email', 'version'])
    .execute();
  const tombstones = await crm.db.selectFrom('customer_tombstones').select('id').execute();
  const packages = await inventory.db
    .selectFrom('package_requests')
    .select(['customer_id', 'status', 'recipient_name', 'recipient_email', 'customer_version'])
    .execute();
  const deliveries = await integration.db
    .selectFrom('deliveries')
    .select(['customer_id', 'state'])
    .execute();

  const packagesOf = new Map<string, typeof packages>();
  for (const row of packages) {
    packagesOf.set(row.customer_id, [...(packagesOf.get(row.customer_id) ?? []), row]);
  }
  const counts: ConvergenceCounts = {
    live: customers.length,
    deleted: tombstones.length,
    converged: 0,
    missing: 0,
    stale: 0,
    shipped_ahead: 0,
    pending_after_delete: 0,
    duplicates: 0,
    strays: 0,
    shipped: packages.filter((row) => row.status === 'shipped').length,
    cancelled: packages.filter((row) => row.status === 'cancelled').length,
    dead_letters: deliveries.filter((row) => row.state === 'dead').length,
    unsettled: 0,
    examples: [],
  };
  const example = (id: string) => {
    if (counts.examples.length < 5 && !counts.examples.includes(id)) counts.examples.push(id);
  };
  for (const row of deliveries) {
    if (row.state === 'delivered' || row.state === 'dead') continue;
    counts.unsettled += 1;
    example(row.customer_id);
  }
  for (const list of packagesOf.values()) counts.duplicates += Math.max(0, list.length - 1);
  for (const customer of customers) {
    const open = (packagesOf.get(customer.id) ?? []).filter((row) => row.status !== 'cancelled');
    const [package_] = open;
    // bigint on PostgreSQL may come back as a string.
    const version = Number(package_?.customer_version ?? 1);
    if (!package_) counts.missing += 1;
    else if (package_.status === 'shipped' && version > Number(customer.version)) {
      counts.shipped_ahead += 1;
    } else if (
      package_.status === 'pending' &&
      (package_.recipient_name !== customer.name ||
        package_.recipient_email !== customer.email ||
        version !== Number(customer.version))
    ) {
      counts.stale += 1;
    } else if (open.length === 1) {
      counts.converged += 1;
      continue;
    }
    example(customer.id);
  }
  for (const { id } of tombstones) {
    const pending = (packagesOf.get(id) ?? []).some((row) => row.status === 'pending');
    if (!pending) {
      counts.converged += 1;
      continue;
    }
    counts.pending_after_delete += 1;
    example(id);
  }
  const known = new Set([...customers.map((c) => c.id), ...tombstones.map((t) => t.id)]);
  counts.strays = [...packagesOf.keys()].filter((id) => !known.has(id)).length;
  return counts;
}

/** Whether Inventory holds a package for the customer. */
export async function hasPackage(platform: ChaosPlatform, customerId: string): Promise<boolean> {
  const row = await platform.databases.inventory.db
    .selectFrom('package_requests')
    .select('id')
    .where('customer_id', '=', customerId)
    .executeTakeFirst();
  return row !== undefined;
}

/**
 * What the three databases hold of each customer, one line each: the CRM's state (or its
 * tombstone), its packages, and the integration's delivery. For a failure's message.
 */
export async function describeCustomers(platform: ChaosPlatform, ids: string[]): Promise<string> {
  if (ids.length === 0) return '';
  const { crm, inventory, integration } = platform.databases;
  const lines: string[] = [];
  for (const id of ids) {
    const customer =
      (await crm.db
        .selectFrom('customers')
        .select(['name', 'email', 'version'])
        .where('id', '=', id)
        .executeTakeFirst()) ??
      (await crm.db
        .selectFrom('customer_tombstones')
        .select(['version', 'deleted_at'])
        .where('id', '=', id)
        .executeTakeFirst());
    const packages = await inventory.db
      .selectFrom('package_requests')
      .select(['id', 'status', 'recipient_name', 'recipient_email', 'customer_version'])
      .where('customer_id', '=', id)
      .execute();
    const delivery = await integration.db
      .selectFrom('deliveries')
      .select([
        'state',
        'customer_version',
        'customer_deleted_at',
        'applied_version',
        'operation',
        'outcome',
        'package_request_id',
        'create_tried',
        'attempts',
        'last_error',
        'source',
      ])
      .where('customer_id', '=', id)
      .executeTakeFirst();
    lines.push(
      `${id}: crm ${JSON.stringify(customer)}; inventory ${JSON.stringify(packages)}; delivery ${JSON.stringify(delivery)}`,
    );
  }
  return lines.join('\n');
}

/** Whether nothing is left to do: every count that must be 0 is. */
export const isConverged = (counts: ConvergenceCounts): boolean =>
  counts.missing +
    counts.stale +
    counts.shipped_ahead +
    counts.pending_after_delete +
    counts.duplicates +
    counts.strays +
    counts.unsettled ===
  0;

/** Waits until Inventory matches the CRM; answers the ms it took (null past `boundMs`). */
export async function waitUntilConverged(
  platform: ChaosPlatform,
  boundMs: number,
): Promise<number | null> {
  const started = performance.now();
  while (!isConverged(await countConvergence(platform))) {
    if (performance.now() - started > boundMs) return null;
    await sleep(250);
  }
  return performance.now() - started;
}

/**
 * The warehouse: while `goesOn()`, ships a pending package now and then, straight at Inventory (no
 * fault proxy), at most `limit` in all; a package cancelled meanwhile answers 409, ignored.
 * Answers how many it shipped.
 */
export async function runWarehouse(
  platform: ChaosPlatform,
  random: () => number,
  limit: number,
  goesOn: () => boolean,
): Promise<number> {
  let shipped = 0;
  while (goesOn() && shipped < limit) {
    await sleep(100 + Math.floor(random() * 300));
    const pending = await platform.databases.inventory.db
      .selectFrom('package_requests')
      .select('id')
      .where('status', '=', 'pending')
      .execute();
    const chosen = pending[Math.floor(random() * pending.length)];
    if (!chosen) continue;
    const answer = await fetch(`${platform.inventory.url}/package-requests/${chosen.id}/ship`, {
      method: 'POST',
    }).catch(() => undefined);
    await answer?.arrayBuffer();
    if (answer?.status === 200) shipped += 1;
  }
  return shipped;
}
