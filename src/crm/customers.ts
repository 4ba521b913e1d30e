import { newId } from '../core/ids.js';
import type { Insertable, Kysely, Selectable } from 'kysely';
import { toIsoString } from '../core/db.js';
import { HttpProblem } from '../core/errors.js';
import { readPage, type Page, type PageRequest } from '../core/pagination.js';
import type { Customer, NewCustomer } from '../contracts/customers.js';
import { CUSTOMER_CREATED } from '../contracts/customer-events.js';
import type { BatchWrites, EventLog } from './events.js';
import type { CrmTables } from './migrations.js';

type CustomerRow = Selectable<CrmTables['customers']>;

/**
 * Inserts a batch of new customers in one statement, leaving out each whose email is taken
 * (also by one earlier in the batch); answers which were inserted.
 */
const insertCustomers: BatchWrites<Insertable<CrmTables['customers']>> = async (trx, rows) => {
  const inserted = await trx
    .insertInto('customers')
    .values([...rows])
    .onConflict((conflict) => conflict.column('email_normalized').doNothing())
    .returning('id')
    .execute();
  const insertedIds = new Set(inserted.map((row) => row.id));
  return rows.map((row) => insertedIds.has(row.id));
};

function toCustomer(row: Pick<CustomerRow, 'id' | 'name' | 'email' | 'created_at'>): Customer {
  return { id: row.id, name: row.name, email: row.email, created_at: toIsoString(row.created_at) };
}

/** Reads and writes the CRM's customers table. */
export class CustomerStore {
  constructor(
    private readonly db: Kysely<CrmTables>,
    private readonly events: EventLog,
  ) {}

  /** Creates the customer and its event; `traceparent` is kept with the event for its consumers. */
  async create(input: NewCustomer, traceparent?: string): Promise<Customer> {
    const customer: Customer = {
      id: newId(),
      name: input.name,
      email: input.email,
      created_at: new Date().toISOString(),
    };
    // The customer and its event commit together (transactional outbox): no event without a
    // customer, no customer without an event.
    const inserted = await this.events.append(
      { type: CUSTOMER_CREATED, data: customer, occurredAt: customer.created_at, traceparent },
      { ...customer, email_normalized: normalizeEmail(input.email) },
      insertCustomers,
    );
    if (!inserted) {
      const existing = await this.findByEmail(input.email);
      throw new HttpProblem(
        409,
        'email_taken',
        `A customer with the email ${input.email} already exists${existing ? ` (id ${existing.id})` : ''}; emails are unique regardless of case.`,
        existing ? { existing_customer_id: existing.id } : {},
      );
    }
    return customer;
  }

  async get(id: string): Promise<Customer | undefined> {
    const row = await this.db
      .selectFrom('customers')
      .select(['id', 'name', 'email', 'created_at'])
      .where('id', '=', id)
      .executeTakeFirst();
    return row && toCustomer(row);
  }

  async findByEmail(email: string): Promise<Customer | undefined> {
    const row = await this.db
      .selectFrom('customers')
      .select(['id', 'name', 'email', 'created_at'])
      .where('email_normalized', '=', normalizeEmail(email))
      .executeTakeFirst();
    return row && toCustomer(row);
  }

  /** One page in creation order; undefined when `after` names no customer. */
  list(page: PageRequest): Promise<Page<Customer> | undefined> {
    return readPage(
      page,
      async (id) =>
        (
          await this.db
            .selectFrom('customers')
            .select('seq')
            .where('id', '=', id)
            .executeTakeFirst()
        )?.seq,
      async (seq, count) =>
        (
          await this.db
            .selectFrom('customers')
            .select(['id', 'name', 'email', 'created_at'])
            .where('seq', '>', seq)
            .orderBy('seq')
            .limit(count)
            .execute()
        ).map(toCustomer),
    );
  }
}

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}
