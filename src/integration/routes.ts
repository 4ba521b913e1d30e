import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { HttpProblem, notFound } from '../core/errors.js';
import { problemResponses } from '../core/http.js';
import { Uuid } from '../core/schemas.js';
import type { CircuitState } from './circuit.js';
import type { SyncMode } from './config.js';
import { POLL_LEASE, type FeedPoller } from './poller.js';
import type { WebhookRegistrationStatus } from './webhooks.js';
import type { DeliveryRow, SyncStore } from './store.js';

export interface AdminRoutesOptions {
  store: SyncStore;
  mode: SyncMode;
  instanceId: string;
  /** The poll loop; undefined in push-only modes. */
  poller: () => FeedPoller | undefined;
  /** The webhook subscription's state; undefined when webhooks are not used. */
  webhook: () => WebhookRegistrationStatus | undefined;
  /** The RabbitMQ consumer's state; undefined unless in amqp mode. */
  amqp: () => { connected: boolean; subscribed: boolean } | undefined;
  circuit: () => CircuitState;
  cursor: () => Promise<number>;
  /** Called after a replay so the worker looks for due work at once. */
  onReplay: () => void;
}

const iso = (ms: number | null | undefined) => (ms == null ? null : new Date(ms).toISOString());
const DeliveryStateSchema = Type.Union([
  Type.Literal('pending'),
  Type.Literal('delivering'),
  Type.Literal('retrying'),
  Type.Literal('delivered'),
  Type.Literal('dead'),
]);
const NullableTime = Type.Union([Type.String({ format: 'date-time' }), Type.Null()]);

const DeliverySchema = Type.Object({
  customer_id: Uuid('The CRM customer id; also the id of its dead letter.'),
  customer_name: Type.String(),
  state: DeliveryStateSchema,
  source: Type.String({ description: 'Which source first reported the customer.' }),
  attempts: Type.Integer({ description: 'Calls made to Inventory since the last replay.' }),
  replays: Type.Integer(),
  last_error: Type.Union([Type.String(), Type.Null()]),
  last_status: Type.Union([Type.Integer(), Type.Null()]),
  next_attempt_at: NullableTime,
  package_request_id: Type.Union([Type.String(), Type.Null()]),
  customer_created_at: Type.String({ format: 'date-time' }),
  recorded_at: Type.String({ format: 'date-time' }),
  failing_since: NullableTime,
  delivered_at: NullableTime,
  updated_at: Type.String({ format: 'date-time' }),
});

function toDelivery(row: DeliveryRow) {
  const waiting = row.state === 'pending' || row.state === 'retrying';
  return {
    customer_id: row.customer_id,
    customer_name: row.customer_name,
    state: row.state,
    source: row.source,
    attempts: row.attempts,
    replays: row.replays,
    last_error: row.last_error,
    last_status: row.last_status,
    next_attempt_at: waiting ? iso(row.next_attempt_at) : null,
    package_request_id: row.package_request_id,
    customer_created_at: iso(row.customer_created_at)!,
    recorded_at: iso(row.recorded_at)!,
    failing_since: iso(row.failing_since),
    delivered_at: iso(row.delivered_at),
    updated_at: iso(row.updated_at)!,
  };
}

const ListQuery = Type.Object(
  {
    limit: Type.Integer({
      minimum: 1,
      maximum: 1000,
      default: 100,
      description: 'At most this many (default 100).',
    }),
  },
  { additionalProperties: false },
);

const StatusSchema = Type.Object({
  mode: Type.String(),
  instance_id: Type.String(),
  cursor: Type.Integer({ description: 'Last CRM feed position recorded.' }),
  deliveries: Type.Record(Type.String(), Type.Integer(), {
    description: 'Count of deliveries in each state.',
  }),
  circuit: Type.Union([Type.Literal('closed'), Type.Literal('half_open'), Type.Literal('open')]),
  poll: Type.Union(
    [
      Type.Object({
        leader: Type.Boolean({
          description: 'Whether this instance holds the poll lease.',
        }),
        lease_holder: Type.Union([Type.String(), Type.Null()], {
          description: 'The instance that holds the poll lease now, if any.',
        }),
        last_success_at: NullableTime,
        last_error: Type.Union([Type.String(), Type.Null()]),
        last_error_at: NullableTime,
        stalled: Type.Boolean({
          description: 'True when the loop has not completed a read for three intervals.',
        }),
      }),
      Type.Null(),
    ],
    { description: 'The feed poll (poll and hybrid modes); null otherwise.' },
  ),
  webhook: Type.Union(
    [
      Type.Object({
        registered: Type.Boolean(),
        endpoint_id: Type.Union([Type.String(), Type.Null()]),
        url: Type.Union([Type.String(), Type.Null()]),
        last_error: Type.Union([Type.String(), Type.Null()]),
      }),
      Type.Null(),
    ],
    {
      description: 'The webhook subscription (webhook and hybrid modes); null otherwise.',
    },
  ),
  amqp: Type.Union(
    [Type.Object({ connected: Type.Boolean(), subscribed: Type.Boolean() }), Type.Null()],
    { description: 'The RabbitMQ consumer (amqp mode); null otherwise.' },
  ),
});

/** p50, p99 and max of a list of lags in ms; nulls when it is empty. */
export function summariseLags(lags: number[]) {
  if (lags.length === 0) return { count: 0, p50_ms: null, p99_ms: null, max_ms: null };
  const sorted = [...lags].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
  return {
    count: sorted.length,
    p50_ms: at(0.5),
    p99_ms: at(0.99),
    max_ms: sorted[sorted.length - 1]!,
  };
}

/** The admin API: status, recent deliveries, dead letters and their replay. */
export const adminRoutes: FastifyPluginAsync<AdminRoutesOptions> = async (app, options) => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { store } = options;

  const readStatus = async () => {
    const poller = options.poller();
    const poll = poller?.status;
    const webhook = options.webhook();
    return {
      mode: options.mode,
      instance_id: options.instanceId,
      cursor: await options.cursor(),
      deliveries: await store.countByState(),
      circuit: options.circuit(),
      poll: poll
        ? {
            leader: poll.leader,
            lease_holder: (await store.leaseHolder(POLL_LEASE)) ?? null,
            last_success_at: iso(poll.lastSuccessAt),
            last_error: poll.lastError ?? null,
            last_error_at: iso(poll.lastErrorAt),
            stalled: poller?.stalledForMs() !== undefined,
          }
        : null,
      webhook: webhook
        ? {
            registered: webhook.registered,
            endpoint_id: webhook.endpointId ?? null,
            url: webhook.url ?? null,
            last_error: webhook.lastError ?? null,
          }
        : null,
      amqp: options.amqp() ?? null,
    };
  };

  api.get(
    '/api/status',
    {
      schema: {
        tags: ['admin'],
        summary: 'Mode, cursor, deliveries by state, circuit and poll health',
        response: { 200: StatusSchema },
      },
    },
    async () => readStatus(),
  );

  api.get(
    '/api/dashboard',
    {
      schema: {
        tags: ['admin'],
        summary: 'Everything the dashboard shows, in one answer',
        querystring: Type.Object(
          {
            window_minutes: Type.Integer({
              minimum: 1,
              maximum: 60,
              default: 10,
              description: 'Lag and throughput cover this many recent minutes (default 10).',
            }),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            status: StatusSchema,
            lag: Type.Object({
              window_minutes: Type.Integer(),
              count: Type.Integer({
                description: 'Deliveries in the window (at most the last 5,000).',
              }),
              p50_ms: Type.Union([Type.Number(), Type.Null()]),
              p99_ms: Type.Union([Type.Number(), Type.Null()]),
              max_ms: Type.Union([Type.Number(), Type.Null()]),
            }),
            throughput: Type.Array(
              Type.Object({ at: Type.String({ format: 'date-time' }), delivered: Type.Integer() }),
              { description: 'Deliveries per 10 s over the window, oldest first.' },
            ),
            recent: Type.Array(DeliverySchema),
            dead_letters: Type.Array(DeliverySchema),
          }),
        },
      },
    },
    async (request) => {
      const windowMs = request.query.window_minutes * 60_000;
      const now = Date.now();
      const since = now - windowMs;
      const bucketMs = 10_000;
      const [status, lags, buckets, recent, dead] = await Promise.all([
        readStatus(),
        store.recentLags(since),
        store.deliveredPerBucket(since, bucketMs),
        store.list({ limit: 20 }),
        store.list({ state: 'dead', limit: 100 }),
      ]);
      const counts = new Map(buckets);
      const throughput = [];
      for (let at = Math.floor(since / bucketMs) * bucketMs; at <= now; at += bucketMs) {
        throughput.push({ at: new Date(at).toISOString(), delivered: counts.get(at) ?? 0 });
      }
      return {
        status,
        lag: { window_minutes: request.query.window_minutes, ...summariseLags(lags) },
        throughput,
        recent: recent.map(toDelivery),
        dead_letters: dead.map(toDelivery),
      };
    },
  );

  api.get(
    '/api/deliveries',
    {
      schema: {
        tags: ['admin'],
        summary: 'Recent deliveries, most recently changed first, optionally in one state',
        querystring: Type.Object(
          {
            state: Type.Optional(DeliveryStateSchema),
            limit: ListQuery.properties.limit,
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Array(DeliverySchema) },
      },
    },
    async (request) =>
      (
        await store.list({
          state: request.query.state,
          limit: request.query.limit,
        })
      ).map(toDelivery),
  );

  api.get(
    '/api/dead-letters',
    {
      schema: {
        tags: ['admin'],
        summary: 'Deliveries given up on, with their last error and attempts',
        querystring: ListQuery,
        response: { 200: Type.Array(DeliverySchema) },
      },
    },
    async (request) =>
      (await store.list({ state: 'dead', limit: request.query.limit })).map(toDelivery),
  );

  api.post(
    '/api/dead-letters/:customerId/replay',
    {
      schema: {
        tags: ['admin'],
        summary: 'Replay one dead letter: deliver it again with a fresh attempt budget',
        params: Type.Object({ customerId: Uuid('The customer id of the dead letter.') }),
        response: {
          200: Type.Object({ replayed: Type.Literal(true), delivery: DeliverySchema }),
          ...problemResponses(404, 409),
        },
      },
    },
    async (request) => {
      const { customerId } = request.params;
      if (!(await store.replay(customerId))) {
        const delivery = await store.get(customerId);
        if (!delivery) throw notFound(`No delivery exists for customer ${customerId}.`);
        throw new HttpProblem(
          409,
          'not_a_dead_letter',
          `The delivery for customer ${customerId} is ${delivery.state}, not a dead letter; only dead letters can be replayed.`,
          { state: delivery.state },
        );
      }
      request.log.info(
        { customer_id: customerId },
        `Replaying dead letter for customer ID: ${customerId}`,
      );
      options.onReplay();
      return { replayed: true as const, delivery: toDelivery((await store.get(customerId))!) };
    },
  );

  api.post(
    '/api/dead-letters/replay',
    {
      schema: {
        tags: ['admin'],
        summary: 'Replay every dead letter',
        response: {
          200: Type.Object({ replayed: Type.Integer({ description: 'How many were replayed.' }) }),
        },
      },
    },
    async (request) => {
      const replayed = await store.replayAll();
      request.log.info(`Replaying ${replayed} dead letter(s)`);
      if (replayed > 0) options.onReplay();
      return { replayed };
    },
  );
};
