import { Compile } from 'typebox/compile';
import {
  CustomerLookupSchema,
  TIMELINE_LIMIT_MAX,
  TimelineSchema,
  type Timeline,
} from '../../contracts/timeline.js';
import type { Command } from 'commander';
import { USAGE_ERROR, type ApiClient } from './api-client.js';

/** A customer id as `mip trace` takes it. */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The id of the customer who has `email`, which the integration service asks the CRM. */
export async function customerIdOfEmail(client: ApiClient, email: string): Promise<string> {
  const found = await client.request(
    'GET',
    `/api/customers/lookup?email=${encodeURIComponent(email)}`,
    { shape: Compile(CustomerLookupSchema) },
  );
  return found.customer_id;
}

/** A customer's whole timeline, read page by page. */
export async function readTimeline(client: ApiClient, customerId: string): Promise<Timeline> {
  const shape = Compile(TimelineSchema);
  const path = `/api/customers/${encodeURIComponent(customerId)}/timeline?limit=${TIMELINE_LIMIT_MAX}`;
  const first = await client.request('GET', path, { shape });
  let page = first;
  while (page.next_after !== null) {
    page = await client.request('GET', `${path}&after=${page.next_after}`, { shape });
    first.entries.push(...page.entries);
  }
  return { ...first, next_after: null };
}

/** The customer id `customer` is, or the id of the customer with that email (asking the CRM). */
export const customerIdOf = async (client: ApiClient, customer: string, command: Command) =>
  UUID.test(customer)
    ? customer.toLowerCase()
    : customer.includes('@')
      ? await customerIdOfEmail(client, customer)
      : command.error(`"${customer}" is neither a customer id (a UUID) nor an email address.`, {
          exitCode: USAGE_ERROR,
        });
