import { randomBytes } from 'node:crypto';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { readOptionalString, type Env } from '../core/config.js';

/** Where the CLI writes and what environment it reads; the real process's by default. */
export interface CliIo {
  stdout: { write(text: string): unknown };
  /** `isTTY` picks the progress display: a bar redrawn in place, or a plain line now and then. */
  stderr: { write(text: string): unknown; isTTY?: boolean };
  env: Env;
}

const REQUEST_TIMEOUT_MS = 10_000;
const USAGE_ERROR = 2;

/** A failure worth one `mip: …` line on stderr and exit code 1. */
class CliFailure extends Error {}

/** The service could not be reached at all (refused, unknown host, no answer in time). */
class Unreachable extends CliFailure {}

interface GlobalOptions {
  url?: string;
  crmUrl?: string;
  token?: string;
  json?: boolean;
}

interface Status {
  mode: string;
  instance_id: string;
  cursor: number;
  deliveries: Record<string, number>;
  circuit: string;
  poll: {
    leader: boolean;
    lease_holder: string | null;
    last_success_at: string | null;
    last_error: string | null;
    last_error_at: string | null;
  } | null;
  webhook: {
    registered: boolean;
    url: string | null;
    last_error: string | null;
  } | null;
}

interface Delivery {
  customer_id: string;
  customer_name: string;
  state: string;
  attempts: number;
  replays: number;
  last_error: string | null;
  last_status: number | null;
  failing_since: string | null;
}

/** A service the CLI talks to: how messages name it and where it is by default. */
interface Service {
  /** e.g. "the integration service" */
  name: string;
  /** The global option that gives its base URL, and the key commander stores it under. */
  urlOption: string;
  urlKey: 'url' | 'crmUrl';
  /** Else this environment variable, else loopback on `$portVariable` or `defaultPort`. */
  urlVariable: string;
  portVariable: string;
  defaultPort: number;
}

const INTEGRATION: Service = {
  name: 'the integration service',
  urlOption: '--url',
  urlKey: 'url',
  urlVariable: 'MIP_URL',
  portVariable: 'INTEGRATION_PORT',
  defaultPort: 8002,
};

const CRM: Service = {
  name: 'the CRM',
  urlOption: '--crm-url',
  urlKey: 'crmUrl',
  urlVariable: 'MIP_CRM_URL',
  portVariable: 'CRM_PORT',
  defaultPort: 8000,
};

/** Talks JSON to one of the platform's HTTP APIs; every failure becomes a CliFailure. */
class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string | undefined,
    private readonly service: Service,
  ) {}

  async request<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(this.baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (error) {
      throw this.unreachable(error);
    }
    const text = await response.text();
    const answer = parseJson(text);
    if (response.ok && answer !== undefined) return answer as T;
    const detail = (answer as { detail?: unknown } | undefined)?.detail;
    if (typeof detail === 'string') throw new CliFailure(detail);
    throw new CliFailure(
      `${method} ${this.baseUrl}${path} answered ${response.status} ${response.statusText}` +
        (response.ok
          ? ` without JSON; is ${this.service.urlOption} pointing at ${this.service.name}?`
          : ''),
    );
  }

  private unreachable(error: unknown): Unreachable {
    const { name, urlOption, urlVariable } = this.service;
    if ((error as Error | undefined)?.name === 'TimeoutError') {
      return new Unreachable(
        `${name} at ${this.baseUrl} did not answer within ${REQUEST_TIMEOUT_MS / 1000} s.`,
      );
    }
    return new Unreachable(
      `cannot reach ${name} at ${this.baseUrl} (${networkErrorCode(error)}); is it running? Set ${urlOption} or ${urlVariable}.`,
    );
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** fetch hides the socket error (ECONNREFUSED, ENOTFOUND…) in its cause, sometimes one level deeper. */
function networkErrorCode(error: unknown): string {
  const cause = (error as { cause?: unknown } | undefined)?.cause as
    { code?: string; message?: string; errors?: { code?: string }[] } | undefined;
  return (
    cause?.code ?? cause?.errors?.[0]?.code ?? cause?.message ?? (error as Error).message ?? 'error'
  );
}

/** An option parser for a whole number from `min` to `max`. */
function wholeNumber(min: number, max: number): (value: string) => number {
  return (value) => {
    const number = /^\d+$/.test(value) ? Number(value) : Number.NaN;
    if (!(number >= min && number <= max)) {
      throw new InvalidArgumentError(`It must be a whole number from ${min} to ${max}.`);
    }
    return number;
  };
}

function parsePrefix(value: string): string {
  if (!/^[A-Za-z0-9_-]{1,40}$/.test(value)) {
    throw new InvalidArgumentError('It must be 1 to 40 letters, digits, "-" or "_".');
  }
  return value;
}

/** Error texts and names on one line, so a table row stays one row. */
const oneLine = (text: string) => text.replace(/\s+/g, ' ').trim();
const truncate = (text: string, max: number) =>
  text.length <= max ? text : `${text.slice(0, max - 1)}…`;

/** Rows of cells as aligned columns. */
function columns(rows: string[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows
    .map((row) =>
      row
        .map((cell, column) => cell.padEnd(widths[column]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function formatStatus(status: Status): string {
  const deliveries = Object.entries(status.deliveries)
    .map(([state, count]) => `${state} ${count}`)
    .join(', ');
  const { poll, webhook } = status;
  const rows: [string, string][] = [
    ['mode', status.mode],
    ['instance', status.instance_id],
    ['cursor', String(status.cursor)],
    ['deliveries', deliveries || 'none yet'],
    ['circuit', status.circuit],
  ];
  if (webhook) {
    rows.push(
      ['webhook', webhook.registered ? `registered at ${webhook.url}` : 'not registered yet'],
      ['webhook error', webhook.last_error ? oneLine(webhook.last_error) : 'none'],
    );
  }
  if (poll) {
    const lastError = poll.last_error
      ? `${oneLine(poll.last_error)} (at ${poll.last_error_at ?? 'unknown time'})`
      : 'none';
    rows.push(
      [
        'poll leader',
        poll.leader
          ? 'yes (this instance polls the CRM)'
          : `no (${poll.lease_holder ?? 'nobody'} does)`,
      ],
      ['last poll', poll.last_success_at ?? 'never succeeded yet'],
      ['last poll error', lastError],
    );
  }
  return columns(rows);
}

function formatDeadLetters(deadLetters: Delivery[], limit: number): string {
  if (deadLetters.length === 0) return 'No dead letters.';
  const rows = deadLetters.map((letter) => [
    letter.customer_id,
    oneLine(letter.customer_name),
    String(letter.attempts),
    letter.last_status === null ? '-' : String(letter.last_status),
    letter.last_error === null ? '-' : truncate(oneLine(letter.last_error), 60),
    letter.failing_since ?? '-',
  ]);
  const header = ['CUSTOMER ID', 'NAME', 'ATTEMPTS', 'LAST STATUS', 'LAST ERROR', 'FAILING SINCE'];
  const lines = [columns([header, ...rows])];
  if (deadLetters.length === limit) {
    lines.push(`(showing ${limit}; there may be more: raise --limit, up to 1000)`);
  }
  return lines.join('\n');
}

function defaultUrl(env: Env, service: Service): string {
  return (
    readOptionalString(env, service.urlVariable) ??
    `http://127.0.0.1:${readOptionalString(env, service.portVariable) ?? service.defaultPort}`
  );
}

interface Customer {
  id: string;
  name: string;
  email: string;
  created_at: string;
}

const formatCustomer = (customer: Customer) =>
  `Created customer ${customer.id}: ${oneLine(customer.name)} <${customer.email}>`;

/**
 * Shows how far a long run is on `stream`: on a terminal a bar redrawn in place ten times a second,
 * otherwise a plain line at most once a second. Answers the function that ends the display.
 */
function showProgress(
  stream: CliIo['stderr'],
  total: number,
  done: () => number,
  unit: string,
): () => void {
  const tty = stream.isTTY === true;
  const width = 30;
  // The rate is measured over the last second or so, not since the start.
  const samples = [{ at: performance.now(), done: 0 }];
  const render = () => {
    const now = performance.now();
    const count = done();
    samples.push({ at: now, done: count });
    while (samples.length > 2 && now - samples[1]!.at >= 1000) samples.shift();
    const first = samples[0]!;
    const rate = now > first.at ? Math.round(((count - first.done) * 1000) / (now - first.at)) : 0;
    const percent = Math.floor((count * 100) / total);
    if (tty) {
      const filled = Math.round((count * width) / total);
      const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
      // \x1b[K clears what a longer previous line left behind.
      stream.write(`\r[${bar}] ${count}/${total} ${percent}% ${rate} ${unit}/s\x1b[K`);
    } else {
      stream.write(`${count}/${total} ${unit} (${percent}%), ${rate} ${unit}/s\n`);
    }
  };
  if (tty) render();
  const timer = setInterval(render, tty ? 100 : 1000);
  return () => {
    clearInterval(timer);
    if (tty) {
      render();
      stream.write('\n');
    }
  };
}

interface SeedOptions {
  customers: number;
  concurrency: number;
  prefix?: string;
}

interface SeedResult {
  created: number;
  failed: number;
  seconds: number;
  per_second: number;
}

/** Errors of individual creates reported at the end of a seed. */
const SEED_ERRORS_SHOWN = 5;

/**
 * Creates `options.customers` customers through the CRM, `options.concurrency` at a time. A failed
 * create is counted and the run goes on, unless the CRM cannot be reached: then no more are tried.
 */
async function seedCustomers(
  crm: ApiClient,
  options: SeedOptions,
  stderr: CliIo['stderr'],
): Promise<SeedResult & { errors: string[]; unreachable?: Unreachable }> {
  const total = options.customers;
  const prefix = options.prefix ?? randomBytes(4).toString('hex');
  const errors: string[] = [];
  let unreachable: Unreachable | undefined;
  let next = 1;
  let created = 0;
  let failed = 0;
  const worker = async () => {
    while (next <= total && !unreachable) {
      const n = next++;
      const email = `seed-${prefix}-${n}@example.com`;
      try {
        await crm.request<Customer>('POST', '/customers', { name: `Seed Customer ${n}`, email });
        created++;
      } catch (error) {
        if (!(error instanceof CliFailure)) throw error;
        failed++;
        if (error instanceof Unreachable) unreachable ??= error;
        if (errors.length < SEED_ERRORS_SHOWN) errors.push(`customer ${n}: ${error.message}`);
      }
    }
  };
  const started = performance.now();
  const stopProgress = showProgress(stderr, total, () => created + failed, 'customers');
  try {
    await Promise.all(Array.from({ length: Math.min(options.concurrency, total) }, worker));
  } finally {
    stopProgress();
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    created,
    failed,
    seconds: Math.round(seconds * 1000) / 1000,
    per_second: seconds > 0 ? Math.round((created / seconds) * 10) / 10 : 0,
    errors,
    unreachable,
  };
}

function buildProgram(io: CliIo): Command {
  const print = (text: string) => io.stdout.write(`${text}\n`);

  /** A client for `service` and the output mode for a command, from the global options. */
  const context = (command: Command, service: Service) => {
    const options = command.optsWithGlobals<GlobalOptions>();
    const url = (options[service.urlKey] ?? defaultUrl(io.env, service)).replace(/\/+$/, '');
    if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) {
      command.error(
        `"${url}" is not an http(s) URL; e.g. ${service.urlOption} http://127.0.0.1:${service.defaultPort}`,
        { exitCode: USAGE_ERROR },
      );
    }
    const token = options.token ?? readOptionalString(io.env, 'API_TOKEN');
    const client = new ApiClient(url, token, service);
    /** Prints the answer as JSON for scripts, or in the human format. */
    const show = <T>(answer: T, human: (answer: T) => string) =>
      print(options.json ? JSON.stringify(answer, null, 2) : human(answer));
    return { client, show };
  };

  const program = new Command('mip')
    .description(
      'Admin tool for the integration service (status, dead letters) and for demo customers in the CRM.',
    )
    .option(
      '--url <url>',
      'integration service base URL (default: $MIP_URL, else http://127.0.0.1:${INTEGRATION_PORT:-8002})',
    )
    .option(
      '--crm-url <url>',
      'CRM base URL (default: $MIP_CRM_URL, else http://127.0.0.1:${CRM_PORT:-8000})',
    )
    .option('--token <token>', 'bearer token for the admin API and the CRM (default: $API_TOKEN)')
    .option('--json', 'print the raw JSON answer instead of the human format, for scripts')
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      // Commander says "error: …"; every mip error line starts with "mip: " instead.
      outputError: (text, write) => write(`mip: ${text.replace(/^error: /, '')}`),
    });

  program
    .command('status')
    .description('show mode, cursor, deliveries by state, circuit and poll health')
    .action(async (_options, command: Command) => {
      const { client, show } = context(command, INTEGRATION);
      show(await client.request<Status>('GET', '/api/status'), formatStatus);
    });

  const dlq = program.command('dlq').description('list and replay dead letters');

  dlq
    .command('list')
    .description('list dead letters, most recently changed first')
    .option('--limit <n>', 'show at most this many (1-1000)', wholeNumber(1, 1000), 100)
    .action(async (options: { limit: number }, command: Command) => {
      const { client, show } = context(command, INTEGRATION);
      const deadLetters = await client.request<Delivery[]>(
        'GET',
        `/api/dead-letters?limit=${options.limit}`,
      );
      show(deadLetters, (answer) => formatDeadLetters(answer, options.limit));
    });

  dlq
    .command('replay')
    .description('deliver dead letters again with a fresh attempt budget')
    .argument('[customerId]', 'the customer id of the dead letter to replay')
    .option('--all', 'replay every dead letter')
    .action(
      async (customerId: string | undefined, options: { all?: boolean }, command: Command) => {
        if (customerId === undefined && !options.all) {
          command.error('dlq replay needs a customer id or --all.', { exitCode: USAGE_ERROR });
        }
        if (customerId !== undefined && options.all) {
          command.error('give either a customer id or --all, not both.', { exitCode: USAGE_ERROR });
        }
        const { client, show } = context(command, INTEGRATION);
        if (customerId === undefined) {
          const answer = await client.request<{ replayed: number }>(
            'POST',
            '/api/dead-letters/replay',
          );
          show(answer, ({ replayed }) =>
            replayed === 0
              ? 'No dead letters to replay.'
              : `Replayed ${replayed} dead letter${replayed === 1 ? '' : 's'}; they will be delivered again shortly.`,
          );
          return;
        }
        const answer = await client.request<{ replayed: true; delivery: Delivery }>(
          'POST',
          `/api/dead-letters/${encodeURIComponent(customerId)}/replay`,
        );
        show(
          answer,
          ({ delivery }) =>
            `Replayed the dead letter for customer ${delivery.customer_id} (${oneLine(delivery.customer_name)}): ` +
            `now ${delivery.state}, to be delivered again shortly (replay ${delivery.replays}).`,
        );
      },
    );

  const customers = program.command('customers').description('create customers in the CRM');

  customers
    .command('create')
    .description('create one customer and print it')
    .requiredOption('--name <name>', 'full name, e.g. "Jane Doe"')
    .requiredOption('--email <email>', 'email address, unique among customers')
    .action(async (options: { name: string; email: string }, command: Command) => {
      const { client, show } = context(command, CRM);
      const customer = await client.request<Customer>('POST', '/customers', {
        name: options.name,
        email: options.email,
      });
      show(customer, formatCustomer);
    });

  program
    .command('seed')
    .description('create many customers in the CRM at once, for demos and load')
    .requiredOption(
      '--customers <n>',
      'how many customers to create (1-1000000)',
      wholeNumber(1, 1_000_000),
    )
    .option('--concurrency <n>', 'requests in flight at once (1-256)', wholeNumber(1, 256), 16)
    .option(
      '--prefix <text>',
      'emails are seed-<prefix>-<n>@example.com (default: random, so runs never collide)',
      parsePrefix,
    )
    .action(async (options: SeedOptions, command: Command) => {
      const { client, show } = context(command, CRM);
      const { errors, unreachable, ...result } = await seedCustomers(client, options, io.stderr);
      // Nothing done because the CRM is not there: that one line says it all.
      if (unreachable && result.created === 0) throw unreachable;
      show(
        result,
        ({ created, seconds, per_second }) =>
          `Created ${created} customer${created === 1 ? '' : 's'} in ${seconds.toFixed(1)} s ` +
          `(${Math.round(per_second)} customers/s)`,
      );
      if (result.failed > 0) {
        const untried = options.customers - result.created - result.failed;
        throw new CliFailure(
          [
            `${result.failed} of ${options.customers} customers could not be created` +
              (untried > 0 ? ` and ${untried} were not tried (the CRM stopped answering)` : '') +
              `; the first error${errors.length === 1 ? '' : 's'}:`,
            ...errors.map((error) => `  ${error}`),
          ].join('\n'),
        );
      }
    });

  return program;
}

/**
 * Runs `mip` with `argv` (without the node and script paths) and answers the exit code:
 * 0 done, 1 the service failed or refused, 2 a usage error.
 */
export async function runCli(argv: string[], io: Partial<CliIo> = {}): Promise<number> {
  const fullIo: CliIo = {
    stdout: io.stdout ?? process.stdout,
    stderr: io.stderr ?? process.stderr,
    env: io.env ?? process.env,
  };
  try {
    await buildProgram(fullIo).parseAsync(argv, { from: 'user' });
    return 0;
  } catch (error) {
    // Commander has already printed help or the usage error; only the exit code is left.
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : USAGE_ERROR;
    if (error instanceof CliFailure) {
      fullIo.stderr.write(`mip: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}
