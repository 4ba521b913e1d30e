import { expect } from 'vitest';
import {
  checkWebhookTarget,
  WebhookTargetError,
  type ResolveHost,
  type WebhookTargetPolicy,
} from '../../src/core/webhooks/targets.js';

/**
 * A resolver with fixed answers, so names can be tested without DNS (this machine has none); an
 * unknown name fails as the system's resolver does (ENOTFOUND).
 */
export const fixedDns =
  (answers: Record<string, string[]>): ResolveHost =>
  async (host) => {
    const addresses = answers[host.toLowerCase()];
    if (!addresses) throw Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return addresses;
  };

/** Answers the refusal message of `checkWebhookTarget`, or fails the test when `url` is accepted. */
export async function refusal(
  url: string,
  policy: WebhookTargetPolicy = { allowPrivate: false },
): Promise<string> {
  const outcome = await checkWebhookTarget(url, policy).then(
    (accepted) => new Error(`${url} was accepted as ${accepted.href}`),
    (error: unknown) => error,
  );
  expect(outcome, url).toBeInstanceOf(WebhookTargetError);
  return (outcome as WebhookTargetError).message;
}
