import {
  DELIVERY_STATE_LABELS,
  LIST_LIMIT_MAX,
  type AmqpStatus,
  type Delivery,
  type PauseAnswer,
  type PollStatus,
  type ReplayAll,
  type SourceStatus,
  type Status,
  type WebhookStatus,
} from '../../contracts/admin-api.js';

/** Error texts and names on one line, so a table row stays one row. */
export const oneLine = (text: string) => text.replace(/\s+/g, ' ').trim();
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

type Rows = [string, string][];

const feedRows = (poll: PollStatus): Rows => [
  [
    'poll leader',
    poll.leader
      ? 'yes (this instance polls the CRM)'
      : `no (${poll.lease_holder ?? 'nobody'} does)`,
  ],
  ['last poll', poll.last_success_at ?? 'never succeeded yet'],
  [
    'last poll error',
    poll.last_error
      ? `${oneLine(poll.last_error)} (at ${poll.last_error_at ?? 'unknown time'})`
      : 'none',
  ],
];

const webhookRows = (webhook: WebhookStatus): Rows => [
  ['webhook', webhook.registered ? `registered at ${webhook.url}` : 'not registered yet'],
  ['webhook error', webhook.last_error ? oneLine(webhook.last_error) : 'none'],
];

const amqpRows = (amqp: AmqpStatus): Rows => [
  [
    'amqp',
    amqp.subscribed
      ? 'consuming'
      : amqp.connected
        ? 'connected, not subscribed yet'
        : 'not connected',
  ],
  [
    'amqp dead letters',
    amqp.dead_lettered === null
      ? 'unknown while not consuming'
      : amqp.dead_lettered === 0
        ? 'none'
        : `${amqp.dead_lettered} waiting in RabbitMQ’s dead-letter queue`,
  ],
];

/** A source without rows of its own: each of its details as `<name> <field>`. */
const detailRows = (source: SourceStatus): Rows =>
  Object.entries(source.details).map(([field, value]) => [
    `${source.name} ${field.replaceAll('_', ' ')}`,
    value === null ? '-' : oneLine(String(value)),
  ]);

/** How `mip status` shows each source's details (the service answers them as `sources`). */
const SOURCE_ROWS: Record<string, (details: never) => Rows> = {
  poll: feedRows,
  reconcile: feedRows,
  webhook: webhookRows,
  amqp: amqpRows,
};

function sourceRows(source: SourceStatus): Rows {
  const known = SOURCE_ROWS[source.name];
  const rows = known ? known(source.details as never) : detailRows(source);
  return source.problem ? [...rows, [`${source.name} problem`, oneLine(source.problem)]] : rows;
}

export function formatStatus(status: Status): string {
  const deliveries = Object.entries(status.deliveries)
    .map(([state, count]) => `${state} ${count}`)
    .join(', ');
  return columns([
    ['mode', status.mode],
    ['instance', status.instance_id],
    ['cursor', String(status.cursor)],
    ['deliveries', deliveries || 'none yet'],
    ['circuit', status.circuit],
    [
      'delivery',
      `${status.paused ? `PAUSED since ${status.paused.since} by ${status.paused.by ?? 'unknown'}` : 'running'} (backlog ${status.backlog})`,
    ],
    ...(status.resync
      ? [
          [
            'resync',
            `reading the CRM feed again: at ${status.resync.cursor} of ${status.resync.until}`,
          ] as [string, string],
        ]
      : []),
    ...status.sources.flatMap(sourceRows),
  ]);
}

export function formatDeadLetters(deadLetters: Delivery[], limit: number): string {
  if (deadLetters.length === 0) return `No ${DELIVERY_STATE_LABELS.dead}s.`;
  const rows = deadLetters.map((letter) => [
    letter.customer_id,
    letter.customer_deleted ? '(deleted)' : oneLine(letter.customer_name),
    `${letter.operation ?? '-'} v${letter.customer_version}`,
    String(letter.attempts),
    letter.last_status === null ? '-' : String(letter.last_status),
    letter.last_error === null ? '-' : truncate(oneLine(letter.last_error), 60),
    letter.failing_since ?? '-',
  ]);
  const header = [
    'CUSTOMER ID',
    'NAME',
    'OPERATION',
    'ATTEMPTS',
    'LAST STATUS',
    'LAST ERROR',
    'FAILING SINCE',
  ];
  const lines = [columns([header, ...rows])];
  if (deadLetters.length === limit) {
    lines.push(`(showing ${limit}; there may be more: raise --limit, up to ${LIST_LIMIT_MAX})`);
  }
  return lines.join('\n');
}

/** `mip dlq replay --all`: how many matched, and what was done with them. */
export function formatBulkReplay(result: ReplayAll, filtered: boolean): string {
  const letters = (n: number) => `${n} dead letter${n === 1 ? '' : 's'}`;
  const which = filtered ? ' match' : '';
  if (result.dry_run) {
    return `${letters(result.matched)}${which || ' in all'}; nothing replayed (a dry run: leave out --dry-run to replay them).`;
  }
  if (result.replayed === 0)
    return filtered ? 'No dead letters match.' : 'No dead letters to replay.';
  return `Replayed ${letters(result.replayed)}${filtered ? ` of ${result.matched} that matched` : ''}; they will be delivered again shortly.`;
}

/** `mip pause` and `mip resume`: the state now, and whether the command changed it. */
export function formatPause(answer: PauseAnswer): string {
  const backlog = `${answer.backlog} deliver${answer.backlog === 1 ? 'y' : 'ies'} waiting`;
  if (answer.paused) {
    return `${answer.changed ? 'Paused' : 'Already paused'}: nothing is sent to Inventory on any instance since ${answer.paused.since}; events are still recorded (${backlog}).`;
  }
  return `${answer.changed ? 'Resumed' : 'Not paused'}: delivering to Inventory (${backlog}).`;
}
