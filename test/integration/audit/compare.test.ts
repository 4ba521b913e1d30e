import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { CustomerState } from '../../../src/contracts/customer-states.js';
import type { PackageRequest } from '../../../src/contracts/package-requests.js';
import {
  driftOf,
  itemsOf,
  pairsOf,
  type CustomerPair,
} from '../../../src/integration/audit/compare.js';

const at = '2026-12-03T09:00:00.000Z';
const live = (id: string, version = 1): CustomerState => ({
  id,
  version,
  deleted_at: null,
  changed_at: at,
  name: `Name v${version}`,
  email: `${id}@example.com`,
});
const deleted = (id: string): CustomerState => ({
  ...live(id, 2),
  deleted_at: at,
  name: null,
  email: null,
});
const request = (
  customerId: string,
  status: PackageRequest['status'] = 'pending',
  version = 1,
): PackageRequest => ({
  id: randomUUID(),
  customer_id: customerId,
  kind: 'welcome_package',
  status,
  recipient_name: status === 'cancelled' ? null : `Name v${version}`,
  recipient_email: status === 'cancelled' ? null : `${customerId}@example.com`,
  customer_version: version,
  created_at: at,
  updated_at: at,
});

/** Pages of the items of `size` ids from a sorted list, as the services answer them. */
const pagesOf =
  <T>(items: T[], idOf: (item: T) => string, size: number) =>
  async (after: string | undefined) => {
    const next = items.filter((item) => after === undefined || idOf(item) > after);
    const ids = [...new Set(next.map(idOf))].slice(0, size);
    return next.filter((item) => ids.includes(idOf(item)));
  };

async function collect(states: CustomerState[], requests: PackageRequest[], size: number) {
  const pairs: CustomerPair[] = [];
  for await (const pair of pairsOf(
    itemsOf(
      pagesOf(states, (s) => s.id, size),
      (s) => s.id,
    ),
    itemsOf(
      pagesOf(requests, (r) => r.customer_id, size),
      (r) => r.customer_id,
    ),
  )) {
    pairs.push(pair);
  }
  return pairs;
}

describe('pairsOf', () => {
  it('meets every customer id either side knows once, in order, whatever the page size', async () => {
    const ids = Array.from({ length: 40 }, () => randomUUID()).sort();
    const states = ids.filter((_, i) => i % 3 !== 0).map((id) => live(id));
    const requests = ids
      .filter((_, i) => i % 4 !== 0)
      .flatMap((id, i) => (i % 5 === 0 ? [request(id), request(id)] : [request(id)]));
    for (const size of [1, 2, 7, 100]) {
      const pairs = await collect(states, requests, size);
      expect(pairs.map((p) => p.customerId)).toEqual(
        ids.filter((_, i) => i % 3 !== 0 || i % 4 !== 0),
      );
      for (const pair of pairs) {
        expect(pair.state?.id ?? pair.customerId).toBe(pair.customerId);
        expect(pair.requests).toEqual(requests.filter((r) => r.customer_id === pair.customerId));
      }
    }
  });
});

describe('driftOf', () => {
  const id = randomUUID();
  const kindOf = (state: CustomerState | undefined, requests: PackageRequest[]) =>
    driftOf({ customerId: id, state, requests })?.kind;

  it('finds nothing where the two agree, whatever is cancelled or shipped', () => {
    expect(kindOf(live(id), [request(id)])).toBeUndefined();
    expect(kindOf(live(id, 3), [request(id, 'shipped', 1)])).toBeUndefined();
    expect(kindOf(deleted(id), [request(id, 'cancelled')])).toBeUndefined();
    expect(kindOf(deleted(id), [])).toBeUndefined();
    expect(kindOf(undefined, [request(id, 'cancelled')])).toBeUndefined();
    // Edited in Inventory under the current version: Inventory's to keep.
    expect(
      kindOf(live(id, 2), [{ ...request(id, 'pending', 2), recipient_name: 'Edited' }]),
    ).toBeUndefined();
  });

  it('names each kind of drift', () => {
    expect(kindOf(live(id), [])).toBe('missing_package');
    expect(kindOf(live(id), [request(id, 'cancelled')])).toBe('missing_package');
    expect(kindOf(live(id), [request(id), request(id, 'shipped')])).toBe('duplicate_packages');
    expect(kindOf(live(id, 2), [request(id, 'pending', 1)])).toBe('stale_recipient');
    expect(kindOf(deleted(id), [request(id)])).toBe('pending_after_deletion');
    expect(kindOf(undefined, [request(id, 'shipped')])).toBe('unknown_customer');
  });
});
