import type dns from 'node:dns';
import { lookup } from 'node:dns/promises';
import net, { type LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';
import { HttpProblem } from '../errors.js';
import { portOf, type PrivateTargetAllowList } from './private-target-allow-list.js';
import { isNeverAdmitted, isPublicAddress } from './target-addresses.js';

/** Why a webhook target URL was refused; the message says what is allowed. */
export class WebhookTargetError extends Error {
  override name = 'WebhookTargetError';
  /** True when the host did not resolve (yet): the URL may be fine once DNS answers. */
  constructor(
    message: string,
    readonly unresolved = false,
  ) {
    super(message);
  }
}

/** Resolves a host name to all its addresses (a seam for tests, which have no DNS). */
export type ResolveHost = (host: string) => Promise<string[]>;

const resolveWithDns: ResolveHost = async (host) =>
  (await lookup(host, { all: true, verbatim: true })).map((entry) => entry.address);

/** Where webhooks may go besides the public internet. */
export interface WebhookTargetPolicy {
  /**
   * Admit every private, loopback and reserved address (`WEBHOOK_ALLOW_PRIVATE_TARGETS`); never
   * link-local nor cloud metadata ones.
   */
  allowPrivate: boolean;
  /** Private targets admitted by host or CIDR block (`WEBHOOK_ALLOWED_PRIVATE_TARGETS`). Default none. */
  allowList?: PrivateTargetAllowList;
  /** Resolves host names. Default the system's resolver (`dns.lookup`, as connections use). */
  resolve?: ResolveHost;
}

/**
 * Why a connection to `address` for the URL host `host` is refused, or undefined when it is not.
 * `hostAdmitted`: the allow-list names the host; `entry`: the entry that would admit it.
 */
function refusalOf(
  policy: WebhookTargetPolicy,
  target: { host: string; address: string; hostAdmitted: boolean; entry: string },
): string | undefined {
  const { host, address } = target;
  if (isNeverAdmitted(address)) {
    return `The webhook URL's host "${host}" resolves to ${address}, a link-local or cloud metadata address; those are never allowed, whatever WEBHOOK_ALLOW_PRIVATE_TARGETS and WEBHOOK_ALLOWED_PRIVATE_TARGETS say.`;
  }
  if (
    isPublicAddress(address) ||
    policy.allowPrivate ||
    target.hostAdmitted ||
    policy.allowList?.admitsAddress(address)
  ) {
    return undefined;
  }
  return `The webhook URL's host "${host}" resolves to ${address}, a private, loopback or reserved address; only public addresses are allowed. To allow it, add ${target.entry} (or a CIDR block holding ${address}) to WEBHOOK_ALLOWED_PRIVATE_TARGETS, a comma-separated list; link-local and cloud metadata addresses are never allowed.`;
}

/**
 * Checks a webhook target: `http`/`https` only, no credentials in it, never a link-local or cloud
 * metadata address, and a host whose every address is public unless the policy admits it, so the
 * CRM cannot be pointed at its own network (loopback, 10/8, 169.254.169.254…). Called when an
 * endpoint is created and again before every call, so a changed setting or DNS answer is caught.
 */
export async function checkWebhookTarget(
  target: string,
  policy: WebhookTargetPolicy,
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
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let addresses: string[];
  if (ipaddr.isValid(host)) {
    addresses = [host];
  } else {
    try {
      addresses = await (policy.resolve ?? resolveWithDns)(host);
    } catch {
      addresses = [];
    }
    // With private targets allowed, a name may not resolve yet (a container still starting): the
    // connection's own lookup checks its addresses when it is called.
    if (addresses.length === 0 && policy.allowPrivate) return url;
    if (addresses.length === 0) {
      throw new WebhookTargetError(`The host "${host}" of the webhook URL does not resolve.`, true);
    }
  }
  const port = portOf(url);
  const hostAdmitted = policy.allowList?.admitsHost(url.hostname, port) ?? false;
  const entry = `"${url.port ? url.host : `${url.hostname}:${port}`}"`;
  for (const address of addresses) {
    const refusal = refusalOf(policy, { host, address, hostAdmitted, entry });
    if (refusal !== undefined) throw new WebhookTargetError(refusal);
  }
  return url;
}

const refused = (message: string, code: string) =>
  Object.assign(new WebhookTargetError(message), { code });

/**
 * The socket `lookup` of webhook connections: it refuses names resolving to an address the policy
 * does not admit (link-local and metadata ones always). The address a connection uses is the one
 * checked here, so a name that answers an admitted address to `checkWebhookTarget` and another one
 * a moment later (DNS rebinding) still gets nowhere. It sees no port: an allow-list entry naming
 * the host admits it on any port here, the URL's port having been checked before the call.
 */
export function lookupWebhookTarget(policy: WebhookTargetPolicy): LookupFunction {
  const resolve = policy.resolve ?? resolveWithDns;
  return (hostname, options, callback) => {
    const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : options.family;
    resolve(hostname).then(
      (all) => {
        const addresses = family ? all.filter((address) => net.isIP(address) === family) : all;
        if (addresses.length === 0) {
          const message = `The host "${hostname}" of the webhook URL does not resolve.`;
          return callback(refused(message, 'ENOTFOUND'), '', 0);
        }
        const hostAdmitted = policy.allowList?.admitsHost(hostname) ?? false;
        for (const address of addresses) {
          const refusal = refusalOf(policy, {
            host: hostname,
            address,
            hostAdmitted,
            entry: `"${hostname}"`,
          });
          if (refusal !== undefined) return callback(refused(refusal, 'EWEBHOOKTARGET'), '', 0);
        }
        // net asks for every address when it tries them in turn (autoSelectFamily), else for one.
        if (options.all) {
          const entries = addresses.map((address) => ({ address, family: net.isIP(address) }));
          return (callback as (e: null, a: dns.LookupAddress[]) => void)(null, entries);
        }
        callback(null, addresses[0]!, net.isIP(addresses[0]!));
      },
      (error: NodeJS.ErrnoException) => callback(error, '', 0),
    );
  };
}

/**
 * `checkWebhookTarget` for an admin API: a refused target is a 422 problem with `code` whose
 * message says what is allowed. Answers the URL as the URL parser writes it.
 */
export async function admitWebhookTarget(
  target: string,
  policy: WebhookTargetPolicy,
  code: string,
): Promise<string> {
  try {
    return (await checkWebhookTarget(target, policy)).toString();
  } catch (error) {
    if (error instanceof WebhookTargetError) throw new HttpProblem(422, code, error.message);
    throw error;
  }
}
