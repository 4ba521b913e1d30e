import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import {
  DELIVERY_STATE_LABELS,
  DELIVERY_STATES,
  DeliveryListSchema,
  DeliveryStateSchema,
  LIST_LIMIT_MAX,
  ReplayAllSchema,
  ReplayFilterSchema,
  ReplayOneSchema,
  StatusSchema,
  type Delivery,
  type DeliveryState,
  type Status,
} from '../contracts/admin-api.js';
import { HttpProblem, notFound } from '../core/errors.js';
import { problemResponses } from '../core/http.js';
import { Uuid } from '../core/schemas.js';
import type { CircuitState } from './circuit.js';
import type { SyncMode } from './config.js';
import { epochMsOfField, isoOrNull as iso } from '../core/iso.js';
import type { DeliveryRow } from './migrations.js';
import { readSourceStatus, type Source } from './sources/source.js';
import type { PauseState } from './store/controls.js';
import type { Actor, DeadLetterFilter } from './store/read-models.js';
import type { SyncStore } from './store/sync-store.js';
import { FEED_CURSOR } from './sources/feed.js';

export interface AdminRoutesOptions {
  store: SyncStore;
  mode: SyncMode;
  instanceId: string;
  /** The sources the mode runs, each shown in the status. */
  sources: readonly Source[];
  circuit: () => CircuitState;
  cursor: () => Promise<number>;
  /** Called after a replay so the worker looks for due work at once. */
  onReplay: () => void;
}

/** A delivery row as the admin API shows it. */
export function toDelivery(row: DeliveryRow): Delivery {
  const waiting = row.state === 'pending' || row.state === 'retrying';
  return {
    customer_id: row.customer_id,
    customer_name: row.customer_name,
    customer_version: Number(row.customer_version),
    customer_deleted: row.customer_deleted_at !== null,
    state: row.state,
    operation: row.operation,
    outcome: row.outcome,
    applied_version: row.applied_version === null ? null : Number(row.applied_version),
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
      maximum: LIST_LIMIT_MAX,
      default: 100,
      description: 'At most this many (default 100).',
    }),
  },
  { additionalProperties: false },
);

/** Who makes an operator's request, for the timeline: its access scope, on this instance. */
export const actorOfRequest = (request: FastifyRequest, instanceId: string): Actor => ({
  who: request.accessScope,
  instance: instanceId,
});

/**
 * 502 for a call to the CRM (or Inventory) that failed while answering an operator: the request
 * was fine, so the answer says what to try, and the log keeps why the call failed.
 */
export function upstreamUnavailable(
  request: FastifyRequest,
  error: unknown,
  code: 'crm_unavailable' | 'upstream_unavailable',
  detail: string,
): HttpProblem {
  request.log.warn({ err: error }, detail);
  return new HttpProblem(502, code, detail);
}

/** Deliveries still to be made, of the counts by state. */
export const backlogOf = (counts: Record<DeliveryState, number>) =>
  counts.pending + counts.retrying + counts.delivering;

/** A pause as the admin API shows it, or null while delivery runs. */
export const pauseOf = (state: PauseState) =>
  state.since === null ? null : { since: new Date(state.since).toISOString(), by: state.by };

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
  const store = options.store.readModels;
  const actorOf = (request: FastifyRequest): Actor => actorOfRequest(request, options.instanceId);

  const readStatus = async (): Promise<Status> => {
    const sources = await Promise.all(options.sources.map(readSourceStatus));
    // The fields that showed each source before `sources` did, kept for older clients.
    const byField = Object.fromEntries(
      options.sources.flatMap((source, index) =>
        source.statusField ? [[source.statusField, sources[index]!.details]] : [],
      ),
    ) as Partial<Pick<Status, 'poll' | 'webhook' | 'amqp'>>;
    const deliveries = await store.countByState();
    return {
      mode: options.mode,
      instance_id: options.instanceId,
      cursor: await options.cursor(),
      deliveries,
      circuit: options.circuit(),
      paused: pauseOf(await options.store.controls.read()),
      backlog: backlogOf(deliveries),
      resync: (await options.store.leases.readResync(FEED_CURSOR)) ?? null,
      poll: null,
      webhook: null,
      amqp: null,
      ...byField,
      sources,
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
            recent: DeliveryListSchema,
            dead_letters: DeliveryListSchema,
            states: Type.Array(Type.Object({ state: DeliveryStateSchema, label: Type.String() }), {
              description: 'Every delivery state and how people read it, in order.',
            }),
            access: Type.Union([Type.Literal('admin'), Type.Literal('read')], {
              description:
                'What the caller may do: `read` (API_READ_TOKEN) sees everything but may not replay.',
            }),
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
        states: DELIVERY_STATES.map((state) => ({ state, label: DELIVERY_STATE_LABELS[state] })),
        access: request.accessScope,
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
        response: { 200: DeliveryListSchema },
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
        response: { 200: DeliveryListSchema },
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
          200: ReplayOneSchema,
          ...problemResponses(404, 409),
        },
      },
    },
    async (request) => {
      const { customerId } = request.params;
      if (!(await store.replay(customerId, actorOf(request)))) {
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
        summary:
          'Replay every dead letter, or those a filter takes; `dry_run` counts them and replays nothing',
        body: ReplayFilterSchema,
        response: { 200: ReplayAllSchema },
      },
      // A bulk replay without a body, as before filters existed, replays every dead letter.
      preValidation: async (request) => {
        // Only a missing body: a JSON `null` is refused like any other non-object.
        if (request.body === undefined) request.body = {};
      },
    },
    async (request) => {
      const { body } = request;
      const since = epochMsOfField('since', body.since);
      const filter: DeadLetterFilter = {
        since,
        errorContains: body.error_contains,
        status: body.status,
      };
      const matched = await store.countDead(filter);
      if (body.dry_run) return { matched, replayed: 0, dry_run: true };
      const replayed = await store.replayAll(actorOf(request), filter);
      request.log.info(`Replaying ${replayed} dead letter(s)`);
      if (replayed > 0) options.onReplay();
      return { matched, replayed, dry_run: false };
    },
  );
};
