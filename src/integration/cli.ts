import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { readOptionalString, type Env } from '../core/config.js';

/** Where the CLI writes and what environment it reads; the real process's by default. */
export interface CliIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  env: Env;
}

const REQUEST_TIMEOUT_MS = 10_000;
const USAGE_ERROR = 2;

/** A failure worth one `mip: …` line on stderr and exit code 1. */
class CliFailure extends Error {}

interface GlobalOptions {
  url?: string;
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

/** Talks to one integration service's admin API. */
class AdminClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string | undefined,
  ) {}

  async request<T>(method: 'GET' | 'POST', path: string): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let response: Response;
    try {
      response = await fetch(this.baseUrl + path, {
        method,
        headers,
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (error) {
      throw this.unreachable(error);
    }
    const text = await response.text();
    const body = parseJson(text);
    if (response.ok && body !== undefined) return body as T;
    const detail = (body as { detail?: unknown } | undefined)?.detail;
    if (typeof detail === 'string') throw new CliFailure(detail);
    throw new CliFailure(
      `${method} ${this.baseUrl}${path} answered ${response.status} ${response.statusText}` +
        (response.ok ? ' without JSON; is --url pointing at the integration service?' : ''),
    );
  }

  private unreachable(error: unknown): CliFailure {
    if ((error as Error | undefined)?.name === 'TimeoutError') {
      return new CliFailure(
        `the integration service at ${this.baseUrl} did not answer within ${REQUEST_TIMEOUT_MS / 1000} s.`,
      );
    }
    return new CliFailure(
      `cannot reach the integration service at ${this.baseUrl} (${networkErrorCode(error)}); is it running? Set --url or MIP_URL.`,
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

function parseLimit(value: string): number {
  const limit = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!(limit >= 1 && limit <= 1000)) {
    throw new InvalidArgumentError('It must be a whole number from 1 to 1000.');
  }
  return limit;
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

function defaultUrl(env: Env): string {
  return (
    readOptionalString(env, 'MIP_URL') ??
    `http://127.0.0.1:${readOptionalString(env, 'INTEGRATION_PORT') ?? 8002}`
  );
}

function buildProgram(io: CliIo): Command {
  const print = (text: string) => io.stdout.write(`${text}\n`);

  /** The admin client and output mode for a command, from the global options. */
  const context = (command: Command) => {
    const options = command.optsWithGlobals<GlobalOptions>();
    const url = (options.url ?? defaultUrl(io.env)).replace(/\/+$/, '');
    if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) {
      command.error(`"${url}" is not an http(s) URL; e.g. --url http://127.0.0.1:8002`, {
        exitCode: USAGE_ERROR,
      });
    }
    const client = new AdminClient(url, options.token ?? readOptionalString(io.env, 'API_TOKEN'));
    /** Prints the answer as JSON for scripts, or in the human format. */
    const show = <T>(answer: T, human: (answer: T) => string) =>
      print(options.json ? JSON.stringify(answer, null, 2) : human(answer));
    return { client, show };
  };

  const program = new Command('mip')
    .description('Admin tool for the integration service: status and dead letters.')
    .option(
      '--url <url>',
      'integration service base URL (default: $MIP_URL, else http://127.0.0.1:${INTEGRATION_PORT:-8002})',
    )
    .option('--token <token>', 'bearer token for the admin API (default: $API_TOKEN)')
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
      const { client, show } = context(command);
      show(await client.request<Status>('GET', '/api/status'), formatStatus);
    });

  const dlq = program.command('dlq').description('list and replay dead letters');

  dlq
    .command('list')
    .description('list dead letters, most recently changed first')
    .option('--limit <n>', 'show at most this many (1-1000)', parseLimit, 100)
    .action(async (options: { limit: number }, command: Command) => {
      const { client, show } = context(command);
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
        const { client, show } = context(command);
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
