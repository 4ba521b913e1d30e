import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import {
  generateSecret,
  signWebhook,
  verifyWebhookSignature,
} from '../../../src/core/webhooks/signing.js';

// The reference implementation (standardwebhooks, by the specification's authors) is what our
// node:crypto signing must agree with, both ways.
const body = JSON.stringify({ type: 'customer.created', data: { id: 'c1', name: 'Zoë ✓' } });
const id = 'msg_2LJm0';
const at = new Date('2026-12-04T01:00:00Z');
const headersFor = (signature: string, timestamp = at) => ({
  'webhook-id': id,
  'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
  'webhook-signature': signature,
});

describe('Standard Webhooks signatures', () => {
  it('are the ones the reference implementation makes, one per secret during a rotation', () => {
    const [current, previous] = [generateSecret(), generateSecret()];
    expect(signWebhook([current], id, at, body)).toBe(new Webhook(current).sign(id, at, body));
    expect(signWebhook([current, previous], id, at, body)).toBe(
      `${new Webhook(current).sign(id, at, body)} ${new Webhook(previous).sign(id, at, body)}`,
    );
    // The reference checks the timestamp against its own clock.
    const now = new Date();
    const signed = headersFor(signWebhook([current, previous], id, now, body), now);
    expect(new Webhook(previous).verify(body, signed)).toEqual(JSON.parse(body));
  });

  it("verify what the reference signs, with any of the receiver's secrets", () => {
    const [current, previous] = [generateSecret(), generateSecret()];
    const signed = headersFor(new Webhook(previous).sign(id, at, body));
    expect(() =>
      verifyWebhookSignature([current, previous], Buffer.from(body), signed, at.getTime()),
    ).not.toThrow();
    // Another signature version beside it is skipped, not a failure.
    const mixed = { ...signed, 'webhook-signature': `v2,abc ${signed['webhook-signature']}` };
    expect(() =>
      verifyWebhookSignature([previous], Buffer.from(body), mixed, at.getTime()),
    ).not.toThrow();
  });

  it('refuse a changed body or id, an unknown key, a stale or future timestamp and missing headers', () => {
    const secret = generateSecret();
    const signed = headersFor(signWebhook([secret], id, at, body));
    const now = at.getTime();
    const refusal = (
      headers: Record<string, string | undefined>,
      bytes = body,
      secrets = [secret],
      when = now,
    ) => {
      try {
        verifyWebhookSignature(secrets, Buffer.from(bytes), headers, when);
        return 'accepted';
      } catch (error) {
        return (error as Error).message;
      }
    };
    expect(refusal(signed)).toBe('accepted');
    expect(refusal(signed, body.replace('c1', 'c2'))).toBe('No matching signature found');
    expect(refusal({ ...signed, 'webhook-id': 'msg_other' })).toBe('No matching signature found');
    expect(refusal(signed, body, [generateSecret()])).toBe('No matching signature found');
    expect(refusal(signed, body, [])).toBe('no signing secret yet');
    expect(refusal(signed, body, [secret], now + 301_000)).toBe('Message timestamp too old');
    expect(refusal(signed, body, [secret], now - 301_000)).toBe('Message timestamp too new');
    expect(refusal(signed, body, [secret], now + 299_000)).toBe('accepted');
    expect(refusal({ ...signed, 'webhook-signature': undefined })).toBe('Missing required headers');
    expect(refusal({ ...signed, 'webhook-timestamp': '12x' })).toBe('Invalid timestamp header');
    // A secret with no key bytes signs nothing, and verifies nothing.
    expect(() => signWebhook(['whsec_'], id, at, body)).toThrow(/empty/);
    expect(refusal(signed, body, ['whsec_!!!'])).toMatch(/empty/);
    // A signature of the wrong length is compared safely, and refused.
    expect(refusal({ ...signed, 'webhook-signature': 'v1,AAAA' })).toBe(
      'No matching signature found',
    );
  });
});
