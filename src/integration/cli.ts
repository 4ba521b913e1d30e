import { Command, CommanderError } from 'commander';
import { Compile } from 'typebox/compile';
import {
  DeliveryListSchema,
  LIST_LIMIT_MAX,
  PauseAnswerSchema,
  ReplayAllSchema,
  ResyncAnswerSchema,
  ReplayOneSchema,
  StatusSchema,
} from '../contracts/admin-api.js';
import { ConfigError, readOptionalString, type Env } from '../core/config.js';
import {
  ApiClient,
  CliFailure,
  CRM,
  USAGE_ERROR,
  defaultUrl,
  INTEGRATION,
  type Service,
} from './cli/api-client.js';
import {
  formatBulkReplay,
  formatDeadLetters,
  formatPause,
  formatStatus,
  oneLine,
} from './cli/render.js';
import { formatTimeline } from './cli/render-timeline.js';
import { followNewAudit, formatAudit, formatCustomerResync } from './cli/audit.js';
import { CustomerResyncSchema } from '../contracts/audit.js';
import { parsePrefix, parseSince, parseSinceOrUsage, wholeNumber } from './cli/option-parsers.js';
import { customerIdOf, readTimeline } from './cli/timeline-client.js';
import type { ProgressStream } from './cli/progress.js';
import { formatRetryWindows, retryWindows } from './cli/retry-windows.js';
import { seedCustomers, type SeedOptions } from './cli/seed.js';
import { addAlertCommands } from './cli/alerts.js';

/** Where the CLI writes and what environment it reads; the real process's by default. */
export interface CliIo {
  stdout: { write(text: string): unknown };
  /** `isTTY` picks the progress display: a bar redrawn in place, or a plain line now and then. */
  stderr: ProgressStream;
  env: Env;
}

interface GlobalOptions {
  url?: string;
  crmUrl?: string;
  token?: string;
  json?: boolean;
}

interface Customer {
  id: string;
  name: string;
  email: string;
  created_at: string;
}

const formatCustomer = (customer: Customer) =>
  `Created customer ${customer.id}: ${oneLine(customer.name)} <${customer.email}>`;

interface ReplayOptions {
  all?: boolean;
  since?: string;
  errorContains?: string;
  status?: number;
  dryRun?: boolean;
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
    // A read-only token is enough for every command that only looks.
    const token =
      options.token ??
      readOptionalString(io.env, 'API_TOKEN') ??
      readOptionalString(io.env, 'API_READ_TOKEN');
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
    .option(
      '--token <token>',
      'bearer token for the admin API and the CRM (default: $API_TOKEN, else $API_READ_TOKEN)',
    )
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
      show(
        await client.request('GET', '/api/status', { shape: Compile(StatusSchema) }),
        formatStatus,
      );
    });

  for (const action of ['pause', 'resume'] as const) {
    program
      .command(action)
      .description(
        action === 'pause'
          ? 'stop sending to Inventory on every instance (events are still recorded; nothing dead-letters)'
          : 'send to Inventory again: the backlog goes out, at INVENTORY_MAX_RPS',
      )
      .action(async (_options, command: Command) => {
        const { client, show } = context(command, INTEGRATION);
        show(
          await client.request('POST', `/api/delivery/${action}`, {
            shape: Compile(PauseAnswerSchema),
          }),
          formatPause,
        );
      });
  }

  program
    .command('resync')
    .description(
      'read the CRM feed again from a position or a time, in the background (progress in mip status), or send one customer through again; newer states are taken, nothing is duplicated',
    )
    .option(
      '--since <position | time>',
      'a feed position (0: from the start), or a time (ISO 8601, or a span ago such as 2h)',
    )
    .option('--customer <id | email>', 'one customer, as the CRM and Inventory hold it now')
    .action(async (options: { since?: string; customer?: string }, command: Command) => {
      const { client, show } = context(command, INTEGRATION);
      if ((options.since === undefined) === (options.customer === undefined)) {
        command.error('give exactly one of --since <position | time> or --customer <id | email>', {
          exitCode: USAGE_ERROR,
        });
      }
      if (options.customer !== undefined) {
        const id = await customerIdOf(client, options.customer, command);
        show(
          await client.request('POST', `/api/customers/${id}/resync`, {
            shape: Compile(CustomerResyncSchema),
          }),
          formatCustomerResync,
        );
        return;
      }
      const since = options.since!;
      const body = /^\d+$/.test(since)
        ? { since_position: Number(since) }
        : { since: parseSinceOrUsage(since, command, USAGE_ERROR) };
      show(
        await client.request('POST', '/api/resync', { body, shape: Compile(ResyncAnswerSchema) }),
        ({ from, until }) =>
          `Reading the CRM feed again from position ${from} up to ${until}; newer customer states will be delivered (see mip status).`,
      );
    });

  program
    .command('audit')
    .description(
      'compare the CRM with Inventory customer by customer and report drift; exits 1 when there is some (for cron)',
    )
    .option('--repair', 'send each drifted customer the pipeline can fix through it again')
    .action(async (options: { repair?: boolean }, command: Command) => {
      const { client, show } = context(command, INTEGRATION);
      const audit = await followNewAudit(client, options.repair === true, io.stderr);
      show(audit, formatAudit);
      if (audit.drift_total > 0) {
        throw new CliFailure(
          `${audit.drift_total} customer(s) with drift${audit.repair ? `; ${audit.repaired} sent through the pipeline again` : ''}`,
        );
      }
    });

  program
    .command('retry-windows')
    .description(
      'print how long each part retries a failure before giving up, from the settings in the environment',
    )
    .action((_options, command: Command) => {
      const { json } = command.optsWithGlobals<GlobalOptions>();
      const windows = retryWindows(io.env);
      print(json ? JSON.stringify(windows, null, 2) : formatRetryWindows(windows));
    });

  const dlq = program.command('dlq').description('list and replay dead letters');

  dlq
    .command('list')
    .description('list dead letters, most recently changed first')
    .option(
      '--limit <n>',
      `show at most this many (1-${LIST_LIMIT_MAX})`,
      wholeNumber(1, LIST_LIMIT_MAX),
      100,
    )
    .action(async (options: { limit: number }, command: Command) => {
      const { client, show } = context(command, INTEGRATION);
      const deadLetters = await client.request('GET', `/api/dead-letters?limit=${options.limit}`, {
        shape: Compile(DeliveryListSchema),
      });
      show(deadLetters, (answer) => formatDeadLetters(answer, options.limit));
    });

  dlq
    .command('replay')
    .description('deliver dead letters again with a fresh attempt budget')
    .argument('[customerId]', 'the customer id of the dead letter to replay')
    .option('--all', 'replay every dead letter (narrowed by the options below)')
    .option(
      '--since <time>',
      'with --all: only those dead-lettered since this time (ISO 8601, or e.g. 30m, 2h, 1d ago)',
      (value: string) => parseSince(value),
    )
    .option('--error-contains <text>', 'with --all: only those whose last error has this text')
    .option(
      '--status <code>',
      'with --all: only those whose last status was this',
      wholeNumber(100, 599),
    )
    .option('--dry-run', 'with --all: print how many would be replayed, and replay nothing')
    .action(async (customerId: string | undefined, options: ReplayOptions, command: Command) => {
      const filtered =
        options.since !== undefined ||
        options.errorContains !== undefined ||
        options.status !== undefined ||
        options.dryRun === true;
      if (customerId === undefined && !options.all) {
        command.error('dlq replay needs a customer id or --all.', { exitCode: USAGE_ERROR });
      }
      if (customerId !== undefined && (options.all || filtered)) {
        command.error(
          'give either a customer id, or --all with its filters (--since, --error-contains, --status, --dry-run), not both.',
          { exitCode: USAGE_ERROR },
        );
      }
      const { client, show } = context(command, INTEGRATION);
      if (customerId === undefined) {
        const answer = await client.request('POST', '/api/dead-letters/replay', {
          body: {
            ...(options.since === undefined ? {} : { since: options.since }),
            ...(options.errorContains === undefined
              ? {}
              : { error_contains: options.errorContains }),
            ...(options.status === undefined ? {} : { status: options.status }),
            ...(options.dryRun ? { dry_run: true } : {}),
          },
          shape: Compile(ReplayAllSchema),
        });
        show(answer, (result) => formatBulkReplay(result, filtered));
        return;
      }
      const answer = await client.request(
        'POST',
        `/api/dead-letters/${encodeURIComponent(customerId)}/replay`,
        { shape: Compile(ReplayOneSchema) },
      );
      show(
        answer,
        ({ delivery }) =>
          `Replayed the dead letter for customer ${delivery.customer_id} (${oneLine(delivery.customer_name)}): ` +
          `now ${delivery.state}, to be delivered again shortly (replay ${delivery.replays}).`,
      );
    });

  program
    .command('trace')
    .description('show what happened to one customer: events received, attempts, operator actions')
    .argument(
      '<customer>',
      'the customer id, or their email (the integration service asks the CRM)',
    )
    .action(async (customer: string, _options, command: Command) => {
      const { client, show } = context(command, INTEGRATION);
      show(
        await readTimeline(client, await customerIdOf(client, customer, command)),
        formatTimeline,
      );
    });

  const customers = program.command('customers').description('create customers in the CRM');

  customers
    .command('create')
    .description('create one customer and print it')
    .requiredOption('--name <name>', 'full name, e.g. "Jane Doe"')
    .requiredOption('--email <email>', 'email address, unique among customers')
    .action(async (options: { name: string; email: string }, command: Command) => {
      const { client, show } = context(command, CRM);
      const customer = await client.request<Customer>('POST', '/customers', {
        body: { name: options.name, email: options.email },
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

  addAlertCommands(program, (command) => context(command, INTEGRATION));

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
    // A setting in the environment mip reads (retry-windows) is wrong: the fix is the caller's.
    if (error instanceof ConfigError) {
      fullIo.stderr.write(`mip: ${error.message}\n`);
      return USAGE_ERROR;
    }
    throw error;
  }
}
