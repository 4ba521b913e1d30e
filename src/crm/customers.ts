import { newId } from '../core/ids.js';
import type { ExpressionBuilder, Insertable, Kysely, Selectable } from 'kysely';
import { isUniqueViolation, toIsoString } from '../core/db.js';
import { HttpProblem, notFound } from '../core/errors.js';
import { readPage, type Page, type PageRequest } from '../core/pagination.js';
import {
  CHANGEABLE_CUSTOMER_FIELDS,
  type ChangeableCustomerField,
  type Customer,
  type CustomerChange,
  type NewCustomer,
} from '../contracts/customers.js';
import {
  CUSTOMER_CREATED,
  CUSTOMER_DELETED,
  CUSTOMER_UPDATED,
  type DeletedCustomer,
} from '../contracts/customer-events.js';
import type { BatchWrites, EventLog } from './events.js';
import type { CrmTables } from './migrations.js';
import type { VersionCondition } from './versions.js';

type CustomerRow = Selectable<CrmTables['customers']>;
const CUSTOMER_COLUMNS = ['id', 'name', 'email', 'version', 'created_at', 'updated_at'] as const;

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

/** A customer's new state, to be written only while it is still at `version - 1`. */
type CustomerUpdate = Customer;

/**
 * Writes each update unless its customer moved on meanwhile (another change committed first):
 * answers which were written. An email taken meanwhile throws, failing that update alone.
 */
const updateCustomers: BatchWrites<CustomerUpdate> = async (trx, updates) => {
  const written = updates.map(() => false);
  // In id order, so that two processes' transactions lock rows in one order: no deadlock.
  const order = updates.map((_, i) => i).sort((a, b) => (updates[a]!.id < updates[b]!.id ? -1 : 1));
  for (const index of order) {
    const customer = updates[index]!;
    const result = await trx
      .updateTable('customers')
      .set({
        name: customer.name,
        email: customer.email,
        email_normalized: normalizeEmail(customer.email),
        version: customer.version,
        updated_at: customer.updated_at,
      })
      .where('id', '=', customer.id)
      .where('version', '=', customer.version - 1)
      .executeTakeFirst();
    written[index] = result.numUpdatedRows === 1n;
  }
  return written;
};

/** Event types that carry a customer's name and email: erased with the customer. */
const PERSONAL_EVENT_TYPES = [CUSTOMER_CREATED, CUSTOMER_UPDATED];

/**
 * Deletes each customer unless it moved on meanwhile (it must still be at `version - 1`), keeping
 * a tombstone and erasing its earlier events with their webhook messages: answers which were
 * deleted.
 */
const deleteCustomers: BatchWrites<DeletedCustomer> = async (trx, deletions) => {
  const written: boolean[] = [];
  for (const deletion of deletions) {
    const result = await trx
      .deleteFrom('customers')
      .where('id', '=', deletion.id)
      .where('version', '=', deletion.version - 1)
      .executeTakeFirst();
    if (result.numDeletedRows !== 1n) {
      written.push(false);
      continue;
    }
    await trx.insertInto('customer_tombstones').values(deletion).execute();
    const erased = (eb: ExpressionBuilder<CrmTables, 'events'>) =>
      eb.and([eb('customer_id', '=', deletion.id), eb('type', 'in', PERSONAL_EVENT_TYPES)]);
    await trx
      .deleteFrom('webhook_messages')
      .where('event_id', 'in', (eb) => eb.selectFrom('events').select('id').where(erased))
      .execute();
    const gone = await trx.deleteFrom('events').where(erased).returning('position').execute();
    if (gone.length > 0) await trx.insertInto('erased_positions').values(gone).execute();
    written.push(true);
  }
  return written;
};

function toCustomer(row: Pick<CustomerRow, (typeof CUSTOMER_COLUMNS)[number]>): Customer {
  const createdAt = toIsoString(row.created_at);
  return {
    id: row.id,
    name: row.name,
    email: row.email,
    version: row.version,
    created_at: createdAt,
    updated_at: row.updated_at === null ? createdAt : toIsoString(row.updated_at),
  };
}

/** The fields `change` gives new values, in the contract's order. */
function changedFields(customer: Customer, change: CustomerChange): ChangeableCustomerField[] {
  return CHANGEABLE_CUSTOMER_FIELDS.filter(
    (field) => change[field] !== undefined && change[field] !== customer[field],
  );
}

/**
 * Changes that lose a race with another process's change of the same customer are read and tried
 * again (changes in this process queue up instead, see `oneAtATime`).
 */
const UPDATE_TRIES = 10;

/** Reads and writes the CRM's customers table. */
export class CustomerStore {
  /** The last change queued per customer in this process. */
  private readonly changing = new Map<string, Promise<unknown>>();

  /**
   * `afterErasure` runs after each deletion commits (e.g. `Database.scrubSoon`, so no byte of the
   * erased name and email is left in SQLite's files). Default: nothing.
   */
  constructor(
    private readonly db: Kysely<CrmTables>,
    private readonly events: EventLog,
    private readonly afterErasure: () => void = () => {},
  ) {}

  /** Runs the changes of one customer one after another, so they do not lose races to each other. */
  private async oneAtATime<T>(id: string, change: () => Promise<T>): Promise<T> {
    const previous = this.changing.get(id) ?? Promise.resolve();
    const run = previous.then(change, change);
    const settled = run.catch(() => undefined);
    this.changing.set(id, settled);
    try {
      return await run;
    } finally {
      if (this.changing.get(id) === settled) this.changing.delete(id);
    }
  }

  /** Creates the customer and its event; `traceparent` is kept with the event for its consumers. */
  async create(input: NewCustomer, traceparent?: string): Promise<Customer> {
    const now = new Date().toISOString();
    const customer: Customer = {
      id: newId(),
      name: input.name,
      email: input.email,
      version: 1,
      created_at: now,
      updated_at: now,
    };
    // The customer and its event commit together (transactional outbox): no event without a
    // customer, no customer without an event.
    const inserted = await this.events.append(
      { type: CUSTOMER_CREATED, data: customer, occurredAt: now, traceparent },
      // A literal: on Node 20 a field added after a spread cost about 1 µs.
      {
        id: customer.id,
        name: customer.name,
        email: customer.email,
        version: customer.version,
        created_at: customer.created_at,
        updated_at: customer.updated_at,
        email_normalized: normalizeEmail(input.email),
      },
      insertCustomers,
    );
    if (!inserted) throw await this.emailTaken(input.email);
    return customer;
  }

  /**
   * Changes the customer and records a `customer.updated` event with its new state, in one
   * transaction, when `condition` holds (`If-Match`). A change that gives no field a new value
   * changes nothing and records nothing. Throws 404, 409 (email taken) or 412 (stale version).
   */
  update(
    id: string,
    change: CustomerChange,
    condition: VersionCondition,
    traceparent?: string,
  ): Promise<Customer> {
    return this.changeCurrent(id, condition, async (current) => {
      const fields = changedFields(current, change);
      if (fields.length === 0) return current;
      const now = new Date().toISOString();
      const next: Customer = {
        ...current,
        ...change,
        version: current.version + 1,
        updated_at: now,
      };
      const event = {
        type: CUSTOMER_UPDATED,
        data: next,
        changedFields: fields,
        occurredAt: now,
        traceparent,
      } as const;
      try {
        return (await this.events.append(event, next, updateCustomers)) ? next : undefined;
      } catch (error) {
        if (isUniqueViolation(error) && change.email !== undefined) {
          throw await this.emailTaken(change.email);
        }
        throw error;
      }
    });
  }

  /**
   * Deletes the customer when `condition` holds (`If-Match`), and records `customer.deleted`: its
   * id, the next version and the time, nothing personal. Its name and email are erased from the
   * CRM (the customer row and its earlier events); a tombstone keeps the id. Throws 404 or 412.
   */
  async delete(
    id: string,
    condition: VersionCondition,
    traceparent?: string,
  ): Promise<DeletedCustomer> {
    const deleted = await this.changeCurrent(id, condition, async (current) => {
      const deletedAt = new Date().toISOString();
      const deleted = { id, version: current.version + 1, deleted_at: deletedAt };
      const event = {
        type: CUSTOMER_DELETED,
        data: deleted,
        occurredAt: deletedAt,
        traceparent,
      } as const;
      return (await this.events.append(event, deleted, deleteCustomers)) ? deleted : undefined;
    });
    this.afterErasure();
    return deleted;
  }

  /**
   * Reads the customer (404 when there is none), checks `condition` (412) and makes `change` of
   * it, which answers undefined when another change committed between the read and its write:
   * then reads it again and retries. Changes of one customer in this process run one at a time.
   */
  private changeCurrent<T>(
    id: string,
    condition: VersionCondition,
    change: (current: Customer) => Promise<T | undefined>,
  ): Promise<T> {
    return this.oneAtATime(id, async () => {
      for (let tries = 1; tries <= UPDATE_TRIES; tries += 1) {
        const current = await this.get(id);
        if (!current) throw notFound(`No customer has id ${id}.`);
        condition.check(current.version);
        const changed = await change(current);
        if (changed !== undefined) return changed;
      }
      throw new HttpProblem(
        409,
        'customer_busy',
        `Customer ${id} is being changed by other requests at the same time; send the change again.`,
      );
    });
  }

  async get(id: string): Promise<Customer | undefined> {
    const row = await this.db
      .selectFrom('customers')
      .select(CUSTOMER_COLUMNS)
      .where('id', '=', id)
      .executeTakeFirst();
    return row && toCustomer(row);
  }

  async findByEmail(email: string): Promise<Customer | undefined> {
    const row = await this.db
      .selectFrom('customers')
      .select(CUSTOMER_COLUMNS)
      .where('email_normalized', '=', normalizeEmail(email))
      .executeTakeFirst();
    return row && toCustomer(row);
  }

  /** 409 naming the customer who has `email` (when it can still be found). */
  private async emailTaken(email: string): Promise<HttpProblem> {
    const existing = await this.findByEmail(email);
    return new HttpProblem(
      409,
      'email_taken',
      `A customer with the email ${email} already exists${existing ? ` (id ${existing.id})` : ''}; emails are unique regardless of case.`,
      existing ? { existing_customer_id: existing.id } : {},
    );
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
            .select(CUSTOMER_COLUMNS)
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
