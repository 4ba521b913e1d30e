import { expect } from 'vitest';
import type { Customer } from '../../src/contracts/customers.js';
import type { BatchWrites } from '../../src/crm/events.js';
import type { CrmTables } from '../../src/crm/migrations.js';
import type { TestApp } from './apps.js';

/** An event as `GET /events` answers it. */
export interface FeedEvent {
  position: number;
  id: string;
  type: string;
  occurred_at: string;
  data: { id: string; name: string; email: string; created_at: string };
}

/**
 * Creating customers and reading the change feed of the CRM `crm()` answers (read at each call,
 * so it can be the app a `beforeEach` creates).
 */
export function crmFeed(crm: () => TestApp<CrmTables>) {
  const createCustomer = async (i: number) => {
    const response = await crm().app.inject({
      method: 'POST',
      url: '/customers',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ name: `Customer ${i}`, email: `c${i}@example.com` }),
    });
    expect(response.statusCode).toBe(201);
    return response.json() as { id: string; name: string; email: string; created_at: string };
  };

  const readFeed = async (query: string) => {
    const response = await crm().app.inject({ method: 'GET', url: `/events?${query}` });
    expect(response.statusCode).toBe(200);
    return {
      events: response.json() as FeedEvent[],
      link: response.headers.link as string | undefined,
    };
  };

  return { createCustomer, readFeed };
}

/** Writes appended customers as the CRM's create does, for tests that append to the event log. */
export const insertCustomers: BatchWrites<Customer> = async (trx, rows) => {
  await trx
    .insertInto('customers')
    .values(rows.map((row) => ({ ...row, email_normalized: row.email })))
    .execute();
  return rows.map(() => true);
};
