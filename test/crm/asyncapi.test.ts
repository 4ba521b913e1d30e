import { Parser } from '@asyncapi/parser';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { crmService } from '../../src/crm/service.js';
import type { CrmTables } from '../../src/crm/migrations.js';
import { CUSTOMER_EVENT_TYPES } from '../../src/contracts/customer-events.js';
import { createTestApp, type TestApp } from '../support/apps.js';

let t: TestApp<CrmTables>;
beforeEach(async () => {
  t = await createTestApp(crmService);
});
afterEach(async () => {
  await t.close();
});

/** Severity 0 is an error in @asyncapi/parser's diagnostics (Spectral's scale). */
const ERROR = 0;

describe('GET /asyncapi.json', () => {
  it('is a valid AsyncAPI 3.0 document of every event type, on the RabbitMQ exchange and the webhooks', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/asyncapi.json' });
    expect(response.statusCode).toBe(200);
    const { document, diagnostics } = await new Parser().parse(response.body);
    const errors = diagnostics.filter((diagnostic) => diagnostic.severity === ERROR);
    expect(errors.map((e) => `${e.path.join('.')}: ${e.message}`)).toEqual([]);
    expect(document).toBeDefined();
    expect(document!.version()).toBe('3.0.0');

    const exchange = document!.channels().get('crmEvents')!;
    expect(exchange.address()).toBe('crm.events');
    const names = (channel: string) =>
      document!
        .channels()
        .get(channel)!
        .messages()
        .all()
        .map((message) => message.name());
    expect(names('crmEvents')).toEqual([...CUSTOMER_EVENT_TYPES]);
    expect(names('webhooks')).toEqual([...CUSTOMER_EVENT_TYPES]);
  });

  it('describes the events the feed serves: a real event validates against its payload schema', async () => {
    const created = await t.app.inject({
      method: 'POST',
      url: '/customers',
      headers: { 'content-type': 'application/json' },
      payload: { name: 'Jane Doe', email: 'jane@example.com' },
    });
    const { id } = created.json() as { id: string };
    await t.app.inject({
      method: 'PATCH',
      url: `/customers/${id}`,
      headers: { 'content-type': 'application/json' },
      payload: { name: 'Jane Roe' },
    });
    await t.app.inject({ method: 'DELETE', url: `/customers/${id}` });
    const [deleted] = (await t.app.inject({ method: 'GET', url: '/events' })).json() as unknown[];
    const spec = (await t.app.inject({ method: 'GET', url: '/asyncapi.json' })).json() as {
      components: { messages: Record<string, { payload: Record<string, unknown> }> };
    };
    const ajv = new Ajv({ strict: false });
    addFormats.default(ajv);
    const validate = ajv.compile(spec.components.messages.customerDeleted!.payload);
    expect(validate(deleted), JSON.stringify(validate.errors)).toBe(true);
  });
});
