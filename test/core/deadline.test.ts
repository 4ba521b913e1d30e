import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDeadline } from '../../src/core/deadline.js';

/** A server that never answers: only a deadline ends a call to it. */
let silent: Server;
let url: string;
beforeAll(async () => {
  silent = createServer(() => undefined);
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/`;
});
afterAll(async () => {
  silent.closeAllConnections();
  await new Promise((resolve) => silent.close(resolve));
});

describe('a call deadline', () => {
  it('stops a call that gets no answer in time, with a TimeoutError, and says it expired', async () => {
    const deadline = startDeadline(50);
    const started = Date.now();
    const failure = await request(url, { signal: deadline.signal }).catch(
      (error: unknown) => error,
    );
    deadline.clear();
    expect(failure).toMatchObject({ name: 'TimeoutError' });
    expect(deadline.expired).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
  });

  it("follows the caller's signal, with its reason, and then has not expired", async () => {
    const shutdown = new AbortController();
    const deadline = startDeadline(60_000, shutdown.signal);
    const call = request(url, { signal: deadline.signal }).catch((error: unknown) => error);
    shutdown.abort(new Error('shutting down'));
    expect(await call).toMatchObject({ message: 'shutting down' });
    expect(deadline.expired).toBe(false);
    deadline.clear();
  });

  it("is aborted from the start when the caller's signal already is", () => {
    const deadline = startDeadline(60_000, AbortSignal.abort(new Error('too late')));
    expect(deadline.signal.aborted).toBe(true);
    expect(deadline.signal.reason).toMatchObject({ message: 'too late' });
    deadline.clear();
  });

  it("once cleared, neither the time nor the caller's signal aborts it", async () => {
    const shutdown = new AbortController();
    const deadline = startDeadline(20, shutdown.signal);
    deadline.clear();
    await new Promise((resolve) => setTimeout(resolve, 60));
    shutdown.abort();
    expect(deadline.signal.aborted).toBe(false);
    expect(deadline.expired).toBe(false);
  });
});
