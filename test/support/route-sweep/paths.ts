import { once } from 'node:events';
import fs from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import fc from 'fast-check';
import { expect } from 'vitest';
import { describeRequest, expectSafeAnswer, sweepRoute, type Answer } from './answers.js';
import { garbageHeaders, nastyText, percentEncode } from './nasty-text.js';
import { DASHBOARD_DIR, MUTATING_METHODS, urlFor, type Route, type Target } from './routes.js';

// Paths: parameters meant to escape or confuse routing, and climbs out of the dashboard's files.

/** Path segments meant to escape or confuse routing. No raw `/` or lone `.`: clients normalise those into other paths (RFC 3986 §5.2.4), which is not a trick. */
const PATH_TRICKS = [
  '..',
  '%2e%2e',
  '%2E%2E',
  '.%2e',
  '%252e%252e',
  '..%2f..%2fetc%2fpasswd',
  '..%5c..%5cpackage.json',
  '%00',
  'x%00y',
  '%',
  '%zz',
  '%E0%A4%A',
  '%C0%AE%C0%AE',
  'a'.repeat(101),
  'a'.repeat(10_000),
  '00000000-0000-0000-0000-00000000000',
  '00000000-0000-0000-0000-0000000000000',
  '000000000000000000000000000000000000',
  '{id}',
  ':id',
  '*',
  'null',
  '-1',
  '1e309',
  'NaN',
];

const pathTrick = fc.oneof(
  fc.constantFrom(...PATH_TRICKS),
  nastyText.map(percentEncode),
  fc.uuid().map((id) => `${id}%00`),
  fc.uuid().map((id) => `${id.toUpperCase()}x`),
);

/** True when `inject` can send this path: `//x` and `/\x` would name another host. */
function injectable(path: string): boolean {
  try {
    return new URL(path, 'http://localhost').host === 'localhost';
  } catch {
    return false;
  }
}

/** A GET sent as raw HTTP/1.0, so no client normalises the path first. */
async function rawGet(port: number, path: string): Promise<Answer> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  // Written, not ended: the server closes an HTTP/1.0 connection after its answer. (@fastify/static
  // sends nothing to a client that half-closes its side first.)
  socket.write(`GET ${path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n`);
  const chunks: Buffer[] = [];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  const headEnd = text.indexOf('\r\n\r\n');
  const head = text.slice(0, headEnd);
  const body = text.slice(headEnd + 4);
  return {
    statusCode: Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1]),
    headers: { 'content-type': /^content-type: *(.*)$/im.exec(head)?.[1] },
    body,
    json: () => JSON.parse(body) as unknown,
  };
}

/** Tricks in every path parameter (.., %2e%2e, %00, long ids, non-UUIDs): a 4xx. */
export async function sweepPathParameters(routes: Route[]): Promise<void> {
  for (const route of routes.filter((r) => r.pathParams.length > 0)) {
    await sweepRoute(route, () =>
      fc.assert(
        fc.asyncProperty(pathTrick, async (trick) => {
          const url = urlFor(
            route,
            Object.fromEntries(route.pathParams.map((p) => [p.name, trick])),
          );
          const response = await route.target.test.app.inject({
            method: route.method as 'GET',
            url,
            ...(MUTATING_METHODS.has(route.method)
              ? { headers: { 'content-type': 'application/json' }, payload: '{}' }
              : {}),
          });
          const context = describeRequest(route.method, url);
          expectSafeAnswer(response, context);
          expect(response.statusCode, context).toBeGreaterThanOrEqual(400);
        }),
        { numRuns: 40, examples: PATH_TRICKS.map((trick) => [trick]) },
      ),
    );
  }
}

/**
 * Path tricks against the dashboard's static files, in-process and over a raw socket: only the
 * dashboard's own files come back. `target` serves the dashboard, found at `staticPaths`.
 */
export async function sweepDashboardFiles(target: Target, staticPaths: string[]): Promise<void> {
  const files = fs
    .readdirSync(DASHBOARD_DIR)
    .map((name) => fs.readFileSync(`${DASHBOARD_DIR}/${name}`, 'utf8'));
  const outside = fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8');
  const expectOnlyDashboardFiles = (response: Answer, context: string) => {
    expectSafeAnswer(response, context);
    expect(response.body, context).not.toContain(outside.slice(0, 200));
    if (response.statusCode < 400) {
      // Only a dashboard file (or a byte range of one, for a Range header) may come back.
      expect([200, 206], context).toContain(response.statusCode);
      expect(response.body.length, context).toBeGreaterThan(0);
      expect(
        files.some((content) => content.includes(response.body)),
        context,
      ).toBe(true);
    }
  };
  const climb = fc.constantFrom(
    '..',
    '%2e%2e',
    '%2E%2E',
    '.%2e',
    '%252e%252e',
    '..%2f',
    '..%5c',
    '..\\',
    '%c0%ae%c0%ae',
    '....',
    '..;',
    '',
  );
  const destination = fc.constantFrom(
    'package.json',
    'etc/passwd',
    '.env.example',
    'src/core/http.ts',
    'public/dashboard/index.html',
    ...staticPaths.map((path) => path.slice(1)),
  );
  const suffix = fc.constantFrom(
    '',
    '%00',
    '%00.js',
    '%2500',
    '/',
    '%2f',
    '\\',
    '?x=../../package.json',
    '.',
    '%20',
    '::$DATA',
  );
  const separator = fc.constantFrom('/', '%2f', '%2F', '%252f', '\\', '%5c', '//');
  const trickPath = fc
    .tuple(fc.array(fc.tuple(climb, separator), { maxLength: 4 }), destination, suffix)
    .map(([ups, file, end]) => `/${ups.map(([up, sep]) => up + sep).join('')}${file}${end}`);
  const examples: Array<[string]> = [
    ['/../package.json'],
    ['/..%2fpackage.json'],
    ['/%2e%2e/%2e%2e/etc/passwd'],
    ['/index.html%00.js'],
    ['/..\\package.json'],
    ['/\\..\\package.json'],
    ['/%252e%252e/package.json'],
    ['/dashboard.js%00'],
    ['/index.html/../../package.json'],
    ['/../../package.json'],
    ['/../../../../../../../../etc/passwd'],
  ];

  // In-process, with garbage headers (Range, If-None-Match…); the client normalises `..`
  // and `\` first, and cannot send some paths at all, which the raw sweep below covers.
  await fc.assert(
    fc.asyncProperty(trickPath, garbageHeaders, async (url, headers) => {
      fc.pre(injectable(url));
      const response = await target.test.app.inject({ method: 'GET', url, headers });
      expectOnlyDashboardFiles(response, `GET ${url} with ${JSON.stringify(headers)}`);
    }),
    { numRuns: 150, examples: examples.map(([url]) => [url, {}]) },
  );

  // Over a socket, the request line reaches the router exactly as written.
  await target.test.app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = target.test.app.server.address() as AddressInfo;
  await fc.assert(
    fc.asyncProperty(trickPath, async (path) => {
      expectOnlyDashboardFiles(await rawGet(port, path), `raw GET ${path}`);
    }),
    { numRuns: 60, examples },
  );

  for (const path of staticPaths) {
    const response = await target.test.app.inject({ method: 'GET', url: path });
    expect(response.statusCode, path).toBe(200);
  }
}
