import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import helmet from 'helmet';

/** sha256 of `.logo_small_svg__cls-2{fill:#fff}.logo_small_svg__cls-3{fill:#85ea2d}`. */
const SWAGGER_LOGO_STYLE_SHA256 = 'RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w=';

/**
 * The Content-Security-Policy of every answer: the dashboard and Swagger UI load only their own
 * scripts, styles and data (no inline script), and no page may frame them, so a site cannot
 * overlay a "Replay all" button with its own (clickjacking).
 */
export const CONTENT_SECURITY_POLICY = {
  'default-src': ["'self'"],
  'base-uri': ["'none'"],
  'connect-src': ["'self'"],
  'font-src': ["'self'", 'data:'],
  'form-action': ["'self'"],
  'frame-ancestors': ["'none'"],
  'img-src': ["'self'", 'data:'],
  'object-src': ["'none'"],
  'script-src': ["'self'"],
  'script-src-attr': ["'none'"],
  // The one inline <style> Swagger UI draws: its logo's colours (the browser test of the dashboard
  // and /docs fails on any other).
  'style-src': ["'self'", `'sha256-${SWAGGER_LOGO_STYLE_SHA256}'`],
};

const HELMET_OPTIONS = {
  // Not helmet's default set: it upgrades requests to HTTPS, which breaks plain-HTTP hosts.
  contentSecurityPolicy: { useDefaults: false as const, directives: CONTENT_SECURITY_POLICY },
  frameguard: { action: 'deny' as const },
  referrerPolicy: { policy: 'no-referrer' as const },
  strictTransportSecurity: false,
};

/**
 * The headers helmet sets with the options above, worked out once: they are the same on every
 * answer (no nonce, nothing read from the request), and helmet builds them anew for each one,
 * the Content-Security-Policy string included.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = (() => {
  const headers: Record<string, string> = {};
  const recorder = {
    setHeader: (name: string, value: unknown) => {
      headers[name.toLowerCase()] = String(value);
    },
    removeHeader: () => undefined,
  };
  helmet(HELMET_OPTIONS)(
    {} as IncomingMessage,
    recorder as unknown as ServerResponse,
    () => undefined,
  );
  return Object.freeze(headers);
})();

/** Sets the headers on an answer no hook sees: Fastify's own routing errors (a malformed URL). */
export function setSecurityHeaders(_request: FastifyRequest, reply: FastifyReply): void {
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) reply.raw.setHeader(name, value);
}

/**
 * Security headers on every answer, as helmet makes them: the CSP above, `X-Frame-Options: DENY`
 * for browsers without `frame-ancestors`, `X-Content-Type-Options: nosniff`, `Referrer-Policy:
 * no-referrer` and the Cross-Origin-*-Policy headers. HSTS is left to the TLS proxy in front: a
 * service on plain HTTP cannot know which names will be served over HTTPS.
 */
export const sendSecurityHeaders = fp(
  async (app) => {
    app.addHook('onRequest', (_request, reply, done) => {
      reply.headers(SECURITY_HEADERS);
      done();
    });
  },
  { name: 'send-security-headers' },
);
