import { describe, expect, it } from 'vitest';
import type { Status } from '../../../src/contracts/admin-api.js';
import { formatStatus } from '../../../src/integration/cli/render.js';

const status = (sources: Status['sources']): Status => ({
  mode: 'hybrid',
  instance_id: 'i-1',
  cursor: 7,
  deliveries: { pending: 0, delivering: 0, retrying: 1, delivered: 5, dead: 0 },
  circuit: 'closed',
  paused: null,
  backlog: 1,
  resync: null,
  poll: null,
  webhook: null,
  amqp: null,
  sources,
});

describe('mip status', () => {
  it('shows each source the service lists, in its order, with its problem', () => {
    const text = formatStatus(
      status([
        {
          name: 'webhook',
          ready: false,
          problem: "not yet subscribed to the CRM's webhooks",
          details: { registered: false, endpoint_id: null, url: null, last_error: 'refused' },
        },
        {
          name: 'amqp',
          ready: true,
          problem: null,
          details: { connected: true, subscribed: false, dead_lettered: null },
        },
      ]),
    );
    expect(text.split('\n')).toEqual([
      'mode               hybrid',
      'instance           i-1',
      'cursor             7',
      'deliveries         pending 0, delivering 0, retrying 1, delivered 5, dead 0',
      'circuit            closed',
      'delivery           running (backlog 1)',
      'webhook            not registered yet',
      'webhook error      refused',
      "webhook problem    not yet subscribed to the CRM's webhooks",
      'amqp               connected, not subscribed yet',
      'amqp dead letters  unknown while not consuming',
    ]);
  });

  it("shows how many messages wait in RabbitMQ's dead-letter queue", () => {
    const amqp = (deadLettered: number) =>
      formatStatus(
        status([
          {
            name: 'amqp',
            ready: true,
            problem: null,
            details: { connected: true, subscribed: true, dead_lettered: deadLettered },
          },
        ]),
      );
    expect(amqp(0)).toMatch(/^amqp dead letters {2}none$/m);
    expect(amqp(3)).toMatch(/^amqp dead letters {2}3 waiting in RabbitMQ’s dead-letter queue$/m);
  });

  it('shows the details of a source it has no rows for, one per line', () => {
    const text = formatStatus(
      status([
        { name: 'sqs', ready: true, problem: null, details: { queue_depth: 3, region: null } },
      ]),
    );
    expect(text).toMatch(/^sqs queue depth {2}3$/m);
    expect(text).toMatch(/^sqs region {7}-$/m);
  });
});
