import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { HttpProblem } from '../errors.js';
import { sendProblem } from './send-problem.js';

/** Methods that change nothing, so a page elsewhere may send them (it cannot read the answer). */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The host (name and port) of an `Origin` header, or undefined for `null` and garbage. */
function originHostOf(origin: string): string | undefined {
  try {
    return new URL(origin).host || undefined;
  } catch {
    return undefined;
  }
}

/** Why a browser's request came from another site, or undefined when it did not. */
function crossSiteReason(request: FastifyRequest): string | undefined {
  const fetchSite = request.headers['sec-fetch-site'];
  // Every current browser sends Sec-Fetch-Site; `none` is the user's own action (address bar).
  if (fetchSite !== undefined) {
    return fetchSite === 'same-origin' || fetchSite === 'none'
      ? undefined
      : `Sec-Fetch-Site: ${fetchSite}`;
  }
  const origin = request.headers.origin;
  if (origin === undefined) return undefined;
  const host = request.headers.host?.toLowerCase();
  return host !== undefined && originHostOf(origin)?.toLowerCase() === host
    ? undefined
    : `Origin: ${origin}`;
}

/**
 * Refuses every state-changing request a browser marks as sent from another origin, whatever it
 * carries: a page on any site could otherwise make the browser POST to a service on loopback
 * (a bodiless `fetch` in `no-cors` mode, or a form). Clients that are not browsers send neither
 * header and are not affected. The rule is Go's `http.CrossOriginProtection`: Sec-Fetch-Site
 * first, then Origin against Host.
 */
export const refuseCrossSiteWrites = fp(
  async (app) => {
    app.addHook('onRequest', async (request, reply) => {
      if (SAFE_METHODS.has(request.method)) return;
      const reason = crossSiteReason(request);
      if (reason === undefined) return;
      const problem = new HttpProblem(
        403,
        'cross_site_request',
        `Refused: a browser sent this ${request.method} from another site (${reason}). Changes are taken only from this service's own pages or from clients that are not browsers, such as curl or mip.`,
      );
      return sendProblem(request, reply, problem);
    });
  },
  { name: 'refuse-cross-site-writes' },
);
