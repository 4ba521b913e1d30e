import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the proxy can do to a call instead of passing it through. */
export type FaultKind =
  | 'status_503'
  | 'status_429' // with Retry-After
  | 'reset' // drop the connection before the call reaches the target
  | 'commit_then_drop' // the target handles the call, then the answer is lost
  | 'delay'; // hold the call past the client's timeout, then pass it on

export interface FaultPlan {
  /** Share of calls to fault, 0–1. */
  rate: number;
  kinds: FaultKind[];
  /** Retry-After seconds sent with `status_429`. */
  retryAfterSeconds?: number;
  /** How long `delay` holds a call, in ms. */
  delayMs?: number;
  /** Holds `delay` calls until this settles, instead of `delayMs`: on the wire until let go. */
  delayUntil?: Promise<unknown>;
}

export interface ProxiedCall {
  method: string;
  path: string;
  /** The customer of a single create; undefined for a batch. */
  customerId: string | undefined;
  /**
   * Every create the call carried (one, or a batch's items), and whether `answer` answered it
   * instead of the target.
   */
  items: { customerId: string; idempotencyKey: string | undefined; answered: boolean }[];
  idempotencyKey: string | undefined;
  at: number;
  /** `pass` or the fault applied; `answer` when `answer()` replied instead. */
  outcome: FaultKind | 'pass' | 'answer';
  status?: number;
}

/** A deterministic pseudo-random generator (mulberry32), so a failing run can be repeated. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Headers that belong to one connection, not to the message: never passed on. */
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'content-length',
  'host',
]);

/**
 * An HTTP proxy in front of a service that injects faults into a chosen share of calls, and
 * records every call so tests can count what reached the target.
 */
export class FaultProxy {
  plan: FaultPlan = { rate: 0, kinds: [] };
  /** Answers a call itself when this returns a response (e.g. a permanent 422 for poison items). */
  answer:
    | ((
        call: ProxiedCall,
      ) => { status: number; body: unknown; headers?: Record<string, string> } | undefined)
    | undefined;
  readonly calls: ProxiedCall[] = [];
  private readonly random: () => number;
  private server: http.Server | undefined;

  constructor(
    private readonly target: string,
    seed = 1,
  ) {
    this.random = seededRandom(seed);
  }

  async start(): Promise<string> {
    this.server = http.createServer((request, response) => {
      void this.handle(request, response).catch(() => response.destroy());
    });
    this.server.keepAliveTimeout = 5_000;
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }

  /** Calls that reached the target with this method (e.g. POST), by customer id. */
  deliveredCallsByCustomer(method = 'POST'): Map<string, number> {
    const counts = new Map<string, number>();
    for (const call of this.calls) {
      if (call.method !== method) continue;
      if (
        call.outcome === 'pass' ||
        call.outcome === 'commit_then_drop' ||
        call.outcome === 'delay'
      ) {
        for (const { customerId, answered } of call.items) {
          if (!answered) counts.set(customerId, (counts.get(customerId) ?? 0) + 1);
        }
      }
    }
    return counts;
  }

  private async handle(
    request: http.IncomingMessage,
    response: http.ServerResponse,
  ): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    let body: Buffer = Buffer.concat(chunks);
    let parsed:
      | { customer_id?: string; items?: { customer_id: string; idempotency_key?: string }[] }
      | undefined;
    try {
      parsed = JSON.parse(body.toString()) as typeof parsed;
    } catch {
      parsed = undefined;
    }
    const items = Array.isArray(parsed?.items) ? parsed.items : undefined;
    const customerId = items ? undefined : parsed?.customer_id;
    const idempotencyKey = request.headers['idempotency-key'] as string | undefined;
    const call: ProxiedCall = {
      method: request.method ?? 'GET',
      path: request.url ?? '/',
      customerId,
      items: items
        ? items.map((item) => ({
            customerId: item.customer_id,
            idempotencyKey: item.idempotency_key,
            answered: false,
          }))
        : customerId
          ? [{ customerId, idempotencyKey, answered: false }]
          : [],
      idempotencyKey,
      at: Date.now(),
      outcome: 'pass',
    };
    this.calls.push(call);

    // A batch is answered item by item: `answer` sees each item as a call of its own. A 429 or
    // 5xx answer for any item answers the whole call; other answers replace that item's result,
    // and the rest of the batch goes on to the target.
    const itemAnswers = items?.map((item) =>
      this.answer?.({ ...call, customerId: item.customer_id }),
    );
    const answered = items
      ? itemAnswers!.find((answer) => answer && (answer.status === 429 || answer.status >= 500))
      : this.answer?.(call);
    if (answered) {
      call.outcome = 'answer';
      call.status = answered.status;
      for (const item of call.items) item.answered = true;
      response.writeHead(answered.status, {
        'content-type': 'application/problem+json',
        ...answered.headers,
      });
      response.end(JSON.stringify(answered.body));
      return;
    }
    const rest = items?.filter((_, index) => !itemAnswers![index]);
    if (items && rest!.length < items.length) {
      itemAnswers!.forEach((answer, index) => (call.items[index]!.answered = Boolean(answer)));
      body = Buffer.from(JSON.stringify({ ...parsed, items: rest }));
    }
    /** The target's results for `rest`, with the answered items put back in their places. */
    const mergeResults = (upstreamBody: Buffer): Buffer => {
      if (!items || rest!.length === items.length) return upstreamBody;
      const forwarded = rest!.length
        ? (JSON.parse(upstreamBody.toString()) as { results: unknown[] }).results
        : [];
      let next = 0;
      const results = itemAnswers!.map((answer) =>
        answer ? { status: answer.status, replayed: false, body: answer.body } : forwarded[next++],
      );
      return Buffer.from(JSON.stringify({ results }));
    };
    if (rest?.length === 0) {
      call.outcome = 'answer';
      call.status = 200;
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(mergeResults(Buffer.alloc(0)));
      return;
    }
    const { rate, kinds, delayMs, delayUntil } = this.plan;
    const fault =
      kinds.length > 0 && this.random() < rate
        ? kinds[Math.floor(this.random() * kinds.length)]
        : undefined;
    if (fault) call.outcome = fault;

    switch (fault) {
      case 'status_503':
        call.status = 503;
        response.writeHead(503, { 'content-type': 'application/problem+json' });
        response.end(
          JSON.stringify({ title: 'Service Unavailable', status: 503, detail: 'injected fault' }),
        );
        return;
      case 'status_429':
        call.status = 429;
        response.writeHead(429, {
          'content-type': 'application/problem+json',
          'retry-after': String(this.plan.retryAfterSeconds ?? 1),
        });
        response.end(
          JSON.stringify({ title: 'Too Many Requests', status: 429, detail: 'injected fault' }),
        );
        return;
      case 'reset':
        request.socket.destroy();
        return;
      case 'delay':
        await (delayUntil ?? new Promise((resolve) => setTimeout(resolve, delayMs ?? 2_000)));
        break;
      default:
        break;
    }

    const headers: Record<string, string> = {};
    for (const [key, value] of Object.entries(request.headers)) {
      if (!HOP_BY_HOP.has(key) && typeof value === 'string') headers[key] = value;
    }
    let upstream: Response;
    try {
      upstream = await fetch(this.target + call.path, {
        method: call.method,
        headers,
        body: body.length > 0 ? body : undefined,
      });
    } catch {
      request.socket.destroy();
      return;
    }
    let upstreamBody: Buffer = Buffer.from(await upstream.arrayBuffer());
    if (upstream.status === 200) upstreamBody = mergeResults(upstreamBody);
    call.status = upstream.status;
    if (fault === 'commit_then_drop') {
      // The target did the work; the client never hears about it.
      request.socket.destroy();
      return;
    }
    const responseHeaders: Record<string, string> = {};
    upstream.headers.forEach((value, key) => {
      if (!HOP_BY_HOP.has(key)) responseHeaders[key] = value;
    });
    if (!response.destroyed) {
      response.writeHead(upstream.status, responseHeaders);
      response.end(upstreamBody);
    }
  }
}
