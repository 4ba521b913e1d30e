import { createHash, randomUUID } from 'node:crypto';
import { execFile, execSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { InventoryTables } from '../../src/inventory/migrations.js';
import { inventoryService } from '../../src/inventory/service.js';
import { createHandler, parseRecordBody } from '../../src/lambda/handler.js';
import { createTestApp, type TestApp } from '../support/apps.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { packageRequestsByCustomer, waitUntil } from '../support/platform.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BUNDLE = path.join(ROOT, 'dist/lambda/index.mjs');
const TEMPLATE = path.join(ROOT, 'deploy/lambda/template.yaml');
const QUEUE_ARN = 'arn:aws:sqs:us-east-2:123456789012:CustomerCreatedQueue';

// ---------------------------------------------------------------------------------------------
// Events shaped like AWS's sample SQS event and the CRM's customer.created event.

function customerCreated(customerId: string, position = 1) {
  return {
    id: randomUUID(),
    type: 'customer.created',
    position,
    occurred_at: new Date().toISOString(),
    data: {
      id: customerId,
      name: `Customer ${position}`,
      email: `customer-${customerId}@example.com`,
      created_at: new Date().toISOString(),
    },
  };
}

function snsNotification(message: string) {
  return {
    Type: 'Notification',
    MessageId: randomUUID(),
    TopicArn: 'arn:aws:sns:us-east-2:123456789012:customer-created',
    Message: message,
    Timestamp: new Date().toISOString(),
    SignatureVersion: '1',
    Signature: 'EXAMPLE',
    SigningCertURL: 'https://sns.us-east-2.amazonaws.com/SimpleNotificationService-0000.pem',
    UnsubscribeURL: 'https://sns.us-east-2.amazonaws.com/?Action=Unsubscribe',
  };
}

function sqsRecord(body: string, receiveCount = 1): SQSRecord {
  return {
    messageId: randomUUID(),
    receiptHandle: `AQEB${randomUUID().replaceAll('-', '')}`,
    body,
    attributes: {
      ApproximateReceiveCount: String(receiveCount),
      SentTimestamp: String(Date.now()),
      SenderId: 'AIDAIENQZJOLO23YVJ4VO',
      ApproximateFirstReceiveTimestamp: String(Date.now()),
    },
    messageAttributes: {},
    md5OfBody: createHash('md5').update(body).digest('hex'),
    eventSource: 'aws:sqs',
    eventSourceARN: QUEUE_ARN,
    awsRegion: 'us-east-2',
  };
}

const eventOf = (records: SQSRecord[]): SQSEvent => ({ Records: records });
const recordFor = (customerId: string) => sqsRecord(JSON.stringify(customerCreated(customerId)));

/** A logger that keeps its JSON lines, to check what the handler writes per record. */
function captureLogs() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'info' },
    { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
  );
  return { logger, lines };
}

const failedIds = (response: { batchItemFailures: { itemIdentifier: string }[] }) =>
  response.batchItemFailures.map((failure) => failure.itemIdentifier).sort();

// ---------------------------------------------------------------------------------------------
// A real Inventory API in this process, behind a fault proxy.

let inventory: TestApp<InventoryTables>;
let proxy: FaultProxy;
let proxyUrl: string;

async function listen(app: TestApp<unknown>['app']): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' });
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  inventory = await createTestApp(inventoryService);
  proxy = new FaultProxy(await listen(inventory.app));
  proxyUrl = await proxy.start();
});

afterEach(() => {
  proxy.answer = undefined;
  proxy.plan = { rate: 0, kinds: [] };
});

afterAll(async () => {
  await proxy?.stop();
  await inventory?.close();
});

/** Package requests in Inventory's database for these customers (0 for none). */
async function packagesFor(ids: string[]): Promise<number[]> {
  const counts = await packageRequestsByCustomer(inventory);
  return ids.map((id) => counts.get(id) ?? 0);
}

const postsFor = (id: string) =>
  proxy.calls.filter((call) => call.method === 'POST' && call.customerId === id);

function handlerFor(env: Record<string, string | undefined> = {}) {
  const { logger, lines } = captureLogs();
  const handler = createHandler(
    { INVENTORY_URL: proxyUrl, REQUEST_TIMEOUT_MS: '2000', ...env },
    { logger },
  );
  return { handler, lines };
}

// ---------------------------------------------------------------------------------------------

describe('the SQS handler', () => {
  it('creates one welcome package per customer and reports no failures', async () => {
    const { handler, lines } = handlerFor();
    const ids = Array.from({ length: 25 }, () => randomUUID());
    const records = ids.map(recordFor);

    const response = await handler(eventOf(records));

    expect(response).toEqual({ batchItemFailures: [] });
    expect(await packagesFor(ids)).toEqual(ids.map(() => 1));
    for (const id of ids) {
      expect(postsFor(id).map((call) => call.idempotencyKey)).toEqual([`welcome-package:${id}`]);
    }
    // One JSON line per record, naming the customer and the outcome.
    const recordLines = lines.filter((line) => line.messageId !== undefined);
    expect(recordLines).toHaveLength(records.length);
    for (const [i, record] of records.entries()) {
      expect(recordLines.find((line) => line.messageId === record.messageId)).toMatchObject({
        customerId: ids[i],
        outcome: 'created',
        receiveCount: 1,
        packageRequestId: expect.any(String),
      });
    }
  });

  it('processes records concurrently, at most 10 at a time', async () => {
    let inFlight = 0;
    let most = 0;
    // A stand-in for Inventory that answers 201 after 50 ms and counts the calls it holds.
    const server = http.createServer((request, response) => {
      inFlight++;
      most = Math.max(most, inFlight);
      request.resume();
      setTimeout(() => {
        inFlight--;
        response.writeHead(201, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ id: randomUUID(), status: 'pending', customer_version: 1 }));
      }, 50);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const { handler } = handlerFor({ INVENTORY_URL: url });
      const response = await handler(
        eventOf(Array.from({ length: 30 }, () => recordFor(randomUUID()))),
      );
      expect(response.batchItemFailures).toEqual([]);
      expect(most).toBe(10);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('creates still one package when SQS delivers the same event again', async () => {
    const { handler, lines } = handlerFor();
    const id = randomUUID();
    const body = JSON.stringify(customerCreated(id));

    const first = await handler(eventOf([sqsRecord(body)]));
    const again = await handler(eventOf([sqsRecord(body, 2)]));
    // Both copies in one batch, handled at the same time.
    const both = [sqsRecord(body, 3), sqsRecord(body, 3)];
    const together = await handler(eventOf(both));

    expect(first.batchItemFailures).toEqual([]);
    expect(again.batchItemFailures).toEqual([]);
    expect(together.batchItemFailures).toEqual([]);
    expect(await packagesFor([id])).toEqual([1]);
    expect(postsFor(id)).toHaveLength(4);
    expect(lines.filter((line) => line.customerId === id).map((line) => line.outcome)).toEqual([
      'created',
      ...Array(3).fill(expect.stringMatching(/^(created|already_exists)$/)),
    ]);
  });

  it('counts a package that already exists without the same key (duplicate 409) as done', async () => {
    const id = randomUUID();
    const existing = await fetch(`${proxyUrl}/package-requests`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ customer_id: id, kind: 'welcome_package' }),
    });
    expect(existing.status).toBe(201);
    const { handler, lines } = handlerFor();

    const response = await handler(eventOf([recordFor(id)]));

    expect(response.batchItemFailures).toEqual([]);
    expect(await packagesFor([id])).toEqual([1]);
    expect(lines.find((line) => line.customerId === id)).toMatchObject({
      outcome: 'already_exists',
      packageRequestId: ((await existing.json()) as { id: string }).id,
    });
  });

  it.each([
    { status: 503, outcome: 'transient_failure' },
    { status: 429, outcome: 'transient_failure' },
    { status: 422, outcome: 'permanent_failure' },
  ])(
    'reports only the record Inventory answered $status for ($outcome)',
    async ({ status, outcome }) => {
      const { handler, lines } = handlerFor();
      const ids = Array.from({ length: 5 }, () => randomUUID());
      const bad = ids[2]!;
      proxy.answer = (call) =>
        call.customerId === bad
          ? {
              status,
              body: { title: 'injected', status, detail: 'injected', code: 'injected' },
              headers: (status === 429 ? { 'retry-after': '1' } : {}) as Record<string, string>,
            }
          : undefined;
      const records = ids.map(recordFor);

      const response = await handler(eventOf(records));

      expect(failedIds(response)).toEqual([records[2]!.messageId]);
      expect(await packagesFor(ids)).toEqual([1, 1, 0, 1, 1]);
      expect(lines.find((line) => line.customerId === bad)).toMatchObject({
        messageId: records[2]!.messageId,
        outcome,
        status,
      });

      // SQS redelivers it once Inventory is well again: then it succeeds.
      proxy.answer = undefined;
      const retried = await handler(eventOf([{ ...records[2]!, receiptHandle: 'AQEBretry' }]));
      expect(retried.batchItemFailures).toEqual([]);
      expect(await packagesFor(ids)).toEqual([1, 1, 1, 1, 1]);
    },
  );

  it('reports every record, and does not throw, when Inventory cannot be reached', async () => {
    const { handler, lines } = handlerFor({
      INVENTORY_URL: 'http://127.0.0.1:1',
      REQUEST_TIMEOUT_MS: '500',
    });
    const records = [recordFor(randomUUID()), recordFor(randomUUID())];

    const response = await handler(eventOf(records));

    expect(failedIds(response)).toEqual(records.map((r) => r.messageId).sort());
    expect(lines.filter((line) => line.messageId).map((line) => line.outcome)).toEqual([
      'transient_failure',
      'transient_failure',
    ]);
  });

  it('reports a record whose call timed out', async () => {
    const { handler } = handlerFor({ REQUEST_TIMEOUT_MS: '200' });
    proxy.plan = { rate: 1, kinds: ['delay'], delayMs: 600 };
    const id = randomUUID();
    const record = recordFor(id);

    const response = await handler(eventOf([record]));

    expect(failedIds(response)).toEqual([record.messageId]);
    // The call may still have gone through late: the redelivery then finds it, not a second one.
    proxy.plan = { rate: 0, kinds: [] };
    await waitUntil(async () => (await packagesFor([id]))[0] === 1, 5_000, 'the late call');
    expect((await handler(eventOf([record]))).batchItemFailures).toEqual([]);
    expect(await packagesFor([id])).toEqual([1]);
  });

  it('reports malformed bodies and delivers the rest of the batch', async () => {
    const { handler, lines } = handlerFor();
    const good = [randomUUID(), randomUUID()];
    const withoutData = { ...customerCreated(randomUUID()), data: undefined };
    const withoutId = customerCreated(randomUUID()) as { data: { id?: string } };
    delete withoutId.data.id;
    const malformed = [
      sqsRecord('this is not JSON'),
      sqsRecord(''),
      sqsRecord('[]'),
      sqsRecord(JSON.stringify(withoutData)),
      sqsRecord(JSON.stringify(withoutId)),
      sqsRecord(JSON.stringify(customerCreated('not-a-uuid'))),
      sqsRecord(JSON.stringify(customerCreated(42 as unknown as string))),
      sqsRecord(JSON.stringify({ ...customerCreated(randomUUID()), type: 'customer.deleted' })),
      sqsRecord(JSON.stringify(snsNotification('{not json'))),
      sqsRecord(JSON.stringify({ Type: 'Notification', Message: { id: 1 } })),
    ];
    const records = [recordFor(good[0]!), ...malformed, recordFor(good[1]!)];
    const callsBefore = proxy.calls.length;

    const response = await handler(eventOf(records));

    expect(failedIds(response)).toEqual(malformed.map((r) => r.messageId).sort());
    expect(await packagesFor(good)).toEqual([1, 1]);
    expect(proxy.calls.length - callsBefore).toBe(2);
    for (const record of malformed) {
      expect(lines.find((line) => line.messageId === record.messageId)).toMatchObject({
        outcome: 'malformed',
        level: 50,
      });
    }
  });

  it('accepts the event wrapped in an SNS notification (SNS to SQS fan-out)', async () => {
    const { handler, lines } = handlerFor();
    const id = randomUUID();
    const event = customerCreated(id);
    const record = sqsRecord(JSON.stringify(snsNotification(JSON.stringify(event))));

    const response = await handler(eventOf([record]));

    expect(response.batchItemFailures).toEqual([]);
    expect(await packagesFor([id])).toEqual([1]);
    expect(postsFor(id).map((call) => call.idempotencyKey)).toEqual([`welcome-package:${id}`]);
    expect(lines.find((line) => line.customerId === id)).toMatchObject({
      eventId: event.id,
      outcome: 'created',
    });
  });

  it.each([
    { name: 'missing', env: { INVENTORY_URL: undefined }, variable: 'INVENTORY_URL' },
    { name: 'blank', env: { INVENTORY_URL: '  ' }, variable: 'INVENTORY_URL' },
    { name: 'not a URL', env: { INVENTORY_URL: 'inventory' }, variable: 'INVENTORY_URL' },
    { name: 'not http(s)', env: { INVENTORY_URL: 'ftp://inventory' }, variable: 'INVENTORY_URL' },
    { name: 'a bad timeout', env: { REQUEST_TIMEOUT_MS: 'soon' }, variable: 'REQUEST_TIMEOUT_MS' },
  ])('reports every record when the configuration is $name', async ({ env, variable }) => {
    const { handler, lines } = handlerFor(env);
    const records = [recordFor(randomUUID()), recordFor(randomUUID()), sqsRecord('junk')];
    const callsBefore = proxy.calls.length;

    const response = await handler(eventOf(records));

    expect(failedIds(response)).toEqual(records.map((r) => r.messageId).sort());
    expect(proxy.calls.length).toBe(callsBefore);
    // Said once at cold start, then on every record.
    expect(lines[0]).toMatchObject({ level: 50, outcome: 'not_configured' });
    expect(String(lines[0]!.msg)).toContain(variable);
    const recordLines = lines.filter((line) => line.messageId);
    expect(recordLines).toHaveLength(3);
    for (const line of recordLines) expect(line.outcome).toBe('not_configured');
  });

  it('sends API_TOKEN as a bearer token', async () => {
    const token = 'lambda-test-token-0123456789';
    const secured = await createTestApp(inventoryService, { apiToken: token });
    try {
      const url = await listen(secured.app);
      const id = randomUUID();
      const without = await handlerFor({ INVENTORY_URL: url }).handler(eventOf([recordFor(id)]));
      expect(without.batchItemFailures).toHaveLength(1);
      const withToken = handlerFor({ INVENTORY_URL: `${url}/`, API_TOKEN: token });
      expect((await withToken.handler(eventOf([recordFor(id)]))).batchItemFailures).toEqual([]);
      const rows = await secured.database.db
        .selectFrom('package_requests')
        .select('customer_id')
        .execute();
      expect(rows.map((row) => row.customer_id)).toEqual([id]);
      // The token never reaches the log.
      expect(JSON.stringify(withToken.lines)).not.toContain(token);
    } finally {
      await secured.close();
    }
  });

  it('does not start records when the invocation is about to time out', async () => {
    const { handler, lines } = handlerFor();
    const records = [recordFor(randomUUID()), recordFor(randomUUID())];
    const callsBefore = proxy.calls.length;

    const response = await handler(eventOf(records), { getRemainingTimeInMillis: () => 1_500 });

    expect(failedIds(response)).toEqual(records.map((r) => r.messageId).sort());
    expect(proxy.calls.length).toBe(callsBefore);
    expect(lines.map((line) => line.outcome)).toEqual(['out_of_time', 'out_of_time']);
  });

  it('answers an empty batch with no failures', async () => {
    expect(await handlerFor().handler(eventOf([]))).toEqual({ batchItemFailures: [] });
  });
});

describe('parseRecordBody', () => {
  it('reads the customer id and event id, raw or inside an SNS notification', () => {
    const id = randomUUID();
    const event = customerCreated(id);
    const expected = { customerId: id, eventId: event.id, type: 'customer.created' };
    expect(parseRecordBody(JSON.stringify(event))).toMatchObject(expected);
    expect(parseRecordBody(JSON.stringify(snsNotification(JSON.stringify(event))))).toMatchObject(
      expected,
    );
  });
});

// ---------------------------------------------------------------------------------------------

const execFileAsync = promisify(execFile);

describe('the bundle (npm run build:lambda)', () => {
  let buildError: unknown;
  beforeAll(() => {
    try {
      execSync('npm run build:lambda', { cwd: ROOT, stdio: 'pipe' });
    } catch (error) {
      buildError = error;
    }
  }, 60_000);

  it('imports under plain Node ESM and its handler runs, reading the environment', async (ctx) => {
    if (!fs.existsSync(BUNDLE)) {
      console.warn(`Skipping: ${BUNDLE} was not built`, buildError);
      ctx.skip();
    }
    expect(buildError).toBeUndefined();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mip-lambda-'));
    try {
      // Run the bundle the way Lambda does: a separate Node process importing index.mjs.
      const script = path.join(dir, 'invoke.mjs');
      fs.writeFileSync(
        script,
        [
          `const { handler } = await import(${JSON.stringify(pathToFileURL(BUNDLE).href)});`,
          `const event = JSON.parse(process.env.TEST_SQS_EVENT);`,
          `const result = await handler(event, { getRemainingTimeInMillis: () => 30000 });`,
          `process.stdout.write('RESULT ' + JSON.stringify(result) + '\\n');`,
        ].join('\n'),
      );
      const id = randomUUID();
      const good = recordFor(id);
      const bad = sqsRecord('not json');
      const { stdout } = await execFileAsync(process.execPath, [script], {
        cwd: dir,
        env: {
          PATH: process.env.PATH,
          INVENTORY_URL: proxyUrl,
          LOG_LEVEL: 'info',
          TEST_SQS_EVENT: JSON.stringify(eventOf([good, bad])),
        },
        timeout: 20_000,
      });
      const lines = stdout.trim().split('\n');
      const result = lines.find((line) => line.startsWith('RESULT '));
      expect(JSON.parse(result!.slice('RESULT '.length))).toEqual({
        batchItemFailures: [{ itemIdentifier: bad.messageId }],
      });
      const logs = lines
        .filter((line) => !line.startsWith('RESULT '))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      expect(logs).toHaveLength(2);
      expect(logs).toContainEqual(
        expect.objectContaining({ messageId: good.messageId, customerId: id, outcome: 'created' }),
      );
      expect(logs).toContainEqual(
        expect.objectContaining({ messageId: bad.messageId, outcome: 'malformed' }),
      );
      expect(await packagesFor([id])).toEqual([1]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------------------------

/** CloudFormation's short-form intrinsics, read as their long forms. */
const CLOUDFORMATION_TAGS = [
  { tag: '!Ref', resolve: (value: string) => ({ Ref: value }) },
  { tag: '!GetAtt', resolve: (value: string) => ({ 'Fn::GetAtt': value.split('.') }) },
  { tag: '!Sub', resolve: (value: string) => ({ 'Fn::Sub': value }) },
];

describe('deploy/lambda/template.yaml', () => {
  const template = parse(fs.readFileSync(TEMPLATE, 'utf8'), {
    customTags: CLOUDFORMATION_TAGS,
  }) as any;
  const resources = template.Resources;

  it('is a SAM template', () => {
    expect(template.Transform).toBe('AWS::Serverless-2016-10-31');
  });

  it('has the queue, and a dead-letter queue it redrives to after 5 receives', () => {
    expect(resources.CustomerCreatedQueue.Type).toBe('AWS::SQS::Queue');
    expect(resources.CustomerCreatedDeadLetterQueue.Type).toBe('AWS::SQS::Queue');
    expect(resources.CustomerCreatedQueue.Properties.RedrivePolicy).toEqual({
      deadLetterTargetArn: { 'Fn::GetAtt': ['CustomerCreatedDeadLetterQueue', 'Arn'] },
      maxReceiveCount: 5,
    });
  });

  it('runs the bundle on nodejs24.x, fed by the queue with partial batch responses', () => {
    const fn = resources.WelcomePackageFunction;
    expect(fn.Type).toBe('AWS::Serverless::Function');
    const props = fn.Properties;
    expect(props.Runtime).toBe('nodejs24.x');
    expect(props.Timeout).toBe(30);
    // Handler index.handler in CodeUri = the file `npm run build:lambda` writes.
    const [file, exported] = props.Handler.split('.');
    expect(exported).toBe('handler');
    const codeDir = path.resolve(path.dirname(TEMPLATE), props.CodeUri);
    expect(path.join(codeDir, `${file}.mjs`)).toBe(BUNDLE);
    expect(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))).toMatchObject({
      scripts: { 'build:lambda': expect.stringContaining('--outfile=dist/lambda/index.mjs') },
    });

    expect(props.Environment.Variables).toMatchObject({
      INVENTORY_URL: { Ref: 'InventoryUrl' },
      API_TOKEN: { Ref: 'ApiToken' },
    });
    expect(template.Parameters.InventoryUrl.Type).toBe('String');
    expect(template.Parameters.ApiToken.NoEcho).toBe(true);

    const sources = Object.values(props.Events) as any[];
    expect(sources).toHaveLength(1);
    expect(sources[0]).toMatchObject({
      Type: 'SQS',
      Properties: {
        Queue: { 'Fn::GetAtt': ['CustomerCreatedQueue', 'Arn'] },
        BatchSize: 10,
        FunctionResponseTypes: ['ReportBatchItemFailures'],
      },
    });

    // AWS advises a visibility timeout of at least six times the function timeout.
    expect(resources.CustomerCreatedQueue.Properties.VisibilityTimeout).toBeGreaterThanOrEqual(
      6 * props.Timeout,
    );
  });

  it('outputs the queue URL and ARN', () => {
    const values = Object.values(template.Outputs).map((output: any) => output.Value);
    expect(values).toContainEqual({ Ref: 'CustomerCreatedQueue' });
    expect(values).toContainEqual({ 'Fn::GetAtt': ['CustomerCreatedQueue', 'Arn'] });
  });
});
