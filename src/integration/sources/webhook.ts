import type { FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';
import type { WebhookStatus } from '../../contracts/admin-api.js';
import { retryDelayMs } from '../../core/backoff.js';
import { redactUrl } from '../../core/config.js';
import { HttpProblem } from '../../core/errors.js';
import { problemResponses } from '../../core/http.js';
import type { Logger } from '../../core/logging.js';
import { RepeatingTask } from '../../core/repeating-task.js';
import { verifyWebhookSignature } from '../../core/webhooks/signing.js';
import type { CrmClient } from '../crm-client.js';
import type { IntegrationMetrics } from '../metrics.js';
import type { RecordPushed } from '../store/inbox.js';
import { deliveryOfEvent } from '../store/new-delivery.js';
import { parsePushedCustomerEvent } from '../../contracts/customer-events.js';
import { MatchingString } from '../../core/validation-messages.js';
import type { Inbox, Source, SourceContext } from './source.js';

export const WEBHOOK_PATH = '/webhooks/crm';

export interface WebhookRegistrationStatus {
  registered: boolean;
  endpointId: string | undefined;
  url: string | undefined;
  lastError: string | undefined;
}

/**
 * Subscribes this service to the CRM's webhooks at start-up, idempotently: an endpoint already
 * registered for our URL is reused (and re-enabled if the CRM had disabled it), never duplicated.
 * Keeps the endpoint's signing secrets for the receiver, re-reading them after a rotation.
 */
export class WebhookRegistration {
  readonly status: WebhookRegistrationStatus = {
    registered: false,
    endpointId: undefined,
    url: undefined,
    lastError: undefined,
  };
  private secrets: string[] = [];
  private lastRefresh = 0;
  private task: RepeatingTask | undefined;

  constructor(
    private readonly crm: CrmClient,
    private readonly logger: Logger,
  ) {}

  /** Registers `url` in the background, retrying with backoff until the CRM answers. */
  start(url: string): void {
    this.status.url = url;
    let attempt = 0;
    this.task = new RepeatingTask(async () => {
      try {
        await this.register(url);
        return 'done';
      } catch (error) {
        attempt += 1;
        const delay = retryDelayMs(attempt, { baseMs: 500, maxDelayMs: 30_000 });
        this.status.lastError = (error as Error).message;
        this.logger.warn(
          `Could not register the webhook with the CRM (${this.status.lastError}); retrying in ${delay} ms`,
        );
        return delay;
      }
    });
    this.task.start();
  }

  async stop(): Promise<void> {
    await this.task?.stop();
  }

  private async register(url: string): Promise<void> {
    const existing = (await this.crm.listWebhookEndpoints()).find(
      (endpoint) => endpoint.url === url,
    );
    let id: string;
    if (existing) {
      id = existing.id;
      if (existing.status === 'disabled') await this.crm.enableWebhookEndpoint(id);
      await this.refreshSecrets(id);
    } else {
      const created = await this.crm.createWebhookEndpoint(url);
      id = created.id;
      this.secrets = [created.secret];
    }
    this.status.endpointId = id;
    this.status.registered = true;
    this.status.lastError = undefined;
    this.logger.info(
      { endpoint_id: id },
      `Receiving CRM webhooks at ${redactUrl(url, { everyValue: true })}`,
    );
  }

  private async refreshSecrets(id: string): Promise<void> {
    const { secret, previous_secret: previous } = await this.crm.webhookSecrets(id);
    this.secrets = previous ? [secret, previous] : [secret];
    this.lastRefresh = Date.now();
  }

  /** Secrets to verify with; after a failed verification, re-reads them (at most every 10 s). */
  async verifyingSecrets(afterFailure: boolean): Promise<string[]> {
    if (afterFailure && this.status.endpointId && Date.now() - this.lastRefresh > 10_000) {
      await this.refreshSecrets(this.status.endpointId).catch(() => undefined);
    }
    return this.secrets;
  }
}

export interface WebhookReceiverOptions {
  registration: WebhookRegistration;
  /** Records the message's customers and sees them delivered (the delivery worker's). */
  record: RecordPushed;
  metrics: IntegrationMetrics;
  logger: Logger;
}

/**
 * `POST /webhooks/crm`: verifies the signature over the raw body (constant-time, any of the
 * endpoint's current secrets, timestamp within ±5 min), records the customer and the webhook id in
 * one transaction (a redelivered id changes nothing) and answers 204 at once; the delivery to
 * Inventory happens in the background.
 */
export const webhookReceiver: FastifyPluginAsync<WebhookReceiverOptions> = async (app, options) => {
  // The signature covers the exact bytes sent, so keep them: parse JSON only after verifying.
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) =>
    done(null, body),
  );

  app.post(
    WEBHOOK_PATH,
    {
      // The CRM is its one caller; it retries on its own schedule, and a limit would only slow a
      // catch-up after an outage. Unsigned calls are refused before any work.
      config: { authenticatesItself: true, rateLimit: false },
      schema: {
        tags: ['webhooks'],
        summary: 'Receive CRM customer.created webhooks (Standard Webhooks signatures)',
        headers: Type.Object({
          'webhook-id': Type.String({ minLength: 1, maxLength: 255 }),
          'webhook-timestamp': MatchingString('^[0-9]{1,12}$', 'must be a Unix time in seconds'),
          'webhook-signature': Type.String({ minLength: 1, maxLength: 4096 }),
        }),
        description:
          'The body is `{"type":"customer.created","timestamp":"…","data":{"id","name","email","created_at"}}`. It is checked after the signature, against the exact bytes received.',
        response: { 204: Type.Null(), ...problemResponses(401) },
      },
    },
    async (request, reply) => {
      const body = request.body as Buffer;
      const { registration, record, metrics } = options;
      try {
        verifyWebhookSignature(await registration.verifyingSecrets(false), body, request.headers);
      } catch {
        try {
          verifyWebhookSignature(await registration.verifyingSecrets(true), body, request.headers);
        } catch (error) {
          metrics.pushRejected.inc({ source: 'webhook' });
          throw new HttpProblem(
            401,
            'invalid_signature',
            `The webhook signature did not verify (${(error as Error).message}); check the endpoint's secret and the sender's clock.`,
          );
        }
      }
      let payload: unknown;
      try {
        payload = JSON.parse(body.toString('utf8'));
      } catch (error) {
        throw new HttpProblem(
          400,
          'invalid_payload',
          `The webhook body is not JSON (${(error as Error).message}); send the event as a JSON object.`,
        );
      }
      const parsed = parsePushedCustomerEvent(payload);
      if (!parsed.ok) {
        throw new HttpProblem(
          400,
          'invalid_payload',
          `The webhook payload is not a customer event: ${parsed.problems.join('; ')}.`,
        );
      }
      const event = parsed.value;
      const messageId = request.headers['webhook-id'] as string;
      const delivery = deliveryOfEvent(
        {
          type: event.type,
          id: messageId,
          data: event.data,
          traceparent: request.headers.traceparent,
        },
        'webhook',
      );
      if (delivery && !delivery.ok) {
        throw new HttpProblem(
          400,
          'invalid_payload',
          `The webhook payload is a ${event.type} event whose data is not what that type carries: ${delivery.problems.join('; ')}.`,
        );
      }
      // A type this service does not handle is recorded with no delivery: its feed position counts
      // as seen, so the repair need not read it again.
      if (!delivery) request.log.debug(`Ignoring webhook of type ${event.type}`);
      const accepted = await record(
        { id: messageId, source: 'webhook', feedPosition: event.position },
        delivery ? [delivery.value] : [],
      );
      if (accepted === undefined) metrics.pushDuplicates.inc({ source: 'webhook' });
      return reply.code(204).send(null);
    },
  );
};

export interface WebhookSourceOptions {
  crm: CrmClient;
  /** URL the CRM should POST webhooks to. Default: this service's own `/webhooks/crm`. */
  url?: string | undefined;
  metrics: IntegrationMetrics;
  logger: Logger;
}

/** `SYNC_MODE=webhook` and `hybrid`: the CRM's webhooks, subscribed to at start. */
export class WebhookSource implements Source {
  readonly name = 'webhook';
  readonly statusField = 'webhook';
  readonly routes: FastifyPluginAsync;
  private readonly registration: WebhookRegistration;
  private inbox: Inbox | undefined;

  constructor(private readonly options: WebhookSourceOptions) {
    this.registration = new WebhookRegistration(options.crm, options.logger);
    const receiverOptions: WebhookReceiverOptions = {
      registration: this.registration,
      record: (message, items) => {
        // Nothing verifies before start (no signing secret yet), so this is a safeguard only.
        if (!this.inbox) throw new HttpProblem(503, 'not_started', 'Not started yet; retry.');
        return this.inbox.recordPushed(message, items);
      },
      metrics: options.metrics,
      logger: options.logger,
    };
    this.routes = async (app) => {
      await app.register(webhookReceiver, receiverOptions);
    };
  }

  start(inbox: Inbox, listening: { url: string }): void {
    this.inbox = inbox;
    this.registration.start(this.options.url ?? `${listening.url}${WEBHOOK_PATH}`);
  }

  async stop(): Promise<void> {
    await this.registration.stop();
  }

  async details(): Promise<WebhookStatus> {
    const { status } = this.registration;
    return {
      registered: status.registered,
      endpoint_id: status.endpointId ?? null,
      url: status.url ?? null,
      last_error: status.lastError ?? null,
    };
  }

  /**
   * Ready while not subscribed: the feed repair beside this source brings what webhooks do not,
   * only later. The status shows the subscription's state and its last error.
   */
  notReadyReason(): undefined {
    return undefined;
  }
}

/** The webhook source with the service's settings. */
export const createWebhookSource = ({ config, crm, metrics, logger }: SourceContext) =>
  new WebhookSource({ crm, url: config.webhookUrl, metrics, logger });
