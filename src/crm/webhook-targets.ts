import dns from 'node:dns';
import { lookup } from 'node:dns/promises';
import type { LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';

/** Why a webhook target URL was refused; the message says what is allowed. */
export class WebhookTargetError extends Error {
  override name = 'WebhookTargetError';
}

/**
 * The only IPv6 block allocated for global unicast (RFC 4291). ipaddr.js calls everything it has no
 * special range for "unicast", including IPv4-compatible addresses (::7f00:1 is ::127.0.0.1) and
 * unallocated space, so IPv6 must also fall inside this block.
 */
const GLOBAL_UNICAST_IPV6 = ipaddr.IPv6.parseCIDR('2000::/3');

/** Resolves a host name to all its addresses (a seam for tests, which have no DNS). */
export type ResolveHost = (host: string) => Promise<string[]>;

const resolveWithDns: ResolveHost = async (host) =>
  (await lookup(host, { all: true, verbatim: true })).map((entry) => entry.address);

/** True for addresses on the public internet; false for loopback, private, link-local, metadata… */
export function isPublicAddress(address: string): boolean {
  if (!ipaddr.isValid(address)) return false;
  // IPv4-mapped IPv6 (::ffff:10.0.0.1) is judged as the IPv4 address it carries.
  const parsed = ipaddr.process(address);
  if (parsed.kind() === 'ipv6' && !parsed.match(GLOBAL_UNICAST_IPV6)) return false;
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
  options: { allowPrivate: boolean; resolve?: ResolveHost },
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
      addresses = await (options.resolve ?? resolveWithDns)(host);
    } catch {
      addresses = [];
    }
    if (addresses.length === 0) {
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

/**
 * A socket `lookup` that refuses names resolving to anything but public addresses. The address a
 * connection uses is the one checked here, so a name that answers a public address to
 * `checkWebhookTarget` and a private one a moment later (DNS rebinding) still gets nowhere.
 */
export const lookupPublicOnly: LookupFunction = (hostname, options, callback) => {
  dns.lookup(hostname, { ...options, all: true }, (error, addresses) => {
    if (error) return callback(error, '', 0);
    const blocked = addresses.find((entry) => !isPublicAddress(entry.address));
    if (blocked || addresses.length === 0) {
      const refusal = Object.assign(
        new WebhookTargetError(
          `The webhook URL's host "${hostname}" resolves to ${blocked?.address ?? 'nothing'}, a private, loopback or reserved address; only public addresses are allowed.`,
        ),
        { code: 'EWEBHOOKTARGET' },
      );
      return callback(refusal, '', 0);
    }
    // net asks for every address when it tries them in turn (autoSelectFamily), else for one.
    if (options.all)
      return (callback as (e: null, a: dns.LookupAddress[]) => void)(null, addresses);
    callback(null, addresses[0]!.address, addresses[0]!.family);
  });
};
