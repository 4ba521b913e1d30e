import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedCall {
  method: string | undefined;
  url: string | undefined;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface WebhookReceiver {
  /** `http://127.0.0.1:<port>/hooks` */
  url: string;
  /** Every request it got, in order. */
  calls: ReceivedCall[];
  close(): Promise<void>;
}

/** A webhook receiver on 127.0.0.1 that records calls and answers with `respond` (200 by default). */
export async function startReceiver(
  respond: (call: number) => { status: number; headers?: Record<string, string> } = () => ({
    status: 200,
  }),
): Promise<WebhookReceiver> {
  const calls: ReceivedCall[] = [];
  const server = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      calls.push({ method: request.method, url: request.url, headers: request.headers, body });
      const answer = respond(calls.length);
      response.writeHead(answer.status, answer.headers ?? {});
      response.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`,
    calls,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
