import ipaddr from 'ipaddr.js';

/** The forms an entry of `WEBHOOK_ALLOWED_PRIVATE_TARGETS` may take, for error messages. */
export const ALLOW_LIST_FORMS =
  'each entry must be a host name or IP address, optionally with :port (IPv6 in brackets: [fd00::1]:8080), or a CIDR block (10.0.0.0/8, fd00::/8)';

/** Why an entry of the allow-list was refused; the message names the entry. */
export class AllowListEntryError extends Error {
  override name = 'AllowListEntryError';
  constructor(readonly entry: string) {
    super(`"${entry}" is not an allow-list entry; ${ALLOW_LIST_FORMS}`);
  }
}

type Address = ipaddr.IPv4 | ipaddr.IPv6;

type Entry =
  /** `host` is as the URL parser writes a hostname (lower case, IPv4 dotted, IPv6 bracketed). */
  | { kind: 'host'; host: string; port: number | undefined }
  | { kind: 'block'; block: [Address, number] };

/** A DNS name: letters, digits, `-` and `_` in dot-separated labels (no wildcards). */
const HOST_NAME =
  /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/** `host`, `host:port`, `[v6]` or `[v6]:port`; no user info, path or escapes the URL parser would read. */
const HOST_AND_PORT = /^(\[[0-9a-fA-F:.]+\]|[^[\]:@/?#\\%\s]+)(?::(\d{1,5}))?$/;

/** How the URL parser writes `host` (case, IPv4 notations, IPv6 compression); undefined if invalid. */
function urlHostname(host: string): string | undefined {
  try {
    return new URL(`http://${host}/`).hostname.replace(/\.$/, '');
  } catch {
    return undefined;
  }
}

/** The address `text` denotes, IPv4-mapped IPv6 judged as the IPv4 it carries; undefined if none. */
function parseAddress(text: string): Address | undefined {
  const bare = text.replace(/^\[|\]$/g, '');
  return ipaddr.isValid(bare) ? ipaddr.process(bare) : undefined;
}

function parseEntry(entry: string): Entry {
  if (entry.includes('/')) {
    const [address, bits] = entry.replace(/^\[([^\]]*)\]/, '$1').split('/');
    // Only plain notations: ipaddr.js would also read "10/8" as 0.0.0.10/8.
    const plain = ipaddr.IPv4.isValidFourPartDecimal(address!) || ipaddr.IPv6.isValid(address!);
    if (plain && /^\d{1,3}$/.test(bits ?? '')) {
      try {
        return { kind: 'block', block: ipaddr.parseCIDR(`${address}/${bits}`) };
      } catch {
        // A prefix length out of range: refused below.
      }
    }
    throw new AllowListEntryError(entry);
  }
  const match = HOST_AND_PORT.exec(entry);
  const host = match ? urlHostname(match[1]!) : undefined;
  const port = match?.[2] === undefined ? undefined : Number(match[2]);
  const isAddress = host !== undefined && ipaddr.isValid(host.replace(/^\[|\]$/g, ''));
  if (
    !host ||
    (!isAddress && !HOST_NAME.test(host)) ||
    (port !== undefined && (port < 1 || port > 65535))
  ) {
    throw new AllowListEntryError(entry);
  }
  return { kind: 'host', host, port };
}

/** The port a URL connects to: its own, or its scheme's default. */
export function portOf(url: URL): number {
  return url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
}

/**
 * `WEBHOOK_ALLOWED_PRIVATE_TARGETS`: the private places webhooks may go. A URL whose host (and
 * port, when the entry names one) is listed may resolve to private addresses; any URL may resolve
 * to private addresses inside a listed CIDR block. Link-local and metadata addresses are refused
 * before this list is asked.
 */
export class PrivateTargetAllowList {
  private constructor(private readonly entries: readonly Entry[]) {}

  /** The empty list (the default): no private target is admitted. */
  static readonly none = new PrivateTargetAllowList([]);

  /** Reads a comma-separated list; blank entries are skipped. Throws `AllowListEntryError`. */
  static parse(text: string): PrivateTargetAllowList {
    const entries = text
      .split(',')
      .map((entry) => entry.trim())
      .filter((entry) => entry !== '');
    return new PrivateTargetAllowList(entries.map(parseEntry));
  }

  /**
   * True when an entry names `hostname` (as `URL.hostname` gives it) and, if the entry has a port,
   * `port`. Without `port` any port matches: the socket's lookup sees no port, and the URL's port
   * was checked before the call.
   */
  admitsHost(hostname: string, port?: number): boolean {
    // The socket's lookup gets IPv6 hosts without brackets, URL.hostname with them.
    const bracketed = hostname.includes(':') && !hostname.startsWith('[');
    const host = urlHostname(bracketed ? `[${hostname}]` : hostname);
    return this.entries.some(
      (entry) =>
        entry.kind === 'host' &&
        entry.host === host &&
        (entry.port === undefined || port === undefined || entry.port === port),
    );
  }

  /** True when `address` falls in a listed CIDR block. */
  admitsAddress(address: string): boolean {
    const parsed = parseAddress(address);
    return this.entries.some(
      (entry) =>
        entry.kind === 'block' &&
        parsed !== undefined &&
        parsed.kind() === entry.block[0].kind() &&
        parsed.match(entry.block),
    );
  }
}
