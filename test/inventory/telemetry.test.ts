import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { PackageRequest } from '../../src/contracts/package-requests.js';
import type { Answered, Operation } from '../../src/inventory/operations.js';
import { Telemetry } from '../../src/inventory/telemetry.js';
import { useInventory } from '../support/inventory.js';

const inventory = useInventory();

/** A logger that keeps its info lines. */
function captureLog(level?: string) {
  const lines: { fields: Record<string, unknown>; message: string }[] = [];
  const log = {
    ...(level === undefined ? {} : { level }),
    info: (fields: Record<string, unknown>, message: string) => lines.push({ fields, message }),
  } as unknown as FastifyBaseLogger;
  return { log, lines };
}

const request = (fields: Partial<PackageRequest>): PackageRequest => ({
  id: 'r-1',
  customer_id: 'c-1',
  kind: 'welcome_package',
  status: 'pending',
  recipient_name: null,
  recipient_email: null,
  customer_version: null,
  created_at: '2026-01-31T09:30:00.000Z',
  updated_at: '2026-01-31T09:30:00.000Z',
  ...fields,
});

const answered = (outcome: Answered['outcome'], fields: Partial<PackageRequest>): Answered => ({
  response: { status: 200, body: {} },
  outcome,
  request: request(fields),
});

describe('Telemetry', () => {
  it('logs one line per change made or refused, in the style of the created line', () => {
    const { log, lines } = captureLog();
    const telemetry = new Telemetry(new Registry());
    const update: Operation = {
      op: 'update',
      id: 'r-1',
      change: { recipient_name: 'Ann', customer_version: 1 },
    };
    const cases: [Operation, Answered][] = [
      [{ op: 'create', input: { customer_id: 'c-1', kind: 'k' } }, answered('created', {})],
      [update, answered('changed', { customer_version: 2 })],
      [{ op: 'cancel', id: 'r-1' }, answered('changed', { status: 'cancelled' })],
      [{ op: 'ship', id: 'r-1' }, answered('changed', { status: 'shipped' })],
      [{ op: 'cancel', id: 'r-1' }, answered('conflict', { status: 'shipped' })],
      [update, answered('conflict', { customer_version: 2 })],
      [update, answered('unchanged', { customer_version: 1 })],
    ];
    for (const [operation, answer] of cases) telemetry.record(log, operation, answer);
    expect(lines.map((line) => line.message)).toEqual([
      'Created package request for customer: c-1',
      'Updated the recipient of package request r-1 to customer version 2',
      'Cancelled package request r-1 for customer: c-1',
      'Shipped package request r-1 for customer: c-1',
      'Refused to cancel package request r-1: it is shipped',
      'Refused to update package request r-1: customer version 1 is older than its 2',
    ]);
    expect(lines[1]!.fields).toEqual({
      package_request_id: 'r-1',
      customer_id: 'c-1',
      customer_version: 2,
    });
  });

  it('counts change answers by operation and outcome in /metrics, single and batch alike', async () => {
    const { id } = await inventory.pending({ customer_version: 1 });
    const change = { recipient_name: 'Ann', customer_version: 2 };
    const key = { 'idempotency-key': 'm' };
    await inventory.patch(id, change, key);
    await inventory.patch(id, change, key);
    await inventory.patch(id, { ...change, customer_version: 1 });
    await inventory.ship(randomUUID());
    await inventory.batch({
      items: [
        { op: 'ship', id },
        { op: 'ship', id },
        { op: 'cancel', id },
      ],
    });
    const text = (await inventory.test().app.inject({ method: 'GET', url: '/metrics' })).body;
    const counted = (operation: string, outcome: string) =>
      new RegExp(
        `^inventory_change_responses_total\\{[^}]*operation="${operation}",outcome="${outcome}"[^}]*\\} (\\d+)$`,
        'm',
      ).exec(text)?.[1];
    expect(counted('update', 'changed')).toBe('1');
    expect(counted('update', 'replayed')).toBe('1');
    expect(counted('update', 'conflict')).toBe('1');
    expect(counted('ship', 'not_found')).toBe('1');
    expect(counted('ship', 'changed')).toBe('1');
    expect(counted('ship', 'unchanged')).toBe('1');
    expect(counted('cancel', 'conflict')).toBe('1');
  });

  it('counts a batch by outcome, and makes the item lines only when info lines are written', async () => {
    const create = (customer: string): Operation => ({
      op: 'create',
      input: { customer_id: customer, kind: 'k' },
    });
    const operations: Operation[] = [
      create('c-1'),
      create('c-2'),
      create('c-3'),
      { op: 'ship', id: 'r-1' },
    ];
    const answers = operations.map(() => ({
      kind: 'ran' as const,
      response: { status: 201, body: {} },
    }));
    const ran = [
      answered('created', { customer_id: 'c-1' }),
      answered('created', { customer_id: 'c-2' }),
      answered('duplicate', { customer_id: 'c-3' }),
      answered('changed', { status: 'shipped' }),
    ];
    for (const [level, itemLines] of [
      ['info', 3],
      ['warn', 0],
    ] as const) {
      const { log, lines } = captureLog(level);
      const registry = new Registry();
      new Telemetry(registry).recordBatch(log, operations, answers, ran);
      // The item lines, then the batch's (which the logger drops below info).
      expect(lines).toHaveLength(itemLines + 1);
      expect(lines.at(-1)!.fields).toMatchObject({
        items: 4,
        created: 2,
        duplicate: 1,
        changed: 1,
      });
      const text = await registry.metrics();
      expect(text).toMatch(/^inventory_package_requests_created_total 2$/m);
      expect(text).toMatch(/^inventory_create_responses_total\{outcome="created"\} 2$/m);
      expect(text).toMatch(/^inventory_create_responses_total\{outcome="duplicate"\} 1$/m);
      expect(text).toMatch(
        /^inventory_change_responses_total\{operation="ship",outcome="changed"\} 1$/m,
      );
    }
  });
});
