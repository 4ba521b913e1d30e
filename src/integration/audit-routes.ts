import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { AuditSchema, CustomerResyncSchema, NewAuditSchema } from '../contracts/audit.js';
import { HttpProblem, notFound } from '../core/errors.js';
import { problemResponses } from '../core/http.js';
import { Uuid } from '../core/schemas.js';
import type { AuditJobs } from './audit/audit-jobs.js';
import { resyncCustomer, type ResyncCustomerOptions } from './audit/resync-customer.js';
import { actorOfRequest, upstreamUnavailable } from './routes.js';
import type { AuditsRepository } from './store/audits.js';

export interface AuditRoutesOptions extends ResyncCustomerOptions {
  audits: AuditsRepository;
  jobs: AuditJobs;
  instanceId: string;
  /** Called after a customer was sent again, so the worker looks for due work at once. */
  onResent: () => void;
}

/** Most audits `GET /api/audits` lists. */
const AUDITS_LISTED = 20;

/** Audits (`/api/audits`) and the resync of one customer (`/api/customers/{id}/resync`). */
export const auditRoutes: FastifyPluginAsync<AuditRoutesOptions> = async (app, options) => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const AuditId = Type.Object({ id: Uuid('The audit id.') });

  api.post(
    '/api/audits',
    {
      schema: {
        tags: ['admin'],
        summary: 'Start an audit: compare the CRM with Inventory in the background',
        description:
          'Answers 202 with the audit; follow it at `GET /api/audits/{id}` (its `Location`). One audit runs at a time across instances: while one runs, the answer is 409 naming it. With `repair`, each customer whose drift the pipeline can fix is sent through it again.',
        body: NewAuditSchema,
        response: { 202: AuditSchema, ...problemResponses(409) },
      },
      // Without a body, an audit that only reports.
      preValidation: async (request) => {
        if (request.body === undefined) request.body = {};
      },
    },
    async (request, reply) => {
      const actor = actorOfRequest(request, options.instanceId);
      const { audit, started } = await options.jobs.start(request.body.repair ?? false, actor);
      if (!started) {
        throw new HttpProblem(
          409,
          'audit_running',
          `Audit ${audit.id} is running (started ${audit.started_at} on ${audit.instance}); follow it at /api/audits/${audit.id}, or wait for it to finish.`,
          { audit_id: audit.id },
        );
      }
      request.log.info(`Audit ${audit.id} started${audit.repair ? ' (repairing)' : ''}`);
      return reply.code(202).header('location', `/api/audits/${audit.id}`).send(audit);
    },
  );

  api.get(
    '/api/audits',
    {
      schema: {
        tags: ['admin'],
        summary: `The latest audits (at most ${AUDITS_LISTED}), newest first`,
        response: { 200: Type.Array(AuditSchema) },
      },
    },
    async () => options.audits.list(AUDITS_LISTED),
  );

  api.get(
    '/api/audits/:id',
    {
      schema: {
        tags: ['admin'],
        summary: 'One audit: its progress, or its counts and examples of drift',
        params: AuditId,
        response: { 200: AuditSchema, ...problemResponses(404) },
      },
    },
    async (request) => {
      const audit = await options.audits.get(request.params.id);
      if (!audit)
        throw notFound(`No audit has id ${request.params.id}; GET /api/audits lists them.`);
      return audit;
    },
  );

  api.post(
    '/api/customers/:id/resync',
    {
      schema: {
        tags: ['admin'],
        summary: 'Send one customer through the pipeline again, from what the CRM holds now',
        description:
          'Idempotent and safe: Inventory keeps one package per customer, and an older state never overwrites a newer one. The customer’s timeline shows the resync and the attempts that follow.',
        params: Type.Object({ id: Uuid('The CRM customer id.') }),
        response: { 200: CustomerResyncSchema, ...problemResponses(404, 502) },
      },
    },
    async (request) => {
      const actor = actorOfRequest(request, options.instanceId);
      let answer;
      try {
        answer = await resyncCustomer(request.params.id.toLowerCase(), actor, options);
      } catch (error) {
        if (error instanceof HttpProblem) throw error;
        throw upstreamUnavailable(
          request,
          error,
          'upstream_unavailable',
          `Reading the customer from the CRM and Inventory failed: ${(error as Error).message}. Try again once both answer.`,
        );
      }
      if (answer.sent) options.onResent();
      request.log.info(answer, `Customer ${answer.customer_id} resynced`);
      return answer;
    },
  );
};
