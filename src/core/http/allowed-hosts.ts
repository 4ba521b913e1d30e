import fp from 'fastify-plugin';
import { HttpProblem } from '../errors.js';
import { PROBE_PATHS } from './probes.js';
import { pathOf, sendProblem } from './send-problem.js';

/** Names that only ever reach this machine, so no other site can claim them through DNS. */
const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'];

export interface AllowedHostsOptions {
  /** Names served besides the loopback ones; a leading dot admits subdomains. Default none. */
  allowedHosts?: readonly string[] | undefined;
  /**
   * Whether the service has an API token. With one and no `allowedHosts`, any name is served: the
   * token, which a browser only sends to the site it was typed into, is the guard. Default false.
   */
  hasApiToken?: boolean | undefined;
}

/** The host name of a `Host` header, lower-cased, without its port (IPv6 keeps its brackets). */
export function hostNameOf(hostHeader: string): string {
  const host = hostHeader.trim().toLowerCase();
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1);
  const colon = host.indexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}

function isAllowed(name: string, allowed: readonly string[]): boolean {
  return allowed.some((entry) =>
    entry.startsWith('.') ? name === entry.slice(1) || name.endsWith(entry) : name === entry,
  );
}

/**
 * Serves only requests addressed to a loopback name or one in `ALLOWED_HOSTS`; anything else gets
 * `421`. Without it, a page whose domain re-resolves to 127.0.0.1 (DNS rebinding) could read and
 * drive a service that trusts loopback, as Vite and webpack-dev-server learnt. Probes stay open to
 * orchestrators, which address pods by IP.
 */
export const serveAllowedHostsOnly = fp<AllowedHostsOptions>(
  async (app, options) => {
    const extra = options.allowedHosts ?? [];
    if (options.hasApiToken && extra.length === 0) return;
    const allowed = [...LOOPBACK_NAMES, ...extra];
    app.addHook('onRequest', async (request, reply) => {
      const header = request.headers.host;
      // Only HTTP/1.0 clients omit Host, and browsers are not among them.
      if (header === undefined || header === '') return;
      if (isAllowed(hostNameOf(header), allowed)) return;
      if (PROBE_PATHS.has(pathOf(request))) return;
      const name = hostNameOf(header);
      const problem = new HttpProblem(
        421,
        'host_not_allowed',
        `This service does not answer to the name "${name}": it serves ${allowed.join(', ')}. If "${name}" is yours (a proxy or a DNS name for this machine), add it to ALLOWED_HOSTS (comma-separated) and restart${options.hasApiToken ? '' : ', or set API_TOKEN so callers authenticate'}.`,
        { host: name },
      );
      return sendProblem(request, reply, problem);
    });
  },
  { name: 'serve-allowed-hosts-only' },
);
