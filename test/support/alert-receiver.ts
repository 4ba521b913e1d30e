import { Webhook } from 'standardwebhooks';
import type { AlertWebhook } from '../../src/contracts/alerts.js';
import type { TestApp } from './apps.js';
import { startReceiver, type ReceivedCall, type WebhookReceiver } from './webhook-receiver.js';

/** An alert as a receiver got it: its `webhook-id` and its body, the signature verified. */
export interface ReceivedAlert extends AlertWebhook {
  webhookId: string;
}

/**
 * Verifies a call as a Standard Webhooks receiver would (signature with `secret`, timestamp within
 * five minutes) and answers its alert; throws when the signature does not hold.
 */
export function verifyAlert(call: ReceivedCall, secret: string): ReceivedAlert {
  const headers = {
    'webhook-id': String(call.headers['webhook-id']),
    'webhook-timestamp': String(call.headers['webhook-timestamp']),
    'webhook-signature': String(call.headers['webhook-signature']),
  };
  const alert = new Webhook(secret).verify(call.body, headers) as AlertWebhook;
  return { ...alert, webhookId: headers['webhook-id'] };
}

/** A receiver of alerts; `alerts()` verifies every call made to it so far (and throws if one fails). */
export interface AlertReceiver extends WebhookReceiver {
  /** The signing secret, once the endpoint is registered. */
  secret: string;
  alerts(): ReceivedAlert[];
  /** The alerts of one type. */
  ofType(type: AlertWebhook['type']): ReceivedAlert[];
}

/** Starts a receiver (answering with `respond`) and registers it through the admin API. */
export async function startAlertReceiver(
  integration: Pick<TestApp<unknown>, 'app'>,
  respond?: Parameters<typeof startReceiver>[0],
): Promise<AlertReceiver> {
  const receiver = await startReceiver(respond);
  const registered = await integration.app.inject({
    method: 'POST',
    url: '/api/alert-endpoints',
    payload: { url: receiver.url },
  });
  if (registered.statusCode !== 201) {
    throw new Error(`registering the alert receiver: ${registered.statusCode} ${registered.body}`);
  }
  const { secret } = registered.json() as { secret: string };
  const alerts = () => receiver.calls.map((call) => verifyAlert(call, secret));
  return {
    ...receiver,
    secret,
    alerts,
    ofType: (type) => alerts().filter((alert) => alert.type === type),
  };
}
