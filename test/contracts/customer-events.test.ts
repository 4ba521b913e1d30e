import { randomUUID } from 'node:crypto';
import { Compile } from 'typebox/compile';
import { describe, expect, it } from 'vitest';
import {
  CustomerCreatedEventSchema,
  parseCustomerCreatedIds,
  parseDeliverableCustomer,
  parseFeedPage,
  parsePushedCustomerEvent,
  type CustomerCreatedEvent,
} from '../../src/contracts/customer-events.js';

/** An event exactly as the CRM emits it. */
function emitted(): CustomerCreatedEvent {
  const at = new Date().toISOString();
  return {
    position: 7,
    id: randomUUID(),
    type: 'customer.created',
    occurred_at: at,
    data: {
      id: randomUUID(),
      name: 'Jane Doe',
      email: 'jane@example.com',
      version: 1,
      created_at: at,
      updated_at: at,
    },
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  };
}

const withData = (data: Record<string, unknown>) => {
  const event = emitted();
  return { ...event, data: { ...event.data, ...data } };
};
const without = (field: string) => {
  const event = emitted() as unknown as Record<string, unknown>;
  delete event[field];
  return event;
};
const withoutData = (field: string) => {
  const event = emitted();
  const data = { ...event.data } as Record<string, unknown>;
  delete data[field];
  return { ...event, data };
};

describe('the customer.created contract', () => {
  it('describes what the CRM emits', () => {
    expect(Compile(CustomerCreatedEventSchema).Check(emitted())).toBe(true);
  });

  it('is read by every reader', () => {
    const event = emitted();
    expect(parsePushedCustomerEvent(event)).toEqual({ ok: true, value: event });
    expect(parseFeedPage([event])).toEqual({ ok: true, value: [event] });
    expect(parseCustomerCreatedIds(event)).toEqual({ ok: true, value: event });
  });
});

describe('parsePushedCustomerEvent (webhook and AMQP bodies)', () => {
  it('reads the webhook body, which has no id or traceparent', () => {
    const { type, occurred_at, position, data } = emitted();
    const body = { type, timestamp: occurred_at, position, data };
    expect(parsePushedCustomerEvent(body)).toEqual({ ok: true, value: body });
  });

  it('reads other event types, for the receiver to ignore, and fields it does not know', () => {
    const event = { ...withData({ phone: '+1 555' }), type: 'customer.deleted', extra: 1 };
    expect(parsePushedCustomerEvent(event).ok).toBe(true);
  });

  it.each([
    ['not an object', 'hello', '(root) must be a JSON object'],
    ['null', null, '(root) must be a JSON object'],
    ['no type', without('type'), 'type is required'],
    ['a numeric type', { ...emitted(), type: 3 }, 'type must be a string'],
    ['no data', without('data'), 'data is required'],
    ['no customer id', withoutData('id'), 'data.id is required'],
    ['a customer id that is no UUID', withData({ id: 'nope' }), 'data.id must be a valid uuid'],
    ['a numeric customer id', withData({ id: 42 }), 'data.id must be a string'],
  ])('refuses %s, saying which field and why', (_, payload, problem) => {
    const parsed = parsePushedCustomerEvent(payload);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.problems).toContain(problem);
  });
});

describe('parseDeliverableCustomer (the data of a customer.created event, pushed or read)', () => {
  it('reads the customer a delivery needs, and any creation time Date.parse reads', () => {
    const { data } = emitted();
    expect(parseDeliverableCustomer(data)).toEqual({ ok: true, value: data });
    expect(parseDeliverableCustomer({ ...data, created_at: '2026-01-31' }).ok).toBe(true);
  });

  it.each([
    ['no name', withoutData('name').data, 'name is required'],
    ['a numeric name', withData({ name: 7 }).data, 'name must be a string'],
    ['no creation time', withoutData('created_at').data, 'created_at is required'],
    [
      'a creation time that is no time',
      withData({ created_at: 'yesterday' }).data,
      'created_at must be a date and time, e.g. 2026-01-31T09:30:00Z',
    ],
  ])('refuses %s, saying which field and why', (_, data, problem) => {
    const parsed = parseDeliverableCustomer(data);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.problems).toContain(problem);
  });
});

describe('parseFeedPage (GET /events on the CRM)', () => {
  it('reads customer.updated and customer.deleted events, which a deleted customer leaves without a name', () => {
    const event = emitted();
    const deleted = {
      ...event,
      type: 'customer.deleted',
      data: { id: event.data.id, version: 2, deleted_at: event.occurred_at },
    };
    const updated = { ...event, type: 'customer.updated', changed_fields: ['name'] };
    expect(parseFeedPage([updated, deleted]).ok).toBe(true);
    expect(parsePushedCustomerEvent(deleted).ok).toBe(true);
  });

  it('reads an empty page and events without a traceparent', () => {
    expect(parseFeedPage([])).toEqual({ ok: true, value: [] });
    expect(parseFeedPage([without('traceparent')]).ok).toBe(true);
  });

  it.each([
    ['not an array', {}, '(root) must be a JSON array'],
    ['no position', [without('position')], '0.position is required'],
    ['a position of 0', [{ ...emitted(), position: 0 }], '0.position must be at least 1'],
    [
      'a fractional position',
      [{ ...emitted(), position: 1.5 }],
      '0.position must be a whole number',
    ],
    ['no event id', [without('id')], '0.id is required'],
    ['no type', [without('type')], '0.type is required'],
    ['no occurred_at', [without('occurred_at')], '0.occurred_at is required'],
    ['no data', [without('data')], '0.data is required'],
    ['a customer id that is no UUID', [withData({ id: 'x' })], '0.data.id must be a valid uuid'],
    ['a numeric traceparent', [{ ...emitted(), traceparent: 5 }], '0.traceparent must be a string'],
  ])('refuses %s, saying which event, field and why', (_, page, problem) => {
    const parsed = parseFeedPage(page);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.problems).toContain(problem);
  });
});

describe('parseCustomerCreatedIds (the Lambda)', () => {
  it('needs only the type and the customer id', () => {
    const value = { type: 'customer.created', data: { id: randomUUID() } };
    expect(parseCustomerCreatedIds(value)).toEqual({ ok: true, value });
  });

  it.each([
    ['an array', [], '(root) must be a JSON object'],
    ['another type', { ...emitted(), type: 'customer.deleted' }, 'type must be "customer.created"'],
    ['no data', without('data'), 'data is required'],
    ['no customer id', withoutData('id'), 'data.id is required'],
    [
      'a customer id that is no UUID',
      withData({ id: 'not-a-uuid' }),
      'data.id must be a valid uuid',
    ],
  ])('refuses %s, saying which field and why', (_, value, problem) => {
    const parsed = parseCustomerCreatedIds(value);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.problems).toContain(problem);
  });
});
