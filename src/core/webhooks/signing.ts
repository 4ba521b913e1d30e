import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';

/** A new Standard Webhooks signing secret: `whsec_` and 24 random bytes as base64. */
export function generateSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

/** True when `text` is a secret Standard Webhooks can sign with (`whsec_` and base64). */
export function isSigningSecret(text: string): boolean {
  return /^whsec_[A-Za-z0-9+/]{16,}={0,2}$/.test(text);
}

/** `webhook-signature`: one `v1,<base64>` per valid secret, space-separated (key rotation). */
export function signWebhook(secrets: string[], id: string, timestamp: Date, body: string): string {
  return secrets.map((secret) => new Webhook(secret).sign(id, timestamp, body)).join(' ');
}
