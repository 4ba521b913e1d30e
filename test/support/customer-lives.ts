/**
 * The convergence scenario's load: customers who are created, change their name and email a few
 * times (some changes milliseconds apart), and in part leave, some right after they arrived; some
 * of those leave their email to a new customer. Every name and email is a unique string built
 * from a marker, so the erasure check can find each in the databases' bytes.
 */
import { sleep } from './processes.js';

/** A name or email's unique part after the marker: `n|e`, six digits, `r`, two digits. */
const TOKEN_TAIL = '[ne][0-9]{6}r[0-9]{2}';

const pad = (value: number, width: number) => String(value).padStart(width, '0');

/** The strings a run's customers are named by. */
export class PersonalData {
  /** Lowercase, so an email reads the same after the CRM normalises it. */
  readonly marker: string;

  constructor(random: () => number) {
    this.marker = `zq${Math.floor(random() * 36 ** 6)
      .toString(36)
      .padStart(6, '0')}`;
  }

  /** Matches any name or email of the run, its unique part only (fixed length). */
  get pattern(): string {
    return `${this.marker}${TOKEN_TAIL}`;
  }

  /** The token inside `name(i, revision)`. */
  nameToken = (i: number, revision: number) => `${this.marker}n${pad(i, 6)}r${pad(revision, 2)}`;
  emailToken = (i: number, revision: number) => `${this.marker}e${pad(i, 6)}r${pad(revision, 2)}`;
  name = (i: number, revision: number) => `Customer ${this.nameToken(i, revision)}`;
  email = (i: number, revision: number) => `${this.emailToken(i, revision)}@example.com`;
}

/** What happened to the customers, as the client saw it (the databases are counted apart). */
export interface LivesOutcome {
  /** Customers created, those given a deleted customer's email included. */
  created: number;
  /** PATCHes the CRM accepted. */
  changes: number;
  deletions: number;
  /** Of the deletions, those sent right after the create (often before any package exists). */
  deletedEarly: number;
  /** New customers created with a deleted customer's email. */
  reusedEmails: number;
  /** Customers whose create, change or deletion the client gave up on (retries exhausted). */
  gaveUp: number;
  /** Why calls failed before a retry succeeded, e.g. `ECONNRESET`. */
  failures: Record<string, number>;
  /**
   * Every name and email token each deleted customer was ever sent with, by customer id: none of
   * them may remain in any database.
   */
  erased: Map<string, string[]>;
  /** Email tokens of deleted customers that a new customer took: rightly still stored. */
  reused: Set<string>;
}

interface Answer {
  status: number;
  body: { id?: string; existing_customer_id?: string };
}

/** Customer `i`'s fate, fixed by its index: a fifth deleted, half of those at once. */
function fateOf(i: number) {
  return {
    deleted: i % 5 === 0,
    deletedAtOnce: i % 10 === 0,
    // Among the deleted, half (early and late ones) leave their email to a new customer.
    emailReused: i % 20 === 0 || i % 20 === 5,
  };
}

/** Runs the customers' lives against the CRM's API, `perSecond` lives starting each second. */
export class CustomerLives {
  readonly outcome: LivesOutcome = {
    created: 0,
    changes: 0,
    deletions: 0,
    deletedEarly: 0,
    reusedEmails: 0,
    gaveUp: 0,
    failures: {},
    erased: new Map(),
    reused: new Set(),
  };

  constructor(
    private readonly crmUrl: string,
    readonly personal: PersonalData,
    private readonly random: () => number,
    /** Whether Inventory holds the customer's package yet (late deletions wait for it). */
    private readonly hasPackage: (customerId: string) => Promise<boolean>,
  ) {}

  async run(count: number, perSecond: number): Promise<LivesOutcome> {
    const started = performance.now();
    const lives: Promise<void>[] = [];
    for (let i = 0; i < count; i += 1) {
      const wait = (i / perSecond) * 1000 - (performance.now() - started);
      if (wait > 0) await sleep(wait);
      lives.push(this.live(i, count));
    }
    await Promise.all(lives);
    return this.outcome;
  }

  private async live(i: number, count: number): Promise<void> {
    const { personal, random } = this;
    const fate = fateOf(i);
    const sent = [personal.nameToken(i, 1), personal.emailToken(i, 1)];
    let email = personal.email(i, 1);
    let emailToken = personal.emailToken(i, 1);
    const id = await this.create(personal.name(i, 1), email);
    if (!id) return;
    if (!fate.deletedAtOnce) {
      const changes = 1 + Math.floor(random() * 5);
      for (let revision = 2; revision <= changes + 1; revision += 1) {
        // Half the changes follow the previous one within milliseconds.
        await sleep(random() < 0.5 ? Math.floor(random() * 3) : 50 + Math.floor(random() * 350));
        const which = random();
        const change: { name?: string; email?: string } = {};
        if (which < 2 / 3) {
          change.name = personal.name(i, revision);
          sent.push(personal.nameToken(i, revision));
        }
        if (which >= 1 / 3) {
          email = personal.email(i, revision);
          emailToken = personal.emailToken(i, revision);
          change.email = email;
          sent.push(emailToken);
        }
        if (!(await this.change(id, change))) return;
        this.outcome.changes += 1;
      }
    }
    if (!fate.deleted) return;
    // Late deletions find their package created (or give up waiting after 10 s): its cancel is
    // what they test.
    if (!fate.deletedAtOnce) {
      const deadline = performance.now() + 10_000;
      while (!(await this.hasPackage(id)) && performance.now() < deadline) await sleep(100);
      await sleep(Math.floor(random() * 300));
    }
    if (!(await this.delete(id))) return;
    this.outcome.erased.set(id, sent);
    this.outcome.deletions += 1;
    if (fate.deletedAtOnce) this.outcome.deletedEarly += 1;
    if (!fate.emailReused) return;
    // A new customer with the email: a new id, and a package of its own.
    this.outcome.reused.add(emailToken);
    if (await this.create(personal.name(count + i, 1), email)) this.outcome.reusedEmails += 1;
  }

  /** Creates the customer; answers its id, also when a retry finds an earlier attempt's. */
  private create(name: string, email: string): Promise<string | undefined> {
    return this.untilDone('POST', '/customers', { name, email }, (answer, attempt) => {
      if (answer.status === 201) return answer.body.id;
      // A retry whose email is taken: the earlier attempt created it, its answer was lost.
      if (answer.status === 409 && attempt > 0) return answer.body.existing_customer_id;
      return undefined;
    }).then((id) => {
      if (id) this.outcome.created += 1;
      return id;
    });
  }

  /** Changes the customer; a repeat of an applied change changes nothing, so retries are safe. */
  private change(id: string, change: { name?: string; email?: string }) {
    return this.untilDone('PATCH', `/customers/${id}`, change, (answer) =>
      answer.status === 200 ? true : undefined,
    );
  }

  private delete(id: string) {
    return this.untilDone('DELETE', `/customers/${id}`, undefined, (answer, attempt) =>
      // 404 on a retry: the earlier attempt deleted it, its answer was lost.
      answer.status === 204 || (answer.status === 404 && attempt > 0) ? true : undefined,
    );
  }

  /**
   * Sends the call until `done` makes something of an answer, as any API client would retry a
   * call that failed in transport or was refused for the moment; gives up after about 40 s.
   */
  private async untilDone<T>(
    method: string,
    path: string,
    body: unknown,
    done: (answer: Answer, attempt: number) => T | undefined,
  ): Promise<T | undefined> {
    for (let attempt = 0; attempt < 200; attempt += 1) {
      let reason: string;
      try {
        const response = await fetch(`${this.crmUrl}${path}`, {
          method,
          ...(body === undefined
            ? {}
            : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
        });
        const text = await response.text();
        const answer = { status: response.status, body: text ? (JSON.parse(text) as object) : {} };
        const result = done(answer, attempt);
        if (result !== undefined) return result;
        reason = `${method} ${response.status}`;
      } catch (error) {
        const cause = (error as { cause?: { code?: string } }).cause;
        reason = cause?.code ?? (error as Error).message;
      }
      this.outcome.failures[reason] = (this.outcome.failures[reason] ?? 0) + 1;
      await sleep(200);
    }
    this.outcome.gaveUp += 1;
    return undefined;
  }
}
