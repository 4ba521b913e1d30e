import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { PauseAnswerSchema, type PauseAnswer } from '../contracts/admin-api.js';
import { actorOfRequest, backlogOf, pauseOf } from './routes.js';
import type { SyncStore } from './store/sync-store.js';

export interface ControlRoutesOptions {
  store: SyncStore;
  instanceId: string;
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
};
