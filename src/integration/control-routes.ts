import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import {
  PauseAnswerSchema,
  ResyncAnswerSchema,
  ResyncRequestSchema,
  type PauseAnswer,
} from '../contracts/admin-api.js';
import { HttpProblem } from '../core/errors.js';
import { problemResponses } from '../core/http.js';
import { epochMsOfField } from '../core/iso.js';
import type { CrmClient } from './crm-client.js';
import { positionBefore } from './resync.js';
import { FEED_CURSOR } from './sources/feed.js';
import { actorOfRequest, backlogOf, pauseOf, upstreamUnavailable } from './routes.js';
import type { SyncStore } from './store/sync-store.js';

export interface ControlRoutesOptions {
  store: SyncStore;
  instanceId: string;
  /** Reads the CRM feed (to find the position of a time). */
  crm: Pick<CrmClient, 'readEvents'>;
  /** Called after a resume so the worker looks for due work at once. */
  onResume: () => void;
}

/** Pausing and resuming delivery to Inventory: `POST /api/delivery/pause` and `…/resume`. */
export const controlRoutes: FastifyPluginAsync<ControlRoutesOptions> = async (app, options) => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { controls, readModels } = options.store;
  const answer = async (changed: boolean): Promise<PauseAnswer> => ({
    paused: pauseOf(await controls.read()),
    changed,
    backlog: backlogOf(await readModels.countByState()),
  });

  api.post(
    '/api/delivery/pause',
    {
      schema: {
        tags: ['admin'],
        summary:
          'Pause delivery to Inventory on every instance: events are still recorded, nothing is sent, nothing dead-letters',
        response: { 200: PauseAnswerSchema },
      },
    },
    async (request) => {
      const changed = await controls.pause(actorOfRequest(request, options.instanceId));
      if (changed) request.log.warn('Delivery to Inventory paused');
      return answer(changed);
    },
  );

  api.post(
    '/api/delivery/resume',
    {
      schema: {
        tags: ['admin'],
        summary: 'Resume delivery to Inventory: the backlog goes out (at INVENTORY_MAX_RPS)',
        response: { 200: PauseAnswerSchema },
      },
    },
    async (request) => {
      const changed = await controls.resume(actorOfRequest(request, options.instanceId));
      if (changed) {
        request.log.info('Delivery to Inventory resumed');
        options.onResume();
      }
      return answer(changed);
    },
  );

  api.post(
    '/api/resync',
    {
      schema: {
        tags: ['admin'],
        summary:
          'Read the CRM feed again from a position or a time: newer customer states are taken, nothing is duplicated',
        body: ResyncRequestSchema,
        response: { 200: ResyncAnswerSchema, ...problemResponses(502) },
      },
    },
    async (request) => {
      const { since_position: sincePosition, since } = request.body;
      if ((sincePosition === undefined) === (since === undefined)) {
        throw new HttpProblem(
          400,
          'invalid_request',
          'Give exactly one of since_position (a feed position, 0 for the start) or since (a time such as 2026-12-03T09:00:00Z).',
        );
      }
      const sinceMs = epochMsOfField('since', since);
      let to = sincePosition ?? 0;
      if (sinceMs !== undefined) {
        try {
          to = await positionBefore(
            options.crm,
            sinceMs,
            await options.store.leases.readCursor(FEED_CURSOR),
          );
        } catch (error) {
          throw upstreamUnavailable(
            request,
            error,
            'crm_unavailable',
            'The CRM feed could not be read to find where that time starts (see the service log). Try again, or give since_position.',
          );
        }
      }
      const answer = await options.store.controls.resync(
        actorOfRequest(request, options.instanceId),
        FEED_CURSOR,
        to,
      );
      request.log.info(answer, `Resync: reading the CRM feed again from ${answer.from}`);
      return answer;
    },
  );
};
