import { randomUUID } from 'node:crypto';
import { execFile, execSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { useLambdaInventory } from '../support/lambda-inventory.js';
import { eventOf, recordFor, sqsRecord } from '../support/sqs-events.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BUNDLE = path.join(ROOT, 'dist/lambda/index.mjs');
const TEMPLATE = path.join(ROOT, 'deploy/lambda/template.yaml');
const lambda = useLambdaInventory();

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
          INVENTORY_URL: lambda.proxyUrl,
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
      expect(await lambda.packagesFor([id])).toEqual([1]);
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
    // FIFO, so each customer's events (grouped by customer id) arrive in order.
    expect(resources.CustomerCreatedQueue.Properties.FifoQueue).toBe(true);
    expect(resources.CustomerCreatedDeadLetterQueue.Properties.FifoQueue).toBe(true);
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
