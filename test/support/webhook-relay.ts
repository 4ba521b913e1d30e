import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { HOP_BY_HOP } from './fault-proxy.js';
import { sleep } from './processes.js';

export interface WebhookRelayOptions {
  /** Each forward waits a random 0 to this many ms, so pushes overtake each other. */
  maxDelayMs: number;
  /** Share of pushes forwarded a second time, after a delay of its own. */
  duplicateRate: number;
}

/** What the relay saw and did, for the report. */
export interface RelayCounts {
  received: number;
  forwarded: number;
  duplicated: number;
  /** Forwards that got no answer (the receiver down or killed) or a non-2xx one. */
  failed: number;
}

/**
 * An unreliable network between the CRM's webhook sender and the integration service's receiver:
 * each push is forwarded with its headers and body unchanged (so its signature still verifies)
 * after a random delay, so pushes arrive out of order, and some a second time, later still.
 *
 * The CRM is answered with the first forward's answer, only once it came back: a push counts as
 * delivered only when the integration service recorded it, so no push is lost here and the CRM's
 * retries stay what guarantees push delivery. Answering 204 at once would make the relay drop
 * every push forwarded into a killed process, and leave the feed repair alone to find them: a loss
 * the platform never caused, hiding whether its own retries work. The duplicate is forwarded on
 * its own, its answer ignored.
 */
export class WebhookRelay {
  /** Where pushes go, e.g. the integration service's `/webhooks/crm`; 503 until it is set. */
  target: string | undefined;
  readonly counts: RelayCounts = { received: 0, forwarded: 0, duplicated: 0, failed: 0 };
  private server: http.Server | undefined;
  private stopped = false;

  constructor(
    private readonly random: () => number,
    private readonly options: WebhookRelayOptions = { maxDelayMs: 2_000, duplicateRate: 0.3 },
  ) {}

  /** Listens on a free port; answers the URL to give the CRM. */
  async start(): Promise<string> {
    this.server = http.createServer((request, response) => {
      void this.relay(request, response).catch(() => response.destroy());
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/webhooks/crm`;
  }

  /** Stops listening; forwards still waiting are dropped. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }

  private async relay(request: http.IncomingMessage, response: http.ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    this.counts.received += 1;
    const headers: Record<string, string> = {};
    for (const [key, value] of Object.entries(request.headers)) {
      if (!HOP_BY_HOP.has(key) && typeof value === 'string') headers[key] = value;
    }
    if (this.random() < this.options.duplicateRate) {
      this.counts.duplicated += 1;
      void this.forward(headers, body).catch(() => undefined);
    }
    let answer: { status: number; body: Buffer; type: string };
    try {
      answer = await this.forward(headers, body);
    } catch (error) {
      answer = {
        status: 502,
        body: Buffer.from(`relay: ${(error as Error).message}`),
        type: 'text/plain',
      };
    }
    if (response.destroyed) return;
    response.writeHead(answer.status, { 'content-type': answer.type });
    response.end(answer.body);
  }

  /** Forwards one push after a random delay; answers the receiver's answer, or throws. */
  private async forward(headers: Record<string, string>, body: Buffer) {
    await sleep(Math.floor(this.random() * this.options.maxDelayMs));
    if (this.stopped) throw new Error('relay stopped');
    if (!this.target) {
      this.counts.failed += 1;
      return { status: 503, body: Buffer.from('relay: no target yet'), type: 'text/plain' };
    }
    try {
      const answer = await fetch(this.target, { method: 'POST', headers, body });
      const answered = {
        status: answer.status,
        body: Buffer.from(await answer.arrayBuffer()),
        type: answer.headers.get('content-type') ?? 'text/plain',
      };
      if (answer.ok) this.counts.forwarded += 1;
      else this.counts.failed += 1;
      return answered;
    } catch (error) {
      this.counts.failed += 1;
      throw error;
    }
  }
}
