import { lookup } from 'node:dns/promises';
import ipaddr from 'ipaddr.js';

/** Why a webhook target URL was refused; the message says what is allowed. */
export class WebhookTargetError extends Error {
  override name = 'WebhookTargetError';
}

/** True for addresses on the public internet; false for loopback, private, link-local, metadata… */
export function isPublicAddress(address: string): boolean {
  if (!ipaddr.isValid(address)) return false;
  // IPv4-mapped IPv6 (::ffff:10.0.0.1) is judged as the IPv4 address it carries.
  const parsed = ipaddr.process(address);
  return parsed.range() === 'unicast';
}

/**
 * Checks a webhook target: `http`/`https` only, no credentials in it, and (unless private targets
 * are allowed) a host whose every address is public, so the CRM cannot be pointed at its own
 * network (loopback, 10/8, 169.254.169.254 cloud metadata…). Called when an endpoint is created
 * and again before every call, so a DNS answer that changed since then is caught too.
 */
export async function checkWebhookTarget(
  target: string,
  options: { allowPrivate: boolean },
): Promise<URL> {
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    throw new WebhookTargetError(
      `"${target}" is not a URL; give an absolute http:// or https:// URL.`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new WebhookTargetError(
      `Webhook URLs must use http or https, not ${url.protocol.replace(':', '')}.`,
    );
  }
  if (url.username || url.password) {
    throw new WebhookTargetError(
      'Webhook URLs must not contain credentials; the signature authenticates calls.',
    );
  }
  if (options.allowPrivate) return url;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let addresses: string[];
  if (ipaddr.isValid(host)) {
    addresses = [host];
  } else {
    try {
      addresses = (await lookup(host, { all: true, verbatim: true })).map((entry) => entry.address);
    } catch {
      throw new WebhookTargetError(`The host "${host}" of the webhook URL does not resolve.`);
    }
  }
  const blocked = addresses.find((address) => !isPublicAddress(address));
  if (blocked !== undefined) {
    throw new WebhookTargetError(
      `The webhook URL's host "${host}" resolves to ${blocked}, a private, loopback or reserved address; only public addresses are allowed (set WEBHOOK_ALLOW_PRIVATE_TARGETS=true to allow it).`,
    );
  }
  return url;
}
